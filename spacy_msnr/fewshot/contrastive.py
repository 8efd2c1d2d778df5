"""The supervised InfoNCE loss over entity-token (or entity-span) representations (CLLMFS's contrastive term)."""
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

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


def pool_spans(reps: torch.Tensor, labels: Sequence[str],
               groups: Sequence[Optional[Hashable]]) -> Tuple[torch.Tensor, List[str]]:
    """Span-level units for `info_nce_loss`: the token representations `reps` (n x d) that share a
    group (one gold entity mention) are averaged into one row with the mention's type; tokens whose
    group is None (non-entity tokens) stay rows of their own. Rows come out in order of each
    unit's first token, so the result is differentiable with respect to every token's `reps`."""
    if reps.shape[0] != len(labels) or len(labels) != len(groups):
        raise ValueError(f"{reps.shape[0]} representations, {len(labels)} labels and {len(groups)} groups.")
    index: Dict[Hashable, int] = {}
    unit_of, unit_labels = [], []
    for i, (label, group) in enumerate(zip(labels, groups)):
        key = ("token", i) if group is None else ("span", group)
        if key not in index:
            index[key] = len(unit_labels)
            unit_labels.append(label)
        elif unit_labels[index[key]] != label:
            raise ValueError(f"Tokens of one span have types {unit_labels[index[key]]!r} and {label!r}.")
        unit_of.append(index[key])
    ids = torch.tensor(unit_of, dtype=torch.long, device=reps.device)
    sums = torch.zeros(len(unit_labels), reps.shape[1], dtype=reps.dtype, device=reps.device).index_add(0, ids, reps)
    counts = torch.zeros(len(unit_labels), dtype=reps.dtype, device=reps.device).index_add(
        0, ids, torch.ones(len(unit_of), dtype=reps.dtype, device=reps.device))
    return sums / counts[:, None], unit_labels
