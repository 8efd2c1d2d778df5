"""A torch AdamW with warm-up and linear decay for the MSLM loop, registered in `@msnr_optimizers`.

thinc's own optimizers update PyTorch parameters by copying each one to numpy/cupy and back on
every step and key their state by process-local layer ids; a torch optimizer keeps its state on
the device, works with autocast/GradScaler and saves a `state_dict` that resumes exactly. It is
not a thinc `Optimizer`, so it cannot be spaCy's `[training.optimizer]`: the name it once had in
thinc's `@optimizers` registry now raises an error that says so.
"""
import inspect
import math
from dataclasses import dataclass
from typing import Any, Iterable, NoReturn, Tuple

import torch
from thinc.api import registry as thinc_registry

from ..registry import optimizers


@dataclass
class TorchOptimizer:
    """Settings for AdamW; `build(params, total_steps)` makes the optimizer and its LR schedule."""

    learn_rate: float = 5e-5
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.01
    warmup_steps: int = 0
    decay: bool = True
    max_grad_norm: float = 1.0

    def build(self, params: Iterable[torch.nn.Parameter], total_steps: int) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        optimizer = torch.optim.AdamW(
            params, lr=self.learn_rate, betas=(self.beta1, self.beta2), eps=self.eps, weight_decay=self.weight_decay
        )
        warmup, decay = self.warmup_steps, self.decay and total_steps > 0

        def factor(step: int) -> float:
            if warmup and step < warmup:
                return (step + 1) / warmup
            if decay:
                return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
            return 1.0

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@optimizers("spacy_msnr.AdamW.v1")
def make_adamw(
    learn_rate: float = 5e-5,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    warmup_steps: int = 0,
    decay: bool = True,
    max_grad_norm: float = 1.0,
) -> TorchOptimizer:
    """AdamW (decoupled weight decay), linear warm-up over `warmup_steps`, then linear decay to 0
    at the run's last step (`decay`), gradients clipped to `max_grad_norm` (0: no clipping)."""
    _check("learn_rate", learn_rate, learn_rate > 0, "a positive number")
    for name, value in (("beta1", beta1), ("beta2", beta2)):
        _check(name, value, 0 <= value < 1, "within [0, 1)")
    _check("eps", eps, eps > 0, "a positive number")
    _check("weight_decay", weight_decay, weight_decay >= 0, "at least 0")
    _check("max_grad_norm", max_grad_norm, max_grad_norm >= 0, "at least 0 (0: no clipping)")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"training.optimizer.warmup_steps must be an integer >= 0, got {warmup_steps!r}")
    return TorchOptimizer(learn_rate, beta1, beta2, eps, weight_decay, warmup_steps, decay, max_grad_norm)


def _check(name: str, value: float, ok: bool, what: str) -> None:
    if math.isnan(float(value)) or not ok:
        raise ValueError(f"training.optimizer.{name} must be {what}, got {value!r}")


@thinc_registry.optimizers("spacy_msnr.AdamW.v1")
def reject_as_thinc_optimizer(**settings: Any) -> NoReturn:
    """The name's old place: a spaCy `[training.optimizer]` naming it gets this error (it takes
    make_adamw's settings, so the error is this one and not an unexpected-argument one)."""
    raise ValueError(
        "spacy_msnr.AdamW.v1 is a torch optimizer for the MSLM loop (python -m spacy_msnr pretrain), "
        "registered as @msnr_optimizers; it is not a thinc Optimizer and cannot be spaCy's [training.optimizer]. "
        'Use a thinc optimizer there, e.g. @optimizers = "Adam.v1".'
    )


reject_as_thinc_optimizer.__signature__ = inspect.signature(make_adamw).replace(return_annotation=NoReturn)  # type: ignore[attr-defined]
