"""FGM perturbation: epsilon-sized, along the gradient, none on padding; v2's scale is relative."""
import pytest
import torch

from spacy_msnr.fewshot.adversarial import fgm_perturbation, mean_embedding_norm, relative_fgm_perturbation


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


def test_mean_embedding_norm_by_hand():
    assert mean_embedding_norm(torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]])) == pytest.approx(2.0)


def test_relative_perturbation_moves_every_token_by_epsilon_times_the_scale():
    # token gradients (3, 4) and (0, -2): unit directions (0.6, 0.8) and (0, -1); epsilon 0.5 x scale 2 = 1
    grad = torch.tensor([[[3.0, 4.0], [0.0, -2.0], [0.0, 0.0], [5.0, 5.0]]])
    mask = torch.tensor([[1, 1, 1, 0]])
    r = relative_fgm_perturbation(grad, 0.5, mask, scale=2.0)
    assert torch.allclose(r, torch.tensor([[[0.6, 0.8], [0.0, -1.0], [0.0, 0.0], [0.0, 0.0]]]))
    # the same relative size on a model whose embeddings are 100 times larger, at any gradient scale
    assert torch.allclose(relative_fgm_perturbation(grad * 1e-6, 0.5, mask, scale=200.0), 100 * r)
    assert torch.all(relative_fgm_perturbation(grad, 0.0, mask, scale=2.0) == 0)
    with pytest.raises(ValueError, match="epsilon"):
        relative_fgm_perturbation(grad, -0.1, mask, scale=2.0)
