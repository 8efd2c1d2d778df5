"""The mask-specific loss and its weightings, against hand-computed values."""
import math

import numpy as np
import pytest
import torch

from spacy_msnr.mslm.loss import (
    MaskSpecificLoss, TaggerLoss, make_inverse_frequency, make_softmax_share, make_unweighted, position_weights,
)
from spacy_msnr.mslm.masking import BLM, ELM, MaskedBatch


def batch_of(labels, kinds, tag_labels=None):
    n = len(labels)
    return MaskedBatch(
        input_ids=torch.zeros(1, 1, dtype=torch.long), attention_mask=torch.ones(1, 1, dtype=torch.long),
        positions=torch.arange(n), labels=torch.tensor(labels), kinds=torch.tensor(kinds),
        is_term=torch.tensor([k == ELM for k in kinds]), tag_labels=tag_labels,
    )


@pytest.mark.parametrize("n_elm,n_blm,w_e", [
    (0, 10, math.exp(0.5) / (math.exp(0.5) + 1)),               # p = 0
    (1, 3, math.exp(0.5) / (math.exp(0.5) + math.exp(0.25))),  # p = 0.25
    (5, 5, 0.5),                                               # p = 0.5
    (3, 1, math.exp(0.75) / (math.exp(0.75) + math.exp(0.5))),  # p = 0.75
    (7, 0, math.exp(1) / (math.exp(1) + math.exp(0.5))),       # p = 1
])
def test_softmax_share_follows_the_formula(n_elm, n_blm, w_e):
    got_e, got_g = make_softmax_share()(n_elm, n_blm)
    assert got_e == pytest.approx(w_e, abs=1e-12)
    assert got_g == pytest.approx(1 - w_e, abs=1e-12)
    assert 0.5 <= got_e <= 0.6225


def test_inverse_frequency_and_unweighted():
    assert make_inverse_frequency()(1, 3) == pytest.approx((0.75, 0.25))
    assert make_inverse_frequency()(0, 0) == (0.5, 0.5)
    assert make_unweighted()(4, 9) == (0.0, 0.0)
    alpha, w_e, w_g = position_weights(torch.tensor([ELM, BLM, BLM, BLM]), make_inverse_frequency())
    assert alpha.tolist() == pytest.approx([1.75, 1.25, 1.25, 1.25])


def test_loss_equals_hand_computed_two_sentence_example():
    # Vocabulary of 3 pieces. Sentence 1 masks a DS-term piece (gold 0) and a generic piece
    # (gold 2); sentence 2 masks two generic pieces (gold 1, gold 1). The batch has N_E = 1,
    # N_G = 3, so p = 0.25, w_E = e^.5/(e^.5+e^.25) = 0.562177, w_G = 0.437823.
    logits = torch.tensor([
        [2.0, 0.0, 0.0],   # s1, ELM, gold 0: CE = -log(e^2/(e^2+2)) = 0.239545
        [0.0, 0.0, 1.0],   # s1, BLM, gold 2: CE = -log(e/(e+2)) = 0.551445
        [1.0, 1.0, 1.0],   # s2, BLM, gold 1: CE = log 3 = 1.098612
        [0.0, -1.0, 0.0],  # s2, BLM, gold 1: CE = -log(e^-1/(e^-1+2)) = 1.861995
    ])
    batch = batch_of([0, 2, 1, 1], [ELM, BLM, BLM, BLM])
    # (1.562177*0.239606 + 1.437823*(0.551445 + 1.098612 + 1.861995)) / 4
    expected = (1.562177 * 0.239545 + 1.437823 * (0.551445 + 1.098612 + 1.861995)) / 4
    grad, value = MaskSpecificLoss(make_softmax_share())(logits, batch)
    assert value == pytest.approx(expected, abs=1e-5)
    assert value == pytest.approx(1.355980, abs=1e-5)
    # the gradient is that of the same weighted mean, checked with autograd
    x = logits.clone().requires_grad_()
    alpha = torch.tensor([1.562177, 1.437823, 1.437823, 1.437823])
    (alpha * torch.nn.functional.cross_entropy(x, batch.labels, reduction="none")).mean().backward()
    assert torch.allclose(grad, x.grad, atol=1e-5)


def test_unweighted_loss_is_plain_masked_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(6, 11)
    labels = [1, 4, 0, 10, 3, 3]
    _, value = MaskSpecificLoss(make_unweighted())(logits, batch_of(labels, [ELM, BLM] * 3))
    assert value == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.tensor(labels))), abs=1e-5)


def test_weights_come_from_the_batch_being_trained():
    loss = MaskSpecificLoss(make_softmax_share())
    logits = torch.zeros(4, 5)
    loss(logits, batch_of([0, 1, 2, 3], [ELM, ELM, ELM, BLM]))
    assert loss.last_weights[0] == pytest.approx(math.exp(0.75) / (math.exp(0.75) + math.exp(0.5)))
    loss(logits, batch_of([0, 1, 2, 3], [ELM, BLM, BLM, BLM]))
    assert loss.last_weights[0] == pytest.approx(math.exp(0.5) / (math.exp(0.5) + math.exp(0.25)))


def test_empty_batch_gives_zero_loss():
    grad, value = MaskSpecificLoss(make_softmax_share())(torch.zeros(0, 7), batch_of([], []))
    assert value == 0.0 and grad.shape == (0, 7)


def test_tagger_loss_ignores_untagged_positions():
    logits = torch.tensor([[[0.0, 2.0], [5.0, -5.0], [1.0, 1.0]]])
    tags = torch.tensor([[1, -100, 0]])
    batch = batch_of([0], [BLM], tag_labels=tags)
    grad, value = TaggerLoss(weight=0.5)(logits, batch)
    expected = 0.5 * (-math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(2)) / 2
    assert value == pytest.approx(expected, abs=1e-6)
    assert np.allclose(grad[0, 1].numpy(), 0.0)


def test_fp16_gradient_is_scaled_before_the_cast():
    """At M = 512 masked positions and BERT's 30,522 pieces most entries of the fp32 gradient
    (about 1e-7) are below fp16's smallest number: scaling after the cast flushes them to zero
    (10.3 M of 15.6 M here), scaling by the GradScaler's 2**16 before the cast keeps them."""
    torch.manual_seed(0)
    m, v, factor = 512, 30522, 2.0 ** 16
    logits = (torch.randn(m, v) * 2).half()
    batch = batch_of(torch.randint(0, v, (m,)).tolist(), [ELM, BLM] * (m // 2))
    loss = MaskSpecificLoss(make_softmax_share())
    reference, value = loss(logits.float(), batch)
    assert int((reference == 0).sum()) == 0
    cast_then_scaled = loss(logits, batch)[0] * factor
    assert int((cast_then_scaled == 0).sum()) > 0.6 * m * v
    grad, scaled_value = loss(logits, batch, grad_scale=torch.tensor(factor))
    assert grad.dtype == torch.float16 and scaled_value == pytest.approx(value, rel=1e-6)
    # zero only where even the scaled value is below fp16's range (2 entries of 15.6 M)
    assert int((grad == 0).sum()) == int(((reference * factor).half() == 0).sum()) < 10
    assert torch.allclose(grad.float() / factor, reference, rtol=1e-3, atol=1e-12)


def test_tagger_gradient_is_scaled_before_the_cast():
    torch.manual_seed(0)
    logits = (torch.randn(8, 512, 3) * 4).half()
    tags = torch.randint(0, 3, (8, 512))
    reference, value = TaggerLoss(weight=0.1)(logits.float(), batch_of([0], [BLM], tag_labels=tags))
    unscaled = TaggerLoss(weight=0.1)(logits, batch_of([0], [BLM], tag_labels=tags))[0]
    grad, scaled_value = TaggerLoss(weight=0.1)(logits, batch_of([0], [BLM], tag_labels=tags), grad_scale=2.0 ** 16)
    assert int((unscaled == 0).sum()) > int((grad == 0).sum()) == int(((reference * 2 ** 16).half() == 0).sum())
    assert torch.allclose(grad.float() / 2 ** 16, reference, rtol=1e-3, atol=1e-12) and scaled_value == pytest.approx(value)
