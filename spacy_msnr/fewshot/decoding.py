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

`generate` runs batched greedy decoding for one entity type with the instruction prefix's
key/value cache computed once, and stops each sequence at the terminator.
"""
import math
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

import torch
from spacy.tokens import Doc, Span

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


@torch.no_grad()
def generate(
    peft_model,
    prefix_ids: Sequence[int],
    prompts: Sequence[Sequence[int]],
    constraints: Sequence[SpanConstraint],
    *,
    max_new_tokens: int,
    batch_size: int,
    pad_id: int,
) -> None:
    """Greedy constrained decoding of `prompts` (the tokens after the shared `prefix_ids`), one
    `SpanConstraint` each, which this fills. The prefix's key/value cache is computed once;
    prompts are left-padded after it, batched by length, and each stops at its terminator."""
    from transformers import DynamicCache

    from .model import split_causal_lm

    backbone, head = split_causal_lm(peft_model)
    was_training = peft_model.training
    peft_model.eval()
    device = next(peft_model.parameters()).device
    prefix = torch.tensor([list(prefix_ids)], dtype=torch.long, device=device)
    prefix_cache = backbone(input_ids=prefix, use_cache=True).past_key_values
    if hasattr(prefix_cache, "to_legacy_cache"):
        prefix_cache = prefix_cache.to_legacy_cache()
    n_prefix = prefix.shape[1]
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    for b0 in range(0, len(order), batch_size):
        rows = order[b0 : b0 + batch_size]
        _decode_batch(backbone, head, prefix_cache, n_prefix, [prompts[i] for i in rows],
                      [constraints[i] for i in rows], max_new_tokens, pad_id, device, DynamicCache)
    peft_model.train(was_training)


def _decode_batch(backbone, head, prefix_cache, n_prefix, prompts, constraints, max_new_tokens, pad_id, device, cache_cls):
    size, longest = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((size, longest), pad_id, dtype=torch.long)
    mask = torch.zeros((size, n_prefix + longest), dtype=torch.long)
    mask[:, :n_prefix] = 1
    for r, p in enumerate(prompts):
        ids[r, longest - len(p):] = torch.tensor(list(p))
        mask[r, n_prefix + longest - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)[:, n_prefix:]
    cache = cache_cls.from_legacy_cache(
        tuple((k.expand(size, -1, -1, -1), v.expand(size, -1, -1, -1)) for k, v in prefix_cache)
    )
    out = backbone(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
    hidden = out.last_hidden_state[:, -1]
    next_pos = positions[:, -1] + 1
    live = list(range(size))
    for _ in range(max_new_tokens):
        logits = head(hidden).float()
        allowed = torch.zeros_like(logits, dtype=torch.bool)
        for r, i in enumerate(live):
            allowed[r, sorted(constraints[i].allowed())] = True
        logp = torch.log_softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
        best = logp.argmax(dim=-1)
        chosen = logp.gather(1, best[:, None])[:, 0]
        for r, i in enumerate(live):
            constraints[i].advance(int(best[r]), float(chosen[r]))
        keep = [r for r, i in enumerate(live) if not constraints[i].finished]
        if not keep:
            return
        if len(keep) < len(live):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            mask, best, next_pos = mask[index], best[index], next_pos[index]
            live = [live[r] for r in keep]
        mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype, device=device)], dim=1)
        out = backbone(input_ids=best[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                       past_key_values=cache, use_cache=True)
        hidden = out.last_hidden_state[:, -1]
        next_pos = next_pos + 1
