"""Span-constrained greedy decoding: every generated entity is a contiguous span of the input.

`SpanConstraint` is a small nondeterministic automaton over the answer format of `prompts.py`
(`` <<< span >>> ... `` + terminator, or `` none`` + terminator). Inside a span the allowed
next tokens are exactly those that extend some contiguous run of input tokens (a trie over all
contiguous input spans, walked implicitly by the set of positions matched so far); a span may
only start at a token that begins a spaCy token and close at one that ends a spaCy token. Spans
come in order of appearance and a span already given cannot be given again, so decoding always
makes progress. Several automaton states are kept at once, so marker tokens that also occur in
the text (e.g. a lone space piece) are handled exactly. Other mentions of a decoded entity's
text are found by `repeated_mentions`.

`generate` runs batched greedy decoding of jobs (a prefix and the prompts that follow it), each
prefix's key/value cache computed once, rows of several jobs in one batch, logits only for the
tokens the automaton allows, and stops each sequence at the terminator. For the model types of
`prefix_attention`, a batch's rows attend over their job's prefix cache without a copy of it per
row (in-context examples make that prefix thousands of tokens long).
"""
import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

import torch
from spacy.tokens import Doc, Span

from . import prefix_attention
from .prompts import Markers

# A hypothesis: (state, explicit spans (first, last), recorded spans (first, last, open_step,
# close_step), open_step).
# States: ("sep", first) between items; ("mark", kind, k) inside a multi-token marker;
# ("span_open",) expecting the first entity token; ("span", pairs) inside an entity, pairs of
# (first, current) input positions; ("final",) after "none".
Hyp = Tuple[tuple, Tuple[Tuple[int, int], ...], Tuple[Tuple[int, int, int, int], ...], int]


@dataclass(frozen=True)
class DecodedSpan:
    """An entity found by the decoder: input token positions first..last (inclusive) and the
    geometric mean probability of the constrained choices that produced it."""

    first: int
    last: int
    score: float


class SpanConstraint:
    """The answer automaton for one input (token ids with allowed start/end positions)."""

    def __init__(self, input_ids: Sequence[int], starts: FrozenSet[int], ends: FrozenSet[int], markers: Markers):
        self.ids = list(input_ids)
        self.starts = starts
        self.ends = ends
        self.m = markers
        self.hyps: List[Hyp] = [(("sep", True), (), (), -1)]
        self.step = 0
        self.finished = False
        self.result: Tuple[Tuple[int, int, int, int], ...] = ()
        self.logprobs: List[float] = []

    # -- automaton ----------------------------------------------------------------------------
    def _after_last(self, explicit: Tuple[Tuple[int, int], ...]) -> int:
        return explicit[-1][1] if explicit else -1

    def _allowed_for(self, hyp: Hyp) -> Set[int]:
        state, explicit, _, _ = hyp
        kind = state[0]
        m = self.m
        if kind == "sep":
            allowed = {m.none[0] if state[1] else m.end}
            if self._can_open(explicit):
                allowed.add(m.open[0])
            return allowed
        if kind == "mark":
            seq = {"open": m.open, "close": m.close, "none": m.none}[state[1]]
            return {seq[state[2]]}
        if kind == "final":
            return {m.end}
        if kind == "span_open":
            lo = self._after_last(explicit)
            return {self.ids[i] for i in self.starts if i > lo}
        pairs = state[1]
        allowed = {self.ids[j + 1] for _, j in pairs if j + 1 < len(self.ids)}
        if self._closable(pairs, explicit):
            allowed.add(m.close[0])
        return allowed

    def _can_open(self, explicit) -> bool:
        lo = self._after_last(explicit)
        return any(i > lo for i in self.starts)

    def _closable(self, pairs, explicit) -> bool:
        return any(j in self.ends and (i, j) not in explicit for i, j in pairs)

    def allowed(self) -> Set[int]:
        """Token ids that keep at least one hypothesis alive."""
        if self.finished:
            return {self.m.end}
        out: Set[int] = set()
        for hyp in self.hyps:
            out |= self._allowed_for(hyp)
        return out

    def advance(self, token: int, logprob: float = 0.0) -> None:
        """Consume `token` (which must be allowed) with its log-probability."""
        if self.finished:
            return
        self.logprobs.append(logprob)
        new: List[Hyp] = []
        for hyp in self.hyps:
            new.extend(self._step(hyp, token))
        if not new:
            raise ValueError(f"Token {token} is not allowed by the span constraint.")
        self.step += 1
        done = [h for h in new if h[0] == ("done",)]
        if done:
            self.finished = True
            self.result = done[0][2]
            self.hyps = []
            return
        seen, self.hyps = set(), []
        for h in new:
            if h not in seen:
                seen.add(h)
                self.hyps.append(h)

    def _step(self, hyp: Hyp, t: int) -> List[Hyp]:
        state, explicit, recorded, open_step = hyp
        kind, m, out = state[0], self.m, []
        if kind == "sep":
            if t == m.open[0] and self._can_open(explicit):
                nxt = ("mark", "open", 1) if len(m.open) > 1 else ("span_open",)
                out.append((nxt, explicit, recorded, self.step))
            if state[1] and t == m.none[0]:
                nxt = ("mark", "none", 1) if len(m.none) > 1 else ("final",)
                out.append((nxt, explicit, recorded, open_step))
            if not state[1] and t == m.end:
                out.append((("done",), explicit, recorded, open_step))
        elif kind == "mark":
            _, which, k = state
            seq = {"open": m.open, "close": m.close, "none": m.none}[which]
            if t == seq[k]:
                if k + 1 < len(seq):
                    out.append((("mark", which, k + 1), explicit, recorded, open_step))
                elif which == "open":
                    out.append((("span_open",), explicit, recorded, open_step))
                elif which == "close":
                    out.append((("sep", False), explicit, recorded, open_step))
                else:
                    out.append((("final",), explicit, recorded, open_step))
        elif kind == "final":
            if t == m.end:
                out.append((("done",), explicit, recorded, open_step))
        elif kind == "span_open":
            lo = self._after_last(explicit)
            pairs = frozenset((i, i) for i in self.starts if i > lo and self.ids[i] == t)
            if pairs:
                out.append((("span", pairs), explicit, recorded, open_step))
        else:
            pairs = state[1]
            cont = frozenset((i, j + 1) for i, j in pairs if j + 1 < len(self.ids) and self.ids[j + 1] == t)
            if cont:
                out.append((("span", cont), explicit, recorded, open_step))
            if t == m.close[0] and self._closable(pairs, explicit):
                first, last = min((i, j) for i, j in pairs if j in self.ends and (i, j) not in explicit)
                explicit2 = explicit + ((first, last),)
                recorded2 = recorded + ((first, last, open_step, self.step),)
                nxt = ("mark", "close", 1) if len(m.close) > 1 else ("sep", False)
                out.append((nxt, explicit2, recorded2, open_step))
        return out

    def allowed_along(self, answer: Sequence[int]) -> List[List[int]]:
        """The allowed token ids before each token of `answer` (teacher forcing), which must be a
        valid answer for this input; used to train the decoder's constrained choices."""
        out = []
        for tok in answer:
            allowed = self.allowed()
            if tok not in allowed:
                raise ValueError(f"Answer token {tok} is not a valid continuation under the span constraint.")
            out.append(sorted(allowed))
            self.advance(tok)
        return out

    # -- results ------------------------------------------------------------------------------
    def spans(self) -> List[DecodedSpan]:
        """The decoded entities (for an unfinished answer: those completed so far)."""
        recorded = self.result if self.finished else max((h[2] for h in self.hyps), key=len, default=())
        out = []
        for first, last, open_step, close_step in recorded:
            scores = self.logprobs[open_step : close_step + 1]
            out.append(DecodedSpan(first, last, math.exp(sum(scores) / len(scores))))
        return out


def repeated_mentions(doc: Doc, text: str, start_char: int, end_char: int) -> List[Span]:
    """Every occurrence of `text` in doc.text[start_char:end_char] that is exactly a span of
    spaCy tokens (all mentions of a decoded entity, not only the one the decoder pointed at)."""
    out, pos = [], doc.text.find(text, start_char, end_char)
    while text and pos != -1:
        span = doc.char_span(pos, pos + len(text))
        if span is not None:
            out.append(span)
        pos = doc.text.find(text, pos + 1, end_char)
    return out


def resolve_overlaps(candidates: Sequence[Tuple[int, int, str, float]]) -> List[Tuple[int, int, str, float]]:
    """Pick non-overlapping (start, end, label, score) spans (end exclusive): higher score first,
    then longer, then earlier, then label name. Returns them sorted by start."""
    order = sorted(set(candidates), key=lambda c: (-c[3], -(c[1] - c[0]), c[0], c[2]))
    taken: List[Tuple[int, int, str, float]] = []
    used: Set[int] = set()
    for c in order:
        if c[1] <= c[0] or any(i in used for i in range(c[0], c[1])):
            continue
        taken.append(c)
        used.update(range(c[0], c[1]))
    return sorted(taken)


#: One decoding job: a prefix shared by its prompts, the prompts, and one constraint per prompt.
Job = Tuple[Sequence[int], Sequence[Sequence[int]], Sequence["SpanConstraint"]]


@torch.no_grad()
def generate(
    peft_model,
    jobs: Sequence[Job],
    *,
    max_new_tokens: int,
    batch_size: int,
    pad_id: int,
    shared: int = 0,
) -> None:
    """Greedy constrained decoding. Each job is (prefix_ids, prompts, constraints): the prompts
    follow the job's prefix, whose key/value cache is computed once, and each fills its
    `SpanConstraint`. The first `shared` tokens of every job's prefix are the same, and their
    cache is computed once for all jobs. Batches of `batch_size` prompts (from one or several
    jobs: each row reads its own job's cache, left-padded) decode together, each stopping at its
    terminator (SmolLM2 on one CPU thread, 10 sentences x 7 types: 28.7 CPU s in batches of 7,
    one sentence each, 20.4 s in batches of 64)."""
    from .base_model import split_causal_lm

    backbone, head = split_causal_lm(peft_model)
    was_training = peft_model.training
    peft_model.eval()
    shared_prefix = prefix_attention.supported(backbone)
    try:
        device = next(backbone.parameters()).device
        common = _prefix_cache(backbone, list(jobs[0][0][:shared]), None, device) if jobs and shared else None
        rows = [(j, i) for j, (_, prompts, _) in enumerate(jobs)
                for i in sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))]
        caches: Dict[int, Optional[tuple]] = {}
        for b0 in range(0, len(rows), batch_size):
            batch = rows[b0 : b0 + batch_size]
            for j, _ in batch:
                if j not in caches:
                    caches[j] = _prefix_cache(backbone, list(jobs[j][0][shared:]), common, device)
            row_jobs = [j for j, _ in batch]
            shared_now = shared_prefix and all(caches[j] is not None for j in row_jobs)
            _decode_batch(backbone, head, row_jobs, caches, [jobs[j][1][i] for j, i in batch],
                          [jobs[j][2][i] for j, i in batch], max_new_tokens, pad_id, device, shared_now)
            for j in [k for k in caches if k < batch[-1][0]]:
                del caches[j]
    finally:
        peft_model.train(was_training)


def _prefix_cache(backbone, ids: List[int], past: Optional[tuple], device) -> Optional[tuple]:
    """The (legacy) key/value cache of `ids` after the cache `past` (None: from the start)."""
    if not ids:
        return past
    from transformers import DynamicCache

    cache = DynamicCache.from_legacy_cache(past) if past is not None else None
    start = past[0][0].shape[2] if past is not None else 0
    tensor = torch.tensor([ids], dtype=torch.long, device=device)
    positions = torch.arange(start, start + len(ids), device=device)[None]
    out = backbone(input_ids=tensor, position_ids=positions, past_key_values=cache, use_cache=True).past_key_values
    return out.to_legacy_cache() if hasattr(out, "to_legacy_cache") else out


def _batch_cache(row_jobs: List[int], caches: Dict[int, Optional[tuple]], device):
    """A DynamicCache with one row per prompt holding its job's prefix cache, left-padded to the
    longest, and the (rows x prefix) attention mask of the real positions."""
    from transformers import DynamicCache

    jobs = sorted(set(row_jobs))
    lens = {j: caches[j][0][0].shape[2] if caches[j] is not None else 0 for j in jobs}
    n_prefix = max(lens.values())
    mask = torch.zeros((len(row_jobs), n_prefix), dtype=torch.long, device=device)
    for r, j in enumerate(row_jobs):
        mask[r, n_prefix - lens[j]:] = 1
    if n_prefix == 0:
        return DynamicCache(), mask
    where = torch.tensor([jobs.index(j) for j in row_jobs], device=device)
    some = next(caches[j] for j in jobs if lens[j])
    layers = []
    for layer in range(len(some)):
        pair = []
        for part in (0, 1):
            ref = some[layer][part]
            if len(jobs) == 1:
                pair.append(ref.expand(len(row_jobs), -1, -1, -1))
                continue
            stacked = ref.new_zeros((len(jobs), ref.shape[1], n_prefix, ref.shape[3]))
            for k, j in enumerate(jobs):
                if lens[j]:
                    stacked[k, :, n_prefix - lens[j]:] = caches[j][layer][part][0]
            pair.append(stacked[where])
        layers.append(tuple(pair))
    return DynamicCache.from_legacy_cache(tuple(layers)), mask


def _shared_prefix(row_jobs: List[int], caches: Dict[int, Optional[tuple]]) -> "prefix_attention.SharedPrefix":
    """The jobs' prefix caches as one `SharedPrefix` for these rows (no copy per row)."""
    jobs = sorted(set(row_jobs))
    layers = [[(caches[j][layer][0][0], caches[j][layer][1][0]) for j in jobs] for layer in range(len(caches[jobs[0]]))]
    return prefix_attention.SharedPrefix(layers, [jobs.index(j) for j in row_jobs])


def _decode_batch(backbone, head, row_jobs, caches, prompts, constraints, max_new_tokens, pad_id, device,
                  shared: bool = False):
    """Greedy constrained decoding of one batch of prompts, each after its job's prefix cache:
    with `shared`, the prefixes are attended once per job (`prefix_attention`); otherwise each
    row holds a left-padded copy of its job's prefix cache."""
    with prefix_attention.enabled(backbone) if shared else nullcontext():
        _decode_rows(backbone, head, row_jobs, caches, prompts, constraints, max_new_tokens, pad_id, device, shared)


def _decode_rows(backbone, head, row_jobs, caches, prompts, constraints, max_new_tokens, pad_id, device, shared):
    from transformers import DynamicCache

    size, longest = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((size, longest), pad_id, dtype=torch.long)
    for r, p in enumerate(prompts):
        ids[r, longest - len(p):] = torch.tensor(list(p))
    ids = ids.to(device)
    extra = {}
    if shared:
        prefix = _shared_prefix(row_jobs, caches)
        starts = torch.tensor([prefix.length(j) for j in prefix.row_jobs], device=device)
        cache, n_prefix = DynamicCache(), 0
        mask = torch.zeros((size, longest), dtype=torch.long, device=device)
        extra["msnr_prefix"] = prefix
    else:
        cache, prefix_mask = _batch_cache(row_jobs, caches, device)
        n_prefix = prefix_mask.shape[1]
        mask = torch.zeros((size, n_prefix + longest), dtype=torch.long, device=device)
        mask[:, :n_prefix] = prefix_mask
    for r, p in enumerate(prompts):
        mask[r, n_prefix + longest - len(p):] = 1
    positions = (mask.cumsum(-1) - 1).clamp_min(0)[:, n_prefix:]
    if shared:
        positions = positions + starts[:, None]
        causal = torch.ones((longest, longest), dtype=torch.bool, device=device).tril()
        out = backbone(input_ids=ids, attention_mask=causal[None, None] & mask.bool()[:, None, None, :],
                       position_ids=positions, past_key_values=cache, use_cache=True, **extra)
    else:
        out = backbone(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
    hidden = out.last_hidden_state[:, -1]
    next_pos = positions[:, -1] + 1
    live = list(range(size))
    for _ in range(max_new_tokens):
        sets = [constraints[i].allowed() for i in live]
        ids_, logits = allowed_logits(head, hidden, sorted(set().union(*sets)))
        column = {t: c for c, t in enumerate(ids_.tolist())}
        allowed = torch.zeros_like(logits, dtype=torch.bool)
        for r, allowed_r in enumerate(sets):
            allowed[r, [column[t] for t in allowed_r]] = True
        logp = torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
        pick = logp.argmax(dim=-1)
        chosen = logp.gather(1, pick[:, None])[:, 0]
        best = ids_[pick]
        for r, i in enumerate(live):
            constraints[i].advance(int(best[r]), float(chosen[r]))
        keep = [r for r, i in enumerate(live) if not constraints[i].finished]
        if not keep:
            return
        if len(keep) < len(live):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            if shared:
                extra["msnr_prefix"].select(keep)
            mask, best, next_pos = mask[index], best[index], next_pos[index]
            live = [live[r] for r in keep]
        mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype, device=device)], dim=1)
        out = backbone(input_ids=best[:, None], attention_mask=mask.bool()[:, None, None, :] if shared else mask,
                       position_ids=next_pos[:, None], past_key_values=cache, use_cache=True, **extra)
        hidden = out.last_hidden_state[:, -1]
        next_pos = next_pos + 1


def allowed_logits(head: torch.nn.Module, hidden: torch.Tensor, ids: List[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(ids, logits of `hidden` for those vocabulary ids only), float32. The constrained decoder
    normalises over the allowed tokens, so the rest of the vocabulary (49k rows for SmolLM2, a
    fifth of its per-token cost) is never computed when the head is a plain linear layer."""
    index = torch.tensor(ids, dtype=torch.long, device=hidden.device)
    if isinstance(head, torch.nn.Linear):
        logits = hidden @ head.weight[index].T
        if head.bias is not None:
            logits = logits + head.bias[index]
        return index, logits.float()
    return index, head(hidden).float()[:, index]
