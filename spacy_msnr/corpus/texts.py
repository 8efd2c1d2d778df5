"""Plain text for tokenizer training and pretraining, from DocBins, IOB files or JSONL."""
from pathlib import Path
from typing import Iterator, Union

import srsly
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from .iob import read_iob


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
