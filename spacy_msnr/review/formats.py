"""The review queue out to Label Studio or Prodigy, the reviewed documents back as gold Docs.

Export (one task a document, the pipeline's entities as pre-annotations):

- Label Studio JSON, a list of tasks: `{"id": <int>, "data": {"text", "doc_id"},
  "predictions": [{"model_version", "score": <the document's confidence>, "result": [{"id",
  "from_name", "to_name", "type": "labels", "value": {"start", "end", "text", "labels": [label]},
  "score"?, "meta"?}]}], "meta": {"doc_id", "rank", "auto_accepted": [result ids]}}`. A result
  whose score is at or above the threshold carries `"meta": {"text": ["auto-accepted ..."]}`, the
  region note Label Studio shows; `labelling_config` gives the matching project XML.
- Prodigy JSONL, one task a line: `{"text", "spans": [{"start", "end", "label"}], "meta":
  {"doc_id", "task_id", "rank", "scores": [...], "auto_accepted": [bool, ...]}}` (lists in span order).

Import: Label Studio's JSON export (each task's latest annotation that was not cancelled) or
Prodigy's JSONL (`answer: "accept"` only) into a DocBin of Docs with gold `doc.ents` and
`doc.user_data["review"] = {"key", "task_id", "doc_id", "source", "format"}`. A task goes in
exactly once: its key (`doc:<doc id>` when the task carries one, else `task:<id>`, else
`text:<sha1 of the text>`) is looked up in the DocBin already at the output, and the DocBin is
replaced atomically, so an interrupted import leaves the old one and a repeated import adds nothing.
"""
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union
from xml.sax.saxutils import quoteattr

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..util import atomic_write_bytes
from .select import auto_accepted, confidence

Record = Mapping[str, Any]
FORMATS = ("label-studio", "prodigy")
USER_DATA = "review"


class ReviewFormatError(ValueError):
    """Malformed review data; names the file and the line or task of the problem."""

    def __init__(self, path: Union[str, Path], where: Optional[str], problem: str):
        self.path, self.where, self.problem = str(path), where, problem
        super().__init__(f"{path}: {where}: {problem}" if where else f"{path}: {problem}")


# ---- export ------------------------------------------------------------------------------------


def labelling_config(labels: Iterable[str], from_name: str = "label", to_name: str = "text") -> str:
    """A Label Studio labelling config for named-entity review of `labels` (sorted)."""
    rows = "".join(f"    <Label value={quoteattr(label)}/>\n" for label in sorted(set(labels)))
    return (
        f"<View>\n  <Labels name={quoteattr(from_name)} toName={quoteattr(to_name)}>\n{rows}  </Labels>\n"
        f"  <Text name={quoteattr(to_name)} value=\"$text\"/>\n</View>\n"
    )


def write_labelling_config(path: Union[str, Path], labels: Iterable[str], from_name: str = "label", to_name: str = "text") -> None:
    """Write `labelling_config(labels, ...)` to `path` (atomically)."""
    atomic_write_bytes(path, labelling_config(labels, from_name, to_name).encode("utf8"))


def label_studio_task(
    record: Record, task_id: int, *, rank: int = 0, threshold: float = 0.9, model_version: str = "spacy-msnr",
    from_name: str = "label", to_name: str = "text", empty: float = 0.5, missing: float = 0.5,
) -> Dict[str, Any]:
    """One record as a Label Studio task with the record's entities as its prediction."""
    result, accepted = [], []
    for i, ent in enumerate(record["entities"]):
        region: Dict[str, Any] = {
            "id": f"e{i}", "from_name": from_name, "to_name": to_name, "type": "labels",
            "value": {"start": ent["start_char"], "end": ent["end_char"], "text": ent["text"], "labels": [ent["label"]]},
        }
        if ent.get("score") is not None:
            region["score"] = float(ent["score"])
        if auto_accepted(ent, threshold):
            region["meta"] = {"text": [f"auto-accepted (score {float(ent['score']):.3f} >= {threshold})"]}
            accepted.append(region["id"])
        result.append(region)
    score = confidence(record["entities"], empty=empty, missing=missing)
    return {
        "id": task_id,
        "data": {"text": record["text"], "doc_id": str(record["id"])},
        "predictions": [{"model_version": model_version, "score": score, "result": result}],
        "meta": {"doc_id": str(record["id"]), "rank": rank, "auto_accepted": accepted},
    }


def prodigy_task(record: Record, task_id: int, *, rank: int = 0, threshold: float = 0.9) -> Dict[str, Any]:
    """One record as a Prodigy task: text, its entities as spans, scores and flags in meta."""
    ents = record["entities"]
    return {
        "text": record["text"],
        "spans": [{"start": e["start_char"], "end": e["end_char"], "label": e["label"]} for e in ents],
        "meta": {
            "doc_id": str(record["id"]), "task_id": task_id, "rank": rank,
            "scores": [e.get("score") for e in ents], "auto_accepted": [auto_accepted(e, threshold) for e in ents],
        },
    }


def write_tasks(records: Iterable[Record], path: Union[str, Path], format: str, *, first_id: int = 1, threshold: float = 0.9, **options: Any) -> int:
    """Write `records` (in review order) as `format` tasks numbered from `first_id`, atomically;
    the number of tasks. `options` go to `label_studio_task` (model_version, from_name, ...)."""
    check_format(format)
    if format == "label-studio":
        tasks = [label_studio_task(r, first_id + i, rank=i + 1, threshold=threshold, **options) for i, r in enumerate(records)]
        data = json.dumps(tasks, ensure_ascii=False, indent=1)
    else:
        tasks = [prodigy_task(r, first_id + i, rank=i + 1, threshold=threshold) for i, r in enumerate(records)]
        data = "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tasks)
    atomic_write_bytes(path, data.encode("utf8"))
    return len(tasks)


def check_format(format: str) -> None:
    """ValueError unless `format` is one of `FORMATS`."""
    if format not in FORMATS:
        raise ValueError(f"unknown review format {format!r}; expected one of {', '.join(FORMATS)}")


# ---- import ------------------------------------------------------------------------------------


@dataclass
class Reviewed:
    """One reviewed task: the text, its gold spans (start, end, label) and where it came from."""

    text: str
    spans: List[Tuple[int, int, str]]
    key: str
    where: str
    task_id: Optional[Union[int, str]] = None
    doc_id: Optional[str] = None


@dataclass
class Skipped:
    """Tasks read but not imported, by reason, with the ones to report."""

    counts: Dict[str, int] = field(default_factory=dict)
    tasks: List[str] = field(default_factory=list)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.tasks.append(f"{where} ({reason})")


def _key(doc_id: Any, task_id: Any, text: str) -> str:
    if doc_id not in (None, ""):
        return f"doc:{doc_id}"
    if task_id not in (None, ""):
        return f"task:{task_id}"
    return "text:" + hashlib.sha1(text.encode("utf8")).hexdigest()


def _spans(path: Path, where: str, text: str, raw: Iterable[Tuple[Any, Any, Any, Any]], labels: Optional[Set[str]]) -> List[Tuple[int, int, str]]:
    """Checked (start, end, label) spans from (start, end, label, text or None) tuples."""
    spans = []
    for start, end, label, shown in raw:
        if not (isinstance(start, int) and isinstance(end, int)) or isinstance(start, bool) or isinstance(end, bool):
            raise ReviewFormatError(path, where, f"span offsets must be integers, got start={start!r} end={end!r}")
        if not 0 <= start < end <= len(text):
            raise ReviewFormatError(path, where, f"span [{start}, {end}) is outside the text (length {len(text)}) or empty")
        if not isinstance(label, str) or not label:
            raise ReviewFormatError(path, where, f"span [{start}, {end}) has no label")
        if labels is not None and label not in labels:
            raise ReviewFormatError(path, where, f"span [{start}, {end}) has label {label!r}, not one of {sorted(labels)}")
        if shown is not None and shown != text[start:end]:
            raise ReviewFormatError(path, where, f"span [{start}, {end}) says {shown!r} but the text there is {text[start:end]!r}")
        spans.append((start, end, label))
    spans.sort()
    for (s1, e1, l1), (s2, e2, l2) in zip(spans, spans[1:]):
        if s2 < e1:
            raise ReviewFormatError(path, where, f"spans [{s1}, {e1}) {l1} and [{s2}, {e2}) {l2} overlap")
    return spans


def read_label_studio(path: Union[str, Path], labels: Optional[Iterable[str]] = None) -> Tuple[List[Reviewed], Skipped]:
    """The tasks of a Label Studio JSON export with their latest annotation that was not
    cancelled (by `updated_at`/`created_at`, else list order); tasks without one are skipped."""
    path = Path(path)
    allowed = set(labels) if labels is not None else None
    try:
        tasks = json.loads(path.read_text(encoding="utf8"))
    except json.JSONDecodeError as err:
        raise ReviewFormatError(path, f"line {err.lineno}", f"malformed JSON: {err.msg} at column {err.colno}") from None
    except UnicodeDecodeError as err:
        raise ReviewFormatError(path, None, f"bytes that are not UTF-8 ({err.reason} at byte {err.start})") from None
    if not isinstance(tasks, list):
        raise ReviewFormatError(path, None, f"expected a JSON list of tasks (Label Studio's JSON export), got {type(tasks).__name__}")
    out, skipped = [], Skipped()
    for number, task in enumerate(tasks, 1):
        if not isinstance(task, dict):
            raise ReviewFormatError(path, f"task #{number}", f"expected a JSON object, got {type(task).__name__}")
        task_id = task.get("id")
        where = f"task {task_id}" if task_id is not None else f"task #{number}"
        data = task.get("data")
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str):
            raise ReviewFormatError(path, where, "no data.text string")
        annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not annotations:
            skipped.add("cancelled" if task.get("annotations") else "no annotation", where)
            continue
        latest = max(enumerate(annotations), key=lambda ia: (str(ia[1].get("updated_at") or ia[1].get("created_at") or ""), ia[0]))[1]
        raw = []
        for region in latest.get("result") or []:
            if not isinstance(region, dict) or region.get("type") != "labels":
                continue
            value = region.get("value")
            names = value.get("labels") if isinstance(value, dict) else None
            if not isinstance(names, list) or len(names) != 1:
                raise ReviewFormatError(path, where, f"region {region.get('id')!r}: expected value.labels with one label, got {names!r}")
            raw.append((value.get("start"), value.get("end"), names[0], value.get("text")))
        doc_id = data.get("doc_id")
        out.append(Reviewed(text, _spans(path, where, text, raw, allowed), _key(doc_id, task_id, text), where, task_id, None if doc_id is None else str(doc_id)))
    return out, skipped


def json_lines(path: Path) -> Iterator[Tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSONL file; ReviewFormatError naming the
    line for bytes that are not UTF-8 or malformed JSON."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw.decode("utf8"))
            except UnicodeDecodeError as err:
                raise ReviewFormatError(path, f"line {number}", f"bytes that are not UTF-8 ({err.reason} at column {err.start + 1})") from None
            except json.JSONDecodeError as err:
                raise ReviewFormatError(path, f"line {number}", f"malformed JSON: {err.msg} at column {err.colno}") from None


def read_prodigy(path: Union[str, Path], labels: Optional[Iterable[str]] = None) -> Tuple[List[Reviewed], Skipped]:
    """The accepted tasks of a Prodigy JSONL export (`db-out`); rejected and ignored ones are counted."""
    path = Path(path)
    allowed = set(labels) if labels is not None else None
    out, skipped = [], Skipped()
    for number, task in json_lines(path):
        where = f"line {number}"
        if not isinstance(task, dict) or not isinstance(task.get("text"), str):
            raise ReviewFormatError(path, where, "expected a JSON object with a 'text' string")
        answer = task.get("answer")
        if answer not in ("accept", "reject", "ignore"):
            raise ReviewFormatError(path, where, f"answer must be accept, reject or ignore, got {answer!r}")
        if answer != "accept":
            skipped.add(answer, where)
            continue
        text, meta = task["text"], task.get("meta") if isinstance(task.get("meta"), dict) else {}
        spans = task.get("spans") or []
        if not isinstance(spans, list) or not all(isinstance(s, dict) for s in spans):
            raise ReviewFormatError(path, where, "'spans' must be a list of objects")
        raw = [(s.get("start"), s.get("end"), s.get("label"), s.get("text")) for s in spans]
        doc_id, task_id = meta.get("doc_id"), meta.get("task_id")
        out.append(Reviewed(text, _spans(path, where, text, raw, allowed), _key(doc_id, task_id, text), where, task_id, None if doc_id is None else str(doc_id)))
    return out, skipped


def to_doc(nlp: Language, reviewed: Reviewed, path: Union[str, Path], format: str) -> Doc:
    """A Doc of the reviewed text with its spans as gold `doc.ents` (all other tokens outside) and
    its provenance in `user_data`; a span that does not fall on token boundaries raises."""
    doc = nlp.make_doc(reviewed.text)
    ents = []
    for start, end, label in reviewed.spans:
        span = doc.char_span(start, end, label=label, alignment_mode="strict")
        if span is None:
            near = doc.char_span(start, end, alignment_mode="expand")
            hint = f"; the nearest tokens cover [{near.start_char}, {near.end_char}) {near.text!r}" if near is not None else ""
            raise ReviewFormatError(
                path, reviewed.where,
                f"span [{start}, {end}) {reviewed.text[start:end]!r} ({label}) does not start and end on token boundaries{hint}; "
                "fix the offsets in the review tool (nothing is expanded silently)",
            )
        ents.append(span)
    doc.ents = ents
    doc.user_data[USER_DATA] = {"key": reviewed.key, "task_id": reviewed.task_id, "doc_id": reviewed.doc_id, "source": str(path), "format": format}
    return doc


@dataclass
class ImportSummary:
    """What an import did: tasks read, Docs added, tasks already in the output, tasks skipped."""

    tasks: int
    imported: int
    present: int
    skipped: Skipped
    total: int


def import_review(
    export: Union[str, Path], output: Union[str, Path], format: str, *, labels: Optional[Sequence[str]] = None, nlp: Optional[Language] = None,
) -> ImportSummary:
    """Add the reviewed tasks of `export` that `output` (a DocBin, created if missing) does not
    hold yet, as gold Docs tokenized by `nlp` (default: a blank English pipeline). Nothing is
    written when nothing is new; otherwise the DocBin is replaced in one rename."""
    check_format(format)
    export, output = Path(export), Path(output)
    nlp = nlp or spacy.blank("en")
    reader = read_label_studio if format == "label-studio" else read_prodigy
    reviewed, skipped = reader(export, labels)
    docbin = DocBin(store_user_data=True)
    if output.exists():
        try:
            docbin.from_bytes(output.read_bytes())
        except ValueError as err:
            raise ReviewFormatError(output, None, f"not a DocBin ({err}); give another output path") from None
    keys = {(d.user_data.get(USER_DATA) or {}).get("key") for d in docbin.get_docs(nlp.vocab)}
    docs = []
    for item in reviewed:
        if item.key in keys:
            continue
        keys.add(item.key)
        docs.append(to_doc(nlp, item, export, format))
    for doc in docs:
        docbin.add(doc)
    if docs:
        atomic_write_bytes(output, docbin.to_bytes())
    return ImportSummary(tasks=len(reviewed) + sum(skipped.counts.values()), imported=len(docs), present=len(reviewed) - len(docs), skipped=skipped, total=len(docbin))

