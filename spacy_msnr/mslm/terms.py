"""Sources of domain-specific terms (DS-terms): gold entities, a lexicon, frequency contrast.

A term source is a registered `@msnr_terms` function that returns a `TermSource`: a callable
mapping a Doc to the (start, end) token spans of its DS-terms.
"""
import math
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, List, Sequence, Tuple, Union

import srsly
from spacy.tokens import Doc

from ..registry import terms

Span = Tuple[int, int]
WORD_RE = re.compile(r"[^\W\d_][\w\-]*[^\W_]|[^\W\d_]", re.UNICODE)


class TermSource:
    """Finds DS-term token spans in a Doc. `from_gold` marks sources that read `doc.ents`."""

    from_gold = False

    def __call__(self, doc: Doc) -> List[Span]:
        raise NotImplementedError


class GoldTerms(TermSource):
    """The gold entity spans of each Doc (the paper's DS-terms)."""

    from_gold = True

    def __call__(self, doc: Doc) -> List[Span]:
        return [(ent.start, ent.end) for ent in doc.ents]


class LexiconTerms(TermSource):
    """Case-insensitive matches of lexicon terms in the Doc's text, snapped to whole tokens."""

    def __init__(self, entries: Iterable[str]):
        cleaned = sorted({e.strip() for e in entries if e.strip()}, key=lambda e: (-len(e), e.lower()))
        if not cleaned:
            raise ValueError("The DS-term lexicon is empty; give at least one term (one per line)")
        self.entries = cleaned
        alternation = "|".join(re.escape(e) for e in cleaned)
        self.pattern = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)

    def __call__(self, doc: Doc) -> List[Span]:
        spans = []
        for match in self.pattern.finditer(doc.text):
            span = doc.char_span(match.start(), match.end(), alignment_mode="expand")
            if span is not None and len(span):
                spans.append((span.start, span.end))
        return spans


def read_lexicon(path: Union[str, Path]) -> List[str]:
    """Terms from a text file, one a line (blank lines and lines starting with # skipped)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"DS-term lexicon not found: {path}")
    lines = path.read_text(encoding="utf8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def iter_corpus_words(path: Union[str, Path]) -> Iterator[str]:
    """Lower-cased words of a .jsonl ({"text": ...}), IOB .tsv (first column) or plain-text file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Corpus not found: {path}")
    if path.suffix == ".jsonl":
        texts: Iterable[str] = (record["text"] for record in srsly.read_jsonl(path))
    elif path.suffix in (".tsv", ".iob", ".conll"):
        texts = (line.split("\t", 1)[0] for line in path.open(encoding="utf8"))
    else:
        texts = path.open(encoding="utf8")
    for text in texts:
        yield from (w.lower() for w in WORD_RE.findall(text))


def contrast_scores(domain: Counter, background: Counter, smoothing: float = 1.0) -> List[Tuple[str, float]]:
    """Smoothed log-ratio of each domain word's relative frequency to its background one, best first."""
    vocab = len(set(domain) | set(background))
    n_dom, n_bg = sum(domain.values()), sum(background.values())
    scores = [
        (word, math.log((c + smoothing) / (n_dom + smoothing * vocab)) - math.log((background[word] + smoothing) / (n_bg + smoothing * vocab)))
        for word, c in domain.items()
    ]
    return sorted(scores, key=lambda ws: (-ws[1], ws[0]))


def propose_terms(domain: Union[str, Path], background: Union[str, Path], top_k: int = 500, min_count: int = 5, min_length: int = 3) -> List[str]:
    """The `top_k` words most over-represented in `domain` text relative to `background` text."""
    dom = Counter(iter_corpus_words(domain))
    if not dom:
        raise ValueError(f"No words found in the domain corpus {domain}")
    bg = Counter(iter_corpus_words(background))
    if not bg:
        raise ValueError(f"No words found in the background corpus {background}")
    kept = [(w, s) for w, s in contrast_scores(dom, bg) if dom[w] >= min_count and len(w) >= min_length and s > 0]
    return [w for w, _ in kept[:top_k]]


@terms("spacy_msnr.gold_terms.v1")
def make_gold_terms() -> TermSource:
    """DS-terms are the gold entity spans (`doc.ents`) of the training documents."""
    return GoldTerms()


@terms("spacy_msnr.lexicon_terms.v1")
def make_lexicon_terms(path: Path) -> TermSource:
    """DS-terms are case-insensitive matches of the terms listed in `path` (one per line)."""
    return LexiconTerms(read_lexicon(path))


@terms("spacy_msnr.frequency_contrast_terms.v1")
def make_frequency_contrast_terms(domain: Path, background: Path, top_k: int = 500, min_count: int = 5) -> TermSource:
    """DS-terms are the `top_k` words most over-represented in `domain` versus `background` text."""
    return LexiconTerms(propose_terms(domain, background, top_k=top_k, min_count=min_count))


def gold_entity_strings(path: Union[str, Path], min_length: int = 3) -> List[str]:
    """The distinct gold entity texts of a .spacy DocBin or IOB file (at least `min_length`
    characters); none for a corpus without entities (a .jsonl text file)."""
    from ..corpus.texts import read_docs

    return sorted({ent.text.strip() for doc in read_docs(path) for ent in doc.ents if len(ent.text.strip()) >= min_length})


@terms("spacy_msnr.corpus_lexicon_terms.v1")
def make_corpus_lexicon_terms(corpus: Path, min_length: int = 3) -> TermSource:
    """DS-terms are each doc's gold spans plus case-insensitive matches of every gold entity text
    of `corpus` (the training split): unlabeled text (PubMed abstracts) gets DS-terms too. A
    corpus without entities leaves the gold spans alone (the MSLM loop warns there are none)."""
    entries = gold_entity_strings(corpus, min_length)
    return CombinedTerms([GoldTerms(), LexiconTerms(entries)]) if entries else GoldTerms()


@terms("spacy_msnr.combined_terms.v1")
def make_combined_terms(sources: Sequence[TermSource]) -> TermSource:
    """The union of several sources' spans (overlaps keep the longer span)."""
    return CombinedTerms(list(sources))


class CombinedTerms(TermSource):
    """Union of term sources; overlapping spans resolve to the longest (then earliest)."""

    def __init__(self, sources: List[TermSource]):
        if not sources:
            raise ValueError("combined_terms needs at least one source")
        self.sources = sources
        self.from_gold = any(s.from_gold for s in sources)

    def __call__(self, doc: Doc) -> List[Span]:
        spans = sorted({s for source in self.sources for s in source(doc)}, key=lambda s: (-(s[1] - s[0]), s[0]))
        taken: List[Span] = []
        for start, end in spans:
            if all(end <= a or start >= b for a, b in taken):
                taken.append((start, end))
        return sorted(taken)


__all__ = ["TermSource", "GoldTerms", "LexiconTerms", "CombinedTerms", "read_lexicon", "propose_terms", "contrast_scores",
           "gold_entity_strings"]
