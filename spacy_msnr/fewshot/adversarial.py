"""FGM adversarial perturbation of input embeddings (Miyato et al. 2017, as used by CLLMFS)."""
import torch


def fgm_perturbation(grad: torch.Tensor, epsilon: float, mask: torch.Tensor) -> torch.Tensor:
    """r = epsilon * g / ||g||_2 per sequence, for the loss gradient `g` (batch x length x dim)
    with respect to the input embeddings; padding positions (mask == 0) get no perturbation.
    A sequence whose gradient is zero is left unperturbed."""
    if epsilon < 0:
        raise ValueError(f"The adversarial epsilon must be >= 0, got {epsilon}.")
    g = grad.detach().float() * mask[..., None].to(torch.float32)
    norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
    r = epsilon * g / norm
    return r.to(grad.dtype)
