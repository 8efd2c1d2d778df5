"""Which wordpieces to mask: MSLM's joint ELM+BLM masking and the baseline maskers.

Documents are first encoded once (`encode_doc`): wordpieces of the text, each aligned to the
spaCy token it falls in and to the DS-term span (if any) that token belongs to. A masker then
draws, for every training batch, which positions to mask and of which kind (`ELM`, `BLM`), and
`mask_batch` pads the batch and applies the replacement rule ("mask": always the mask token;
"bert": 80% mask token, 10% a random wordpiece, 10% unchanged). Maskers are registered in
`@msnr_maskers` and draw from the generator they are given, so masks are resampled every batch
(dynamic masking) yet reproducible from the seed.
"""
import bisect
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from spacy.tokens import Doc
from transformers import PreTrainedTokenizerBase

from ..registry import maskers

#: Position kinds returned by maskers.
UNMASKED, ELM, BLM = 0, 1, 2
REPLACEMENTS = ("mask", "bert")
IGNORE_INDEX = -100


@dataclass
class EncodedSeq:
    """One document as wordpieces, aligned to its spaCy tokens and DS-term spans.

    `word_ids[i]` is the spaCy token index of piece i (-1 for special pieces), `term_ids[i]` the
    index of the DS-term span it belongs to (-1 outside terms), `tags[i]` the BIO tag id of the
    token's first piece for the optional tagging head (IGNORE_INDEX elsewhere).
    """

    input_ids: np.ndarray
    word_ids: np.ndarray
    term_ids: np.ndarray
    n_terms: int
    words: Tuple[str, ...]
    tags: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def special(self) -> np.ndarray:
        return self.word_ids < 0


@dataclass
class MaskedBatch:
    """A padded, masked batch: model inputs plus what the loss and metrics need.

    `positions` index the flattened (batch x length) grid at masked positions; `labels`,
    `kinds` and `is_term` are given for those positions only.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor
    kinds: torch.Tensor
    is_term: torch.Tensor
    tag_labels: Optional[torch.Tensor] = None

    @property
    def n_pieces(self) -> int:
        return int(self.attention_mask.sum())


def check_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Raise a clear error if `tokenizer` cannot be used for masked-LM adaptation."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast (Rust) tokenizer; MSLM aligns wordpieces to "
            "spaCy tokens through character offsets, which only fast tokenizers give. Load it with use_fast=True."
        )
    if tokenizer.mask_token_id is None:
        raise ValueError(
            f"Tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no mask token; masked-LM "
            "adaptation needs a BERT-family tokenizer with one (e.g. [MASK] or <mask>)."
        )


def _count_pieces(text: str, tokenizer: PreTrainedTokenizerBase) -> int:
    """Wordpieces of `text` as the model sees it, special tokens included."""
    return len(tokenizer(text)["input_ids"])


def split_to_fit(doc: Doc, tokenizer: PreTrainedTokenizerBase, max_length: int) -> List[Doc]:
    """Cut `doc` at token boundaries, never inside an entity, into Docs of at most `max_length`
    wordpieces (special tokens included), so long documents are windowed, not truncated.

    Each window is planned from the pieces its tokens get in the whole text, then tokenized on
    its own and shortened (one cut at a time) until it fits: a cut between tokens with no space
    between them can change the pieces. Raises ValueError for an entity or a token that does not
    fit in `max_length` wordpieces on its own.
    """
    if len(doc) == 0 or _count_pieces(doc.text, tokenizer) <= max_length:
        return [doc]
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    enc = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True)
    piece_starts = np.array([start for start, _ in enc["offset_mapping"]])
    bounds = np.array([t.idx for t in doc][1:] + [len(doc.text) + 1])
    owner = np.searchsorted(bounds, piece_starts, side="right")
    before = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(doc))[: len(doc)])])
    cuts = [i for i in range(1, len(doc)) if doc[i].ent_iob_ != "I"] + [len(doc)]
    windows: List[Doc] = []
    start = 0
    while start < len(doc):
        ends = cuts[bisect.bisect_right(cuts, start):]
        planned = max(1, bisect.bisect_right([int(before[e] - before[start]) for e in ends], budget))
        for end in reversed(ends[:planned]):
            window = doc[start:end].as_doc()
            if _count_pieces(window.text, tokenizer) <= max_length:
                break
        else:
            unit = doc[start:ends[0]]
            kind = "entity" if doc[start].ent_iob_ == "B" else "token"
            raise ValueError(f"The {kind} {unit.text!r} is longer than max_length={max_length} wordpieces on its own; "
                             "it cannot be windowed without cutting it")
        windows.append(window)
        start = end
    return windows


def encode_doc(
    doc: Doc,
    tokenizer: PreTrainedTokenizerBase,
    term_spans: Sequence[Tuple[int, int]],
    max_length: int = 128,
    tag_map: Optional[Dict[str, int]] = None,
) -> EncodedSeq:
    """Wordpieces of `doc.text` aligned to tokens and DS-term spans. Nothing is truncated: a doc
    of more than `max_length` wordpieces is a ValueError (window it with `split_to_fit` first).

    `term_spans` are (start, end) token offsets of DS-terms. With `tag_map` (BIO tag -> id) the
    doc's entities give per-piece tags.
    """
    enc = tokenizer(doc.text, return_offsets_mapping=True, return_special_tokens_mask=True)
    if len(enc["input_ids"]) > max_length:
        raise ValueError(
            f"Doc {doc.text[:60]!r}... has {len(enc['input_ids'])} wordpieces, more than max_length={max_length}; "
            "split it with split_to_fit first"
        )
    char_to_token = np.full(len(doc.text) + 1, -1, dtype=np.int32)
    for token in doc:
        char_to_token[token.idx : token.idx + len(token.text)] = token.i
    token_to_term = np.full(len(doc) + 1, -1, dtype=np.int32)
    for index, (start, end) in enumerate(sorted(set(term_spans))):
        token_to_term[start:end] = index
    # Token at or after each character, so whitespace-only pieces (a bare "Ġ") join the next word.
    next_token = char_to_token.copy()
    next_token[-1] = len(doc) - 1
    for c in range(len(doc.text) - 1, -1, -1):
        if next_token[c] < 0:
            next_token[c] = next_token[c + 1]
    n = len(enc["input_ids"])
    word_ids = np.full(n, -1, dtype=np.int32)
    for i, ((start, end), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"])):
        if not special:
            hits = char_to_token[start:end]
            hits = hits[hits >= 0]
            word_ids[i] = hits[0] if len(hits) else next_token[min(start, len(doc.text))]
    term_ids = np.where(word_ids >= 0, token_to_term[word_ids], -1).astype(np.int32)
    present = np.unique(term_ids[term_ids >= 0])
    remap = {old: new for new, old in enumerate(present.tolist())}
    term_ids = np.array([remap.get(t, -1) for t in term_ids.tolist()], dtype=np.int32)
    tags = None
    if tag_map is not None:
        tags = np.full(n, IGNORE_INDEX, dtype=np.int64)
        seen = set()
        for i, w in enumerate(word_ids.tolist()):
            if w >= 0 and w not in seen:
                seen.add(w)
                token = doc[w]
                tag = f"{token.ent_iob_}-{token.ent_type_}" if token.ent_iob_ in ("B", "I") else "O"
                tags[i] = tag_map.get(tag, tag_map["O"])
    words = tuple(t.text.lower() for t in doc)
    return EncodedSeq(np.asarray(enc["input_ids"], dtype=np.int64), word_ids, term_ids, len(present), words, tags)


class Masker:
    """Base class: `sample(seq, rng)` returns the kind (UNMASKED/ELM/BLM) of every position."""

    #: Whether the masker reads DS-term spans (so docs without terms deserve a warning).
    uses_terms = False

    def __init__(self, replacement: str = "bert"):
        if replacement not in REPLACEMENTS:
            raise ValueError(f"replacement must be one of {REPLACEMENTS}, got {replacement!r}")
        self.replacement = replacement

    def initialize(self, seqs: Sequence[EncodedSeq]) -> None:
        """Collect corpus statistics if the masker needs any (PMI n-grams)."""

    def sample(self, seq: EncodedSeq, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


def _check_rate(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0 or math.isnan(float(value)):
        raise ValueError(f"{name} must be within [0, 1], got {value!r}")
    return float(value)


def _stochastic_round(x: float, rng: np.random.Generator) -> int:
    """floor(x) plus one with probability frac(x): an integer whose expectation is x."""
    base = math.floor(x)
    return base + int(rng.random() < x - base)


class MaskSpecificMasker(Masker):
    """MSLM's joint masking: ELM on whole DS-terms, then BLM on the remaining pieces."""

    uses_terms = True

    def __init__(self, elm_rate: float = 0.5, blm_rate: float = 0.15, replacement: str = "mask"):
        super().__init__(replacement)
        self.elm_rate = _check_rate("elm_rate", elm_rate)
        self.blm_rate = _check_rate("blm_rate", blm_rate)

    def sample(self, seq: EncodedSeq, rng: np.random.Generator) -> np.ndarray:
        kinds = np.zeros(len(seq), dtype=np.int8)
        if seq.n_terms:
            k = min(seq.n_terms, _stochastic_round(self.elm_rate * seq.n_terms, rng))
            chosen = rng.choice(seq.n_terms, size=k, replace=False)
            kinds[np.isin(seq.term_ids, chosen) & (seq.term_ids >= 0)] = ELM
        candidates = (kinds == UNMASKED) & ~seq.special
        kinds[candidates & (rng.random(len(seq)) < self.blm_rate)] = BLM
        return kinds


class UniformMasker(Masker):
    """BERT's masking: each non-special wordpiece independently with probability `rate`."""

    def __init__(self, rate: float = 0.15, replacement: str = "bert"):
        super().__init__(replacement)
        self.rate = _check_rate("rate", rate)

    def sample(self, seq: EncodedSeq, rng: np.random.Generator) -> np.ndarray:
        draw = rng.random(len(seq)) < self.rate
        return np.where(draw & ~seq.special, BLM, UNMASKED).astype(np.int8)


def _mask_units(seq: EncodedSeq, units: List[Tuple[int, int]], budget: int, rng: np.random.Generator) -> np.ndarray:
    """Mask whole word-units (token ranges) in random order until `budget` pieces are masked."""
    kinds = np.zeros(len(seq), dtype=np.int8)
    masked = 0
    for index in rng.permutation(len(units)):
        if masked >= budget:
            break
        start, end = units[index]
        where = (seq.word_ids >= start) & (seq.word_ids < end)
        kinds[where] = BLM
        masked += int(where.sum())
    return kinds


def _budget(seq: EncodedSeq, rate: float, rng: np.random.Generator) -> int:
    return _stochastic_round(rate * int((~seq.special).sum()), rng)


def _n_words(seq: EncodedSeq) -> int:
    return int(seq.word_ids.max()) + 1 if (seq.word_ids >= 0).any() else 0


class WholeWordMasker(Masker):
    """Whole-word masking: random spaCy tokens, all of their pieces, about `rate` of the pieces."""

    def __init__(self, rate: float = 0.15, replacement: str = "bert"):
        super().__init__(replacement)
        self.rate = _check_rate("rate", rate)

    def sample(self, seq: EncodedSeq, rng: np.random.Generator) -> np.ndarray:
        present = np.unique(seq.word_ids[seq.word_ids >= 0]).tolist()
        return _mask_units(seq, [(w, w + 1) for w in present], _budget(seq, self.rate, rng), rng)


class SpanMasker(Masker):
    """SpanBERT-style masking: spans of whole words, lengths from a geometric law clipped to
    [min_length, max_length], until about `rate` of the pieces are masked."""

    def __init__(self, rate: float = 0.15, min_length: int = 1, max_length: int = 5, p: float = 0.2, replacement: str = "bert"):
        super().__init__(replacement)
        self.rate = _check_rate("rate", rate)
        self.p = _check_rate("p", p)
        if not 1 <= min_length <= max_length:
            raise ValueError(f"Span lengths need 1 <= min_length <= max_length, got {min_length}, {max_length}")
        self.min_length, self.max_length = min_length, max_length

    def sample(self, seq: EncodedSeq, rng: np.random.Generator) -> np.ndarray:
        kinds = np.zeros(len(seq), dtype=np.int8)
        n_words, budget = _n_words(seq), _budget(seq, self.rate, rng)
        masked, tries = 0, 0
        while masked < budget and n_words and tries < 10 * n_words:
            tries += 1
            length = int(np.clip(rng.geometric(self.p) if self.p > 0 else self.max_length, self.min_length, self.max_length))
            start = int(rng.integers(0, n_words))
            where = (seq.word_ids >= start) & (seq.word_ids < start + length) & (kinds == UNMASKED)
            kinds[where] = BLM
            masked += int(where.sum())
        return kinds


class PMIMasker(Masker):
    """PMI masking (Levine et al., 2021): word n-grams with high PMI are masked as one unit.

    `initialize` scores every n-gram (2..max_n words, seen at least `min_count` times) by
    Levine et al.'s PMI_n: the smallest log p(w1..wn) / prod_s p(s) over every segmentation of
    the n-gram into two or more contiguous parts s (p of a k-gram: its share of the k-grams),
    and keeps the `top_k` best. `sample` segments each sentence greedily into those n-grams (longest first)
    and single words, then masks random units until about `rate` of the pieces are masked.
    """

    def __init__(self, rate: float = 0.15, max_n: int = 3, min_count: int = 5, top_k: int = 10000, replacement: str = "bert"):
        super().__init__(replacement)
        self.rate = _check_rate("rate", rate)
        if max_n < 2:
            raise ValueError(f"max_n must be at least 2, got {max_n}")
        self.max_n, self.min_count, self.top_k = max_n, min_count, top_k
        self.ngrams: Dict[Tuple[str, ...], float] = {}

    def initialize(self, seqs: Sequence[EncodedSeq]) -> None:
        counts: List[Counter] = [Counter() for _ in range(self.max_n + 1)]
        for seq in seqs:
            words = seq.words
            for n in range(1, self.max_n + 1):
                counts[n].update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        totals = [max(1, sum(c.values())) for c in counts]

        def logp(gram: Tuple[str, ...]) -> float:
            return math.log(counts[len(gram)][gram] / totals[len(gram)])

        def best_split(gram: Tuple[str, ...]) -> float:
            """max over segmentations into 1+ parts of sum(log p(part)), by recursion on the first part."""
            return max([logp(gram)] + [logp(gram[:k]) + best_split(gram[k:]) for k in range(1, len(gram))])

        scored = {}
        for n in range(2, self.max_n + 1):
            for gram, count in counts[n].items():
                if count >= self.min_count:
                    # min over 2+ part segmentations of log p(gram) - sum log p(part)
                    scored[gram] = logp(gram) - max(logp(gram[:k]) + best_split(gram[k:]) for k in range(1, n))
        best = sorted(scored.items(), key=lambda kv: -kv[1])[: self.top_k]
        self.ngrams = {g: s for g, s in best if s > 0}
        if not self.ngrams:
            warnings.warn("PMI masking found no n-gram with positive PMI; it falls back to whole-word masking")

    def segment(self, seq: EncodedSeq) -> List[Tuple[int, int]]:
        """Greedy longest-first segmentation of the sentence into PMI n-grams and words."""
        units, i, words = [], 0, seq.words
        while i < len(words):
            for n in range(self.max_n, 0, -1):
                if n == 1 or tuple(words[i : i + n]) in self.ngrams:
                    units.append((i, i + n))
                    i += n
                    break
        return units

    def sample(self, seq: EncodedSeq, rng: np.random.Generator) -> np.ndarray:
        return _mask_units(seq, self.segment(seq), _budget(seq, self.rate, rng), rng)


@maskers("spacy_msnr.mask_specific.v1")
def make_mask_specific(elm_rate: float = 0.5, blm_rate: float = 0.15, replacement: str = "mask") -> Masker:
    """MSLM: whole DS-terms (fraction `elm_rate`, stochastic rounding) + other pieces w.p. `blm_rate`."""
    return MaskSpecificMasker(elm_rate, blm_rate, replacement)


@maskers("spacy_msnr.uniform.v1")
def make_uniform(rate: float = 0.15, replacement: str = "bert") -> Masker:
    """BERT's uniform random wordpiece masking."""
    return UniformMasker(rate, replacement)


@maskers("spacy_msnr.whole_word.v1")
def make_whole_word(rate: float = 0.15, replacement: str = "bert") -> Masker:
    """Whole-word masking over spaCy tokens."""
    return WholeWordMasker(rate, replacement)


@maskers("spacy_msnr.span.v1")
def make_span(rate: float = 0.15, min_length: int = 1, max_length: int = 5, p: float = 0.2, replacement: str = "bert") -> Masker:
    """Span masking with geometric span lengths in [min_length, max_length] words."""
    return SpanMasker(rate, min_length, max_length, p, replacement)


@maskers("spacy_msnr.pmi_ngram.v1")
def make_pmi(rate: float = 0.15, max_n: int = 3, min_count: int = 5, top_k: int = 10000, replacement: str = "bert") -> Masker:
    """PMI n-gram masking with n-grams scored on the training corpus."""
    return PMIMasker(rate, max_n, min_count, top_k, replacement)


class Replacer:
    """Applies a replacement rule, knowing the tokenizer's mask token and its ordinary pieces."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        check_tokenizer(tokenizer)
        self.mask_id = int(tokenizer.mask_token_id)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        special = set(tokenizer.all_special_ids)
        self.ordinary = np.array([i for i in range(len(tokenizer)) if i not in special], dtype=np.int64)

    def __call__(self, ids: np.ndarray, kinds: np.ndarray, replacement: str, rng: np.random.Generator) -> np.ndarray:
        out = ids.copy()
        where = np.flatnonzero(kinds != UNMASKED)
        if replacement == "mask":
            out[where] = self.mask_id
            return out
        roll = rng.random(len(where))
        out[where[roll < 0.8]] = self.mask_id
        rand = where[(roll >= 0.8) & (roll < 0.9)]
        out[rand] = rng.choice(self.ordinary, size=len(rand))
        return out


def mask_batch(
    seqs: Sequence[EncodedSeq], masker: Masker, replacer: Replacer, rng: np.random.Generator
) -> MaskedBatch:
    """Draw masks for `seqs`, apply the replacement rule and pad into a MaskedBatch."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), replacer.pad_id, dtype=np.int64)
    attention = np.zeros((len(seqs), width), dtype=np.int64)
    kinds = np.zeros((len(seqs), width), dtype=np.int8)
    terms = np.zeros((len(seqs), width), dtype=bool)
    gold = np.zeros((len(seqs), width), dtype=np.int64)
    tags = np.full((len(seqs), width), IGNORE_INDEX, dtype=np.int64) if seqs[0].tags is not None else None
    for row, seq in enumerate(seqs):
        n = len(seq)
        seq_kinds = masker.sample(seq, rng)
        kinds[row, :n] = seq_kinds
        ids[row, :n] = replacer(seq.input_ids, seq_kinds, masker.replacement, rng)
        gold[row, :n] = seq.input_ids
        attention[row, :n] = 1
        terms[row, :n] = seq.term_ids >= 0
        if tags is not None and seq.tags is not None:
            tags[row, :n] = seq.tags
    positions = np.flatnonzero(kinds.reshape(-1) != UNMASKED)
    return MaskedBatch(
        input_ids=torch.from_numpy(ids),
        attention_mask=torch.from_numpy(attention),
        positions=torch.from_numpy(positions),
        labels=torch.from_numpy(gold.reshape(-1)[positions]),
        kinds=torch.from_numpy(kinds.reshape(-1)[positions].astype(np.int64)),
        is_term=torch.from_numpy(terms.reshape(-1)[positions]),
        tag_labels=torch.from_numpy(tags) if tags is not None else None,
    )
