"""Run a pipeline over reader rows and turn each document into an output record.

`annotate_rows` is the one place where texts meet the pipeline; the local engine calls it over
the whole stream (with `n_process`), each Ray actor over its batches, so both give the same
records.
"""
import json
from itertools import count
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc

from .readers import Row
from .split import split_text

#: Output row keys: reader rows lose `text` and gain `length`, `entities` (a JSON list of
#: {start_char, end_char, label, text, score}) and `doc` (Doc bytes with --docbin, else b"").
OUT_KEYS = ("kind", "shard", "id", "file", "line", "message", "count", "length", "entities", "doc")


def entity_records(doc: Doc, offset: int = 0) -> List[Dict[str, Any]]:
    """`doc.ents` as dicts, shifted by `offset` characters; `score` from any span group that
    has `attrs["scores"]` (e.g. `doc.spans["fewshot_ner"]`), else None."""
    scores: Dict[Tuple[int, int, str], float] = {}
    for group in doc.spans.values():
        values = group.attrs.get("scores")
        if values is not None and len(values) == len(group):
            scores.update({(s.start_char, s.end_char, s.label_): float(v) for s, v in zip(group, values)})
    return [
        {"start_char": e.start_char + offset, "end_char": e.end_char + offset, "label": e.label_, "text": e.text, "score": scores.get((e.start_char, e.end_char, e.label_))}
        for e in doc.ents
    ]


def passthrough(row: Row) -> Row:
    """An "error" or "end" reader row in the output schema."""
    return {**{k: row[k] for k in OUT_KEYS[:7]}, "length": 0, "entities": "[]", "doc": b""}


def run_one(nlp: Language, text: str) -> Tuple[Optional[Doc], str]:
    """(doc, "") or (None, what failed) for one text, each component called directly so that a
    failure raises (`nlp(text)` would pass it to the error handler)."""
    try:
        doc = nlp.make_doc(text)
    except Exception as err:  # noqa: BLE001  (any failure becomes an error record)
        return None, f"tokenizer failed: {type(err).__name__}: {err}"
    for name, proc in nlp.pipeline:
        try:
            doc = proc(doc)
        except Exception as err:  # noqa: BLE001
            return None, f"pipeline component {name!r} failed: {type(err).__name__}: {err}"
    return doc, ""


def annotate_rows(
    nlp: Language, rows: Iterable[Row], *, batch_size: int = 64, n_process: int = 1, max_length: Optional[int] = None, keep_docs: bool = False
) -> Iterator[Row]:
    """Output rows in input order: each "doc" row annotated, other rows passed through.

    Texts longer than `max_length` (default and upper bound: `nlp.max_length`) go through the pipeline in
    pieces (`split_text`) and come back as one record with the pieces' entities shifted to the
    text's offsets; with `keep_docs` the pieces' Docs are joined into one Doc of the whole text.

    A component that raises does not stop the job: every text handed to `nlp.pipe` and not yet
    returned (the failed batch and any in flight) is run again alone (`run_one`), the stream then
    goes on, so only the documents that fail alone become "error" rows (with their id and the
    component's error); the rest of the batch is annotated. (An error handler cannot do this:
    spaCy's `ner` and `parser` take none.) An error while reading the input is raised.
    """
    limit = min(max_length or nlp.max_length, nlp.max_length)
    waiting: Dict[int, Tuple[List[Row], Row, int, int, str]] = {}
    held: List[Row] = []
    keys = count()
    source_failed: List[Exception] = []

    def pieces() -> Iterator[Tuple[str, int]]:
        try:
            for row in rows:
                if row["kind"] != "doc":
                    held.append(row)
                    continue
                parts = split_text(row["text"], limit)
                for i, (offset, piece) in enumerate(parts):
                    key = next(keys)
                    waiting[key] = (held[:] if i == 0 else [], row, offset, len(parts) - 1 - i, piece)
                    held.clear()
                    yield piece, key
        except Exception as err:
            source_failed.append(err)
            raise

    done: List[Tuple[int, Doc]] = []
    failure = ""

    def finish(key: int, doc: Optional[Doc], error: str) -> Iterator[Row]:
        nonlocal done, failure
        before, row, offset, left, _ = waiting.pop(key)
        for other in before:
            yield passthrough(other)
        failure = failure or error
        if doc is not None:
            done.append((offset, doc))
        if not left:
            yield _failed(row, failure) if failure else _record(row, done, keep_docs)
            done, failure = [], ""

    stream, expected, running = pieces(), 0, True
    while running:
        try:
            for doc, key in nlp.pipe(stream, as_tuples=True, batch_size=batch_size, n_process=n_process):
                for lost in range(expected, key):  # dropped by an error handler that skips
                    yield from finish(lost, *run_one(nlp, waiting[lost][4]))
                yield from finish(key, doc, "")
                expected = key + 1
            running = False
        except Exception:
            if source_failed:
                raise
        for lost in sorted(waiting):  # in flight when a component raised (or dropped at the end)
            expected = lost + 1
            yield from finish(lost, *run_one(nlp, waiting[lost][4]))
    for other in held:
        yield passthrough(other)


def _failed(row: Row, message: str) -> Row:
    """An "error" row for a document the pipeline failed on (its id, file and line kept)."""
    return {**passthrough(row), "kind": "error", "message": message}


def _record(row: Row, pieces: List[Tuple[int, Doc]], keep_docs: bool) -> Row:
    entities = [e for offset, doc in pieces for e in entity_records(doc, offset)]
    doc = b""
    if keep_docs:
        whole = pieces[0][1] if len(pieces) == 1 else Doc.from_docs([d for _, d in pieces], ensure_whitespace=False)
        doc = whole.to_bytes(exclude=["tensor", "user_data"])
    out = passthrough(row)
    out.update(length=len(row["text"]), entities=json.dumps(entities, ensure_ascii=False), doc=doc)
    return out
