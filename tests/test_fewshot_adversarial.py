"""FGM perturbation: epsilon-sized, along the gradient, none on padding."""
import pytest
import torch

from spacy_msnr.fewshot.adversarial import fgm_perturbation


def test_norm_direction_and_mask():
    torch.manual_seed(0)
    grad = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    r = fgm_perturbation(grad, 0.5, mask)
    assert torch.all(r[0, 3:] == 0)
    for row in range(2):
        assert r[row].norm().item() == pytest.approx(0.5, rel=1e-5)
        g = grad[row] * mask[row, :, None]
        cos = torch.nn.functional.cosine_similarity(r[row].flatten(), g.flatten(), dim=0)
        assert cos.item() == pytest.approx(1.0, abs=1e-5)


def test_zero_epsilon_and_zero_gradient():
    grad = torch.randn(1, 4, 2)
    assert torch.all(fgm_perturbation(grad, 0.0, torch.ones(1, 4)) == 0)
    assert torch.all(fgm_perturbation(torch.zeros(1, 4, 2), 1.0, torch.ones(1, 4)) == 0)
    with pytest.raises(ValueError, match="epsilon"):
        fgm_perturbation(grad, -1.0, torch.ones(1, 4))
