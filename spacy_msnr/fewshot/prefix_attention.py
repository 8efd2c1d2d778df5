"""Attention over a key/value prefix shared by many rows, without copying it per row.

Decoding behind a long prefix (the instruction, or in-context examples and the sentence) gives
every row of a batch the same prefix cache. Expanded to one copy per row, every decoding step
copies it again: the cache's `torch.cat`, then transformers' grouped-query `repeat_kv` and
`.contiguous()`, so a step moves several times rows x prefix x layers of keys and values
(SmolLM2 with a 5-way 5-shot support set as examples: gigabytes a step). Here the rows' own
tokens sit in an ordinary cache, and an attention function registered with transformers'
`AttentionInterface` attends over both: the prefix of each job once for all its rows (its
queries folded into one matrix product), the rows' own keys per row, under one softmax.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from typing import Iterator, List, Optional, Sequence, Tuple

import torch

#: The name under which `prefix_attention` is registered with transformers.
IMPLEMENTATION = "msnr_shared_prefix"
#: Model types whose attention takes a registered attention function, passes the model's keyword
#: arguments down to it and returns a 4-D mask unchanged (transformers' `create_causal_mask`);
#: each is checked against plain decoding in tests/test_fewshot_prefix_attention.py.
MODEL_TYPES = ("llama", "qwen2")


@dataclass
class SharedPrefix:
    """Per layer, each job's prefix keys and values (key/value heads x positions x head size), and
    the job of each row of the batch (rows of one job next to each other)."""

    layers: List[List[Tuple[torch.Tensor, torch.Tensor]]]
    row_jobs: List[int]

    def __post_init__(self) -> None:
        self._groups = self._runs()

    def _runs(self) -> List[Tuple[int, int, int]]:
        out: List[Tuple[int, int, int]] = []
        for job, run in groupby(self.row_jobs):
            start = out[-1][1] if out else 0
            out.append((start, start + len(list(run)), job))
        return out

    def groups(self) -> List[Tuple[int, int, int]]:
        """(first row, end row, job) of each run of rows with the same job (computed once per
        batch shape, not per layer)."""
        return self._groups

    def select(self, rows: Sequence[int]) -> None:
        """Keep these rows of the batch (in this order)."""
        self.row_jobs = [self.row_jobs[r] for r in rows]
        self._groups = self._runs()

    def length(self, job: int) -> int:
        return int(self.layers[0][job][0].shape[1])


def supported(backbone: torch.nn.Module) -> bool:
    """Whether `prefix_attention` can serve this backbone (transformers' attention interface, a
    model type checked against plain decoding, no sliding window)."""
    try:
        from transformers.modeling_utils import AttentionInterface  # noqa: F401
    except ImportError:
        return False
    config = getattr(backbone, "config", None)
    return (getattr(config, "model_type", None) in MODEL_TYPES and not getattr(config, "use_sliding_window", False)
            and getattr(type(backbone), "_supports_attention_backend", False))


@contextmanager
def enabled(backbone: torch.nn.Module) -> Iterator[None]:
    """Within the block, the backbone's attention is `prefix_attention`, which reads the
    `msnr_prefix` keyword of its forward call; every call in the block must pass a 4-D mask
    (rows x 1 x T x S, True = attend), as transformers makes no mask for this implementation."""
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, prefix_attention)
    config = backbone.config
    before = config._attn_implementation
    config._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        config._attn_implementation = before


def prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    msnr_prefix: Optional[SharedPrefix] = None,
    **kwargs,
) -> Tuple[torch.Tensor, None]:
    """Attention of `query` (rows x heads x T x d) over each row's job prefix in `msnr_prefix` and
    over the row's own `key`/`value` (rows x key/value heads x S x d), where `attention_mask`
    (rows x 1 x T x S, True = attend) allows; returns rows x T x heads x d, as transformers'
    attention functions do. Without `msnr_prefix` it is transformers' SDPA attention."""
    if msnr_prefix is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    rows, heads, t, d = query.shape
    kv_heads = key.shape[1]
    g = heads // kv_heads
    scale = scaling if scaling is not None else d ** -0.5
    work = torch.float32
    # head h reads key/value head h // g (transformers' repeat_kv): fold the g heads into the query axis
    q = query.to(work).reshape(rows, kv_heads, g * t, d) * scale
    own = q @ key.to(work).transpose(-1, -2)  # rows x kv x gT x S
    if attention_mask is not None:
        allow = attention_mask[:, :, None].expand(rows, 1, g, t, attention_mask.shape[-1]).reshape(rows, 1, g * t, -1)
        own = own.masked_fill(~allow[..., : own.shape[-1]], float("-inf"))
    out = torch.empty((rows, kv_heads, g * t, d), dtype=work, device=query.device)
    for lo, hi, job in msnr_prefix.groups():
        kp, vp = msnr_prefix.layers[module.layer_idx][job]
        n = hi - lo
        qj = q[lo:hi].transpose(0, 1).reshape(kv_heads, n * g * t, d)
        pre = (qj @ kp.to(work).transpose(-1, -2)).view(kv_heads, n, g * t, -1)  # kv x n x gT x P
        mine = own[lo:hi].transpose(0, 1)  # kv x n x gT x S
        top = torch.maximum(pre.amax(-1, keepdim=True), mine.amax(-1, keepdim=True))
        e_pre, e_own = (pre - top).exp(), (mine - top).exp()
        total = e_pre.sum(-1, keepdim=True) + e_own.sum(-1, keepdim=True)
        o_pre = (e_pre.reshape(kv_heads, n * g * t, -1) @ vp.to(work)).view(kv_heads, n, g * t, d)
        o_own = e_own.transpose(0, 1) @ value[lo:hi].to(work)  # n x kv x gT x d
        out[lo:hi] = ((o_pre / total).transpose(0, 1) + o_own / total.transpose(0, 1))
    out = out.view(rows, kv_heads, g, t, d).reshape(rows, heads, t, d).transpose(1, 2).contiguous()
    return out.to(query.dtype), None
