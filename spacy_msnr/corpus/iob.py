"""Read token<TAB>IOB2-tag files (BLURB, CrossNER, CoNLL) into spaCy Docs, with file:line errors."""
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

from spacy.tokens import Doc
from spacy.training import iob_to_biluo
from spacy.training.iob_utils import biluo_tags_to_spans
from spacy.vocab import Vocab

TAG_RE = re.compile(r"^(O|[BI]-\S+)$")
DOCSTART = "-DOCSTART-"


class IOBFormatError(ValueError):
    """Malformed IOB input; names the file and the 1-based line of the problem."""

    def __init__(self, path: Union[str, Path], line: Optional[int], problem: str):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass
class IOBSentence:
    """One sentence of an IOB file: words, their tags and the line each came from."""

    words: List[str] = field(default_factory=list)
    tags: List[str] = field(default_factory=list)
    lines: List[int] = field(default_factory=list)


def read_iob(path: Union[str, Path], labels: Optional[Iterable[str]] = None) -> List[IOBSentence]:
    """Parse and validate an IOB2 file: one `token<TAB>tag` a line, blank lines between sentences.

    Columns between the token and the tag (CoNLL-2003 POS/chunk columns) are ignored, the tag
    is the last tab-separated column. Raises IOBFormatError for bytes that are not UTF-8, lines
    without a tab, tags outside the IOB2 scheme, an I- tag that does not continue an entity of
    its type, labels not in `labels` (when given) and files with no token.
    """
    path = Path(path)
    allowed = set(labels) if labels is not None else None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise IOBFormatError(path, line, f"bytes that are not UTF-8 ({err.reason} at byte {err.start}); re-encode the file as UTF-8") from None
    sentences: List[IOBSentence] = []
    current = IOBSentence()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith(DOCSTART):
            if current.words:
                sentences.append(current)
                current = IOBSentence()
            continue
        if "\t" not in line:
            raise IOBFormatError(path, number, f"no tab between token and tag in {line!r}; expected 'token<TAB>tag'")
        columns = line.split("\t")
        word, tag = columns[0], columns[-1].strip()
        if not word.strip():
            raise IOBFormatError(path, number, "empty token before the tab")
        if not TAG_RE.match(tag):
            raise IOBFormatError(path, number, f"tag {tag!r} is not IOB2 (expected O, B-<label> or I-<label>)")
        if tag.startswith("I-"):
            previous = current.tags[-1] if current.tags else "O"
            if previous == "O" or previous[2:] != tag[2:]:
                raise IOBFormatError(path, number, f"{tag} follows {previous} (an I- tag must continue a B- or I- of the same label)")
        if allowed is not None and tag != "O" and tag[2:] not in allowed:
            raise IOBFormatError(path, number, f"unknown label {tag[2:]!r}; expected one of {sorted(allowed)}")
        current.words.append(word)
        current.tags.append(tag)
        current.lines.append(number)
    if current.words:
        sentences.append(current)
    if not sentences:
        raise IOBFormatError(path, None, "the file has no tokens (empty file or only blank lines)")
    return sentences


def sentences_to_doc(vocab: Vocab, sentences: Sequence[IOBSentence]) -> Doc:
    """One Doc from consecutive sentences, with gold entities and sentence starts."""
    words = [w for s in sentences for w in s.words]
    tags = [t for s in sentences for t in s.tags]
    starts = [i == 0 for s in sentences for i in range(len(s.words))]
    doc = Doc(vocab, words=words, sent_starts=starts)
    doc.ents = biluo_tags_to_spans(doc, iob_to_biluo(tags))
    return doc


def iob_to_docs(
    path: Union[str, Path], vocab: Vocab, n_sents: int = 1, labels: Optional[Iterable[str]] = None
) -> List[Doc]:
    """Read an IOB2 file into Docs of `n_sents` sentences each, with gold `doc.ents`."""
    if n_sents < 1:
        raise ValueError(f"n_sents must be at least 1, got {n_sents}")
    sentences = read_iob(path, labels=labels)
    return [sentences_to_doc(vocab, sentences[i : i + n_sents]) for i in range(0, len(sentences), n_sents)]


def doc_to_iob(doc: Doc) -> List[str]:
    """The IOB2 tags of a Doc's entities (the inverse of sentences_to_doc)."""
    return [f"{t.ent_iob_}-{t.ent_type_}" if t.ent_iob_ in ("B", "I") else "O" for t in doc]


def iob_split(data: Union[str, Path], domain: str, split: str, vocab: Vocab, cache: Union[str, Path]) -> List[Doc]:
    """Split `split` (e.g. train, dev, test) of the IOB corpus in folder `data`/`domain`
    (`split`.txt, one sentence a Doc, as CrossNER is laid out), converted once into the DocBin
    `cache`/`domain`-`split`.spacy and read from there afterwards."""
    from spacy.tokens import DocBin

    from ..util import atomic_write_bytes
    from .episodes import load_docs

    path = Path(cache) / f"{domain}-{split}.spacy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, DocBin(docs=iob_to_docs(Path(data) / domain / f"{split}.txt", vocab)).to_bytes())
    return load_docs(path, vocab)
