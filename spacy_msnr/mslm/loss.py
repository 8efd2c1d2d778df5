"""The mask-specific weighted cross-entropy, as thinc `Loss` objects, and its weightings.

Weightings are registered in `@msnr_weightings`: functions (N_E, N_G) -> (w_E, w_G) from the
counts of ELM- and BLM-masked wordpieces of the batch being trained. Each masked position t is
weighted alpha_t = 1 + w_E (ELM) or 1 + w_G (BLM), and the loss is

    L = sum_t alpha_t * CE_t / M        (M = number of masked positions in the batch)

i.e. a weighted mean over masked positions only: padding and unmasked positions never enter,
and the value does not depend on sequence length or padding. (The reference code instead
scales per sequence by 1 + |masked| and averages CE over all positions; see METHODS.md.)
"""
import math
from typing import Callable, Optional, Tuple, Union

import torch
from thinc.loss import Loss

from ..registry import weightings
from .masking import BLM, ELM, IGNORE_INDEX, MaskedBatch

Weighting = Callable[[int, int], Tuple[float, float]]
#: A factor for the gradient: a number, or a 0-dim tensor such as `GradScaler.scale(tensor(s))`.
GradScale = Union[float, torch.Tensor]


@weightings("spacy_msnr.softmax_share.v1")
def make_softmax_share() -> Weighting:
    """The paper's weights: p = N_E/(N_E+N_G); w_E = softmax([max(p,.5), min(p,.5)])[0]; w_G = 1-w_E."""

    def softmax_share(n_elm: int, n_blm: int) -> Tuple[float, float]:
        total = n_elm + n_blm
        p = n_elm / total if total else 0.0
        hi, lo = max(p, 0.5), min(p, 0.5)
        w_e = math.exp(hi) / (math.exp(hi) + math.exp(lo))
        return w_e, 1.0 - w_e

    return softmax_share


@weightings("spacy_msnr.inverse_frequency.v1")
def make_inverse_frequency() -> Weighting:
    """Weights inversely proportional to each kind's count, normalised to sum to 1:
    w_E = N_G/(N_E+N_G), w_G = N_E/(N_E+N_G) (both 0.5 for an empty batch)."""

    def inverse_frequency(n_elm: int, n_blm: int) -> Tuple[float, float]:
        total = n_elm + n_blm
        if not total:
            return 0.5, 0.5
        return n_blm / total, n_elm / total

    return inverse_frequency


@weightings("spacy_msnr.unweighted.v1")
def make_unweighted() -> Weighting:
    """No mask-specific weighting (alpha = 1 everywhere): plain masked-LM cross-entropy."""

    def unweighted(n_elm: int, n_blm: int) -> Tuple[float, float]:
        return 0.0, 0.0

    return unweighted


def position_weights(kinds: torch.Tensor, weighting: Weighting) -> Tuple[torch.Tensor, float, float]:
    """alpha_t for every masked position, plus the batch's (w_E, w_G)."""
    n_elm, n_blm = int((kinds == ELM).sum()), int((kinds == BLM).sum())
    w_e, w_g = weighting(n_elm, n_blm)
    alpha = torch.where(kinds == ELM, 1.0 + w_e, 1.0 + w_g).to(torch.float32)
    return alpha, w_e, w_g


class MaskSpecificLoss(Loss):
    """Weighted cross-entropy over masked positions; guesses are logits [M, V] at those positions.

    `loss(guesses, truths, grad_scale)` returns (gradient, loss value). The gradient is computed
    in float32, multiplied by `grad_scale` (accumulation share times the fp16 loss-scaling factor),
    and only then cast to the guesses' dtype, so fp16 gradients keep the entries that would
    underflow to zero unscaled. The loss value is never scaled.
    """

    def __init__(self, weighting: Weighting):
        self.weighting = weighting
        self.last_weights: Tuple[float, float] = (0.0, 0.0)

    def __call__(self, guesses: torch.Tensor, truths: MaskedBatch, grad_scale: GradScale = 1.0) -> Tuple[torch.Tensor, float]:
        labels = truths.labels.to(guesses.device)
        if not len(labels):
            return torch.zeros_like(guesses), 0.0
        alpha, w_e, w_g = position_weights(truths.kinds.to(guesses.device), self.weighting)
        self.last_weights = (w_e, w_g)
        logp = torch.log_softmax(guesses.detach().float(), dim=-1)
        ce = -logp.gather(1, labels[:, None])[:, 0]
        scale = alpha / len(labels)
        grad = logp.exp_()
        grad[torch.arange(len(labels), device=grad.device), labels] -= 1.0
        grad.mul_((scale * grad_scale)[:, None])
        return grad.to(guesses.dtype), float((scale * ce).sum())

    def get_grad(self, guesses: torch.Tensor, truths: MaskedBatch) -> torch.Tensor:
        return self(guesses, truths)[0]

    def get_loss(self, guesses: torch.Tensor, truths: MaskedBatch) -> float:
        return self(guesses, truths)[1]


class TaggerLoss(Loss):
    """Mean token-classification cross-entropy over tagged positions, times `weight` (lambda).

    `grad_scale` multiplies the float32 gradient before the cast, as in `MaskSpecificLoss`.
    """

    def __init__(self, weight: float = 1.0):
        self.weight = weight

    def __call__(self, guesses: Optional[torch.Tensor], truths: MaskedBatch, grad_scale: GradScale = 1.0) -> Tuple[Optional[torch.Tensor], float]:
        if guesses is None or truths.tag_labels is None:
            return None, 0.0
        labels = truths.tag_labels.to(guesses.device).reshape(-1)
        flat = guesses.detach().float().reshape(len(labels), -1)
        keep = labels != IGNORE_INDEX
        count = int(keep.sum())
        if not count:
            return torch.zeros_like(guesses), 0.0
        logp = torch.log_softmax(flat, dim=-1)
        safe = labels.clamp(min=0)
        ce = -logp.gather(1, safe[:, None])[:, 0] * keep
        grad = logp.exp_()
        grad[torch.arange(len(labels), device=grad.device), safe] -= 1.0
        grad.mul_((keep.float() * self.weight / count * grad_scale)[:, None])
        return grad.reshape(guesses.shape).to(guesses.dtype), float(self.weight * ce.sum() / count)

    def get_grad(self, guesses, truths):
        return self(guesses, truths)[0]

    def get_loss(self, guesses, truths):
        return self(guesses, truths)[1]
