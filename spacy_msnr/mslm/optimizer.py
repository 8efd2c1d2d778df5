"""A torch AdamW with warm-up and linear decay, registered in thinc's `@optimizers` registry.

thinc's own optimizers update PyTorch parameters by copying each one to numpy/cupy and back on
every step and key their state by process-local layer ids; a torch optimizer keeps its state on
the device, works with autocast/GradScaler and saves a `state_dict` that resumes exactly.
"""
from dataclasses import dataclass
from typing import Iterable, Tuple

import torch
from thinc.api import registry


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


@registry.optimizers("spacy_msnr.AdamW.v1")
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
    if learn_rate <= 0:
        raise ValueError(f"learn_rate must be positive, got {learn_rate}")
    return TorchOptimizer(learn_rate, beta1, beta2, eps, weight_decay, warmup_steps, decay, max_grad_norm)
