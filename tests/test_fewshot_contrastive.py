"""The supervised InfoNCE loss and span pooling against hand-computed values."""
import math

import pytest
import torch

from spacy_msnr.fewshot.contrastive import info_nce_loss, pool_spans


def test_two_positives_one_negative_by_hand():
    # a, b: type X, identical direction (cos = 1); c: non-entity, orthogonal (cos = 0); tau = 1.
    # For anchor a: P = {b}, K = {b, c}: -log(e^1 / (e^1 + e^0)) = log(1 + e^-1); b the same.
    reps = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    loss = info_nce_loss(reps, ["X", "X", ""], temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_other_type_is_a_negative_and_temperature_scales():
    # a, b type X at 60 degrees (cos 0.5); c type Y opposite a (cos(a,c) = -1, cos(b,c) = -0.5).
    # tau = 0.5. Anchors a and b (c has no positive).
    a, b, c = [1.0, 0.0], [0.5, math.sqrt(3) / 2], [-1.0, 0.0]
    loss = info_nce_loss(torch.tensor([a, b, c]), ["X", "X", "Y"], temperature=0.5)
    la = -math.log(math.exp(0.5 / 0.5) / (math.exp(0.5 / 0.5) + math.exp(-1 / 0.5)))
    lb = -math.log(math.exp(0.5 / 0.5) / (math.exp(0.5 / 0.5) + math.exp(-0.5 / 0.5)))
    assert loss.item() == pytest.approx((la + lb) / 2, abs=1e-6)


def test_several_positives_are_averaged():
    # Three X tokens all equal (cos 1), one non-entity orthogonal; tau = 1.
    # Anchor: two positives, each -log(e / (2e + 1)); average over positives and anchors.
    reps = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    loss = info_nce_loss(reps, ["X", "X", "X", ""], temperature=1.0)
    assert loss.item() == pytest.approx(-math.log(math.e / (2 * math.e + 1)), abs=1e-6)


def test_no_anchor_gives_zero_with_gradient_path():
    reps = torch.randn(3, 4, requires_grad=True)
    loss = info_nce_loss(reps, ["X", "", "Y"], temperature=0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert reps.grad is not None


def test_gradient_pulls_positives_together():
    reps = torch.tensor([[1.0, 0.2], [0.2, 1.0], [1.0, -1.0]], requires_grad=True)
    loss = info_nce_loss(reps, ["X", "X", ""], temperature=0.5)
    loss.backward()
    with torch.no_grad():
        moved = reps - 0.1 * reps.grad
    after = info_nce_loss(moved, ["X", "X", ""], temperature=0.5)
    assert after.item() < loss.item()


def test_bad_input():
    with pytest.raises(ValueError, match="temperature"):
        info_nce_loss(torch.ones(2, 2), ["X", "X"], temperature=0.0)
    with pytest.raises(ValueError, match="labels"):
        info_nce_loss(torch.ones(2, 2), ["X"], temperature=1.0)


def test_span_pooling_by_hand():
    # tokens: mention m1 = rows 0, 1 (X), non-entity row 2, mention m2 = row 3 (X), non-entity row 4
    reps = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0], [4.0, 4.0], [1.0, 1.0]], requires_grad=True)
    pooled, labels = pool_spans(reps, ["X", "X", "", "X", ""], ["m1", "m1", None, "m2", None])
    assert labels == ["X", "", "X", ""]
    assert pooled.tolist() == [[2.0, 1.0], [0.0, 5.0], [4.0, 4.0], [1.0, 1.0]]
    # the loss over spans: m1 = (2, 1) and m2 = (4, 4) are the only anchors, each other's positive
    loss = info_nce_loss(pooled, labels, temperature=1.0)
    cos = lambda u, v: (u @ v / (u.norm() * v.norm())).item()
    p = torch.tensor
    m1, m2, n1, n2 = p([2.0, 1.0]), p([4.0, 4.0]), p([0.0, 5.0]), p([1.0, 1.0])
    l1 = -math.log(math.exp(cos(m1, m2)) / sum(math.exp(cos(m1, k)) for k in (n1, m2, n2)))
    l2 = -math.log(math.exp(cos(m2, m1)) / sum(math.exp(cos(m2, k)) for k in (m1, n1, n2)))
    assert loss.item() == pytest.approx((l1 + l2) / 2, abs=1e-6)
    loss.backward()  # each token of a mention gets half of its mention's gradient
    assert torch.allclose(reps.grad[0], reps.grad[1]) and reps.grad[0].abs().sum() > 0


def test_span_pooling_checks_its_input():
    with pytest.raises(ValueError, match="groups"):
        pool_spans(torch.ones(2, 2), ["X", "X"], ["m"])
    with pytest.raises(ValueError, match="one span"):
        pool_spans(torch.ones(2, 2), ["X", "Y"], ["m", "m"])
