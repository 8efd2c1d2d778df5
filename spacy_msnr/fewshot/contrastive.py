"""The supervised InfoNCE loss over entity-token representations (CLLMFS's contrastive term)."""
from typing import Sequence

import torch


def info_nce_loss(reps: torch.Tensor, labels: Sequence[str], temperature: float) -> torch.Tensor:
    """Supervised InfoNCE over token representations `reps` (n x d) with types `labels` ("" = not
    an entity).

    With s(u, v) the cosine similarity, tau the temperature, A the entity tokens (label != "")
    that have at least one other token of their type, P(a) = {p != a : label(p) = label(a)} and
    K(a) = {k != a} (same-type positives, other-type entity tokens and non-entity tokens):

        L = 1/|A| * sum_{a in A} -1/|P(a)| * sum_{p in P(a)} log( exp(s(a,p)/tau) / sum_{k in K(a)} exp(s(a,k)/tau) )

    Non-entity tokens are only ever negatives. Returns 0 (with a gradient path) when A is empty.
    """
    if temperature <= 0:
        raise ValueError(f"The contrastive temperature must be > 0, got {temperature}.")
    if reps.shape[0] != len(labels):
        raise ValueError(f"{reps.shape[0]} representations but {len(labels)} labels.")
    names = sorted({lab for lab in labels if lab})
    if not names:
        return reps.sum() * 0.0
    ids = torch.tensor([names.index(lab) + 1 if lab else 0 for lab in labels], device=reps.device)
    z = torch.nn.functional.normalize(reps.float(), dim=-1)
    sim = z @ z.T / temperature
    n = sim.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=reps.device)
    sim = sim.masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (ids[:, None] == ids[None, :]) & ~eye & (ids[:, None] > 0)
    n_pos = pos.sum(dim=1)
    anchors = n_pos > 0
    if not bool(anchors.any()):
        return reps.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(dim=1)[anchors] / n_pos[anchors])
    return per_anchor.mean()
