"""FGM adversarial perturbation of input embeddings (Miyato et al. 2017, as used by CLLMFS).

The direction is the gradient `g` of the training loss with respect to the input embeddings;
`model.py` passes the gradient of the total loss (LM + weight x contrastive). Two scalings:
`relative_fgm_perturbation` (LoRAInstructionNER.v2) normalises per token and measures epsilon
in units of the model's mean token-embedding norm; `fgm_perturbation` (v1) normalises per
sequence with an absolute epsilon.
"""
import torch


def _check(epsilon: float) -> None:
    if epsilon < 0:
        raise ValueError(f"The adversarial epsilon must be >= 0, got {epsilon}.")


def fgm_perturbation(grad: torch.Tensor, epsilon: float, mask: torch.Tensor) -> torch.Tensor:
    """r = epsilon * g / ||g||_2 per sequence, for the loss gradient `g` (batch x length x dim)
    with respect to the input embeddings; padding positions (mask == 0) get no perturbation.
    A sequence whose gradient is zero is left unperturbed."""
    _check(epsilon)
    g = grad.detach().float() * mask[..., None].to(torch.float32)
    norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
    r = epsilon * g / norm
    return r.to(grad.dtype)


def relative_fgm_perturbation(grad: torch.Tensor, epsilon: float, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """r_t = epsilon * scale * g_t / ||g_t||_2 at every position t (per-token normalisation, as
    in FreeLB), for the loss gradient `g` (batch x length x dim) with respect to the input
    embeddings and `scale` the mean token-embedding norm (`mean_embedding_norm`): every token
    moves by epsilon times a typical embedding's length, whatever the model or sequence length.
    Padding positions (mask == 0) and positions with zero gradient are left unperturbed."""
    _check(epsilon)
    g = grad.detach().float() * mask[..., None].to(torch.float32)
    norm = g.norm(dim=-1, keepdim=True)
    r = torch.where(norm > 0, epsilon * scale * g / norm.clamp_min(1e-30), torch.zeros_like(g))
    return r.to(grad.dtype)


def mean_embedding_norm(weight: torch.Tensor) -> float:
    """The mean L2 norm of the rows of an embedding matrix (vocabulary x dim)."""
    return float(weight.detach().float().norm(dim=-1).mean())
