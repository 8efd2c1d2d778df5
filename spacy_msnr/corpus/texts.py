"""The package's one reader of corpora: texts (tokenizer training, pretraining) and Docs (MSLM),
from DocBins, IOB files, JSONL or folders of .txt files."""
from pathlib import Path
from typing import Iterator, List, Optional, Union

import srsly
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from .iob import iob_to_docs, read_iob


def iter_texts(path: Union[str, Path]) -> Iterator[str]:
    """Yield the texts of a .spacy DocBin, a .jsonl file ({"text": ...} a line), a folder of
    .txt files, or an IOB file (its sentences, words joined by spaces)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Text source not found: {path}")
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise ValueError(f"{path}: folder has no .txt files")
        for file in files:
            yield file.read_text(encoding="utf8")
    elif path.suffix == ".spacy":
        for doc in DocBin().from_disk(path).get_docs(Vocab()):
            yield doc.text
    elif path.suffix == ".jsonl":
        for number, record in enumerate(srsly.read_jsonl(path), start=1):
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path}:{number}: expected a JSON object with a string 'text' field")
            yield record["text"]
    else:
        for sentence in read_iob(path):
            yield " ".join(sentence.words)


def read_docs(path: Union[str, Path], vocab: Optional[Vocab] = None) -> List[Doc]:
    """The non-empty Docs of a corpus: a .spacy DocBin or an IOB file with their gold entities, or
    the texts of a .jsonl file or .txt folder (`iter_texts`) tokenized by spaCy's English tokenizer."""
    import spacy

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Corpus not found: {path}")
    vocab = vocab if vocab is not None else Vocab()
    if path.suffix == ".spacy":
        docs = list(DocBin().from_disk(path).get_docs(vocab))
    elif path.is_dir() or path.suffix == ".jsonl":
        tokenizer = spacy.blank("en", vocab=vocab).tokenizer
        docs = [tokenizer(text) for text in iter_texts(path) if text.strip()]
    else:
        docs = iob_to_docs(path, vocab)
    docs = [d for d in docs if len(d)]
    if not docs:
        raise ValueError(f"The corpus {path} has no documents with text")
    return docs
