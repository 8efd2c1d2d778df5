"""The review queue of a corpus: records in, the documents to review out as tasks.

Records come from an `annotate` output folder (the finished shards' Parquet/JSONL records, named
by `_shards/*.json`; the texts, which records do not hold, are read again from each shard's source
for the chosen documents only) or from a JSONL file of records `{"id", "text", "entities"}`.
Selection reads ids and scores only, so a large corpus costs no more memory than its scores.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Union

from ..annotate.readers import FORMATS, Shard, plan_chunks, read_chunk
from .formats import ReviewFormatError, check_format, json_lines, write_labelling_config, write_tasks
from .select import auto_accepted, select

Record = Dict[str, Any]
MARKERS = "_shards"


def is_annotate_folder(path: Union[str, Path]) -> bool:
    """Whether `path` is an `annotate` output folder (it has the `_shards` markers)."""
    return (Path(path) / MARKERS).is_dir()


def _entities(path: Path, where: str, text: str, entities: Any) -> List[Record]:
    """Checked entity records (`text` filled in from the document when missing)."""
    if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
        raise ReviewFormatError(path, where, "'entities' must be a list of objects")
    out = []
    for e in entities:
        start, end, label = e.get("start_char"), e.get("end_char"), e.get("label")
        if not (isinstance(start, int) and isinstance(end, int) and isinstance(label, str)):
            raise ReviewFormatError(path, where, f"an entity needs integer start_char/end_char and a label, got {e!r}")
        if not 0 <= start < end <= len(text):
            raise ReviewFormatError(path, where, f"entity [{start}, {end}) is outside the text (length {len(text)}) or empty")
        if e.get("text") not in (None, text[start:end]):
            raise ReviewFormatError(path, where, f"entity [{start}, {end}) says {e['text']!r} but the text there is {text[start:end]!r}")
        out.append({"start_char": start, "end_char": end, "label": label, "text": text[start:end], "score": e.get("score")})
    return out


def _jsonl_records(path: Path) -> Iterator[Record]:
    """The records of a JSONL file `{"id", "text", "entities"}` (the id defaults to `name:line`)."""
    for number, record in json_lines(path):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ReviewFormatError(path, f"line {number}", "expected a JSON object with a 'text' string (a record: id, text, entities)")
        text = record["text"]
        doc_id = str(record["id"]) if record.get("id") is not None else f"{path.name}:{number}"
        yield {"id": doc_id, "text": text, "entities": _entities(path, f"line {number}", text, record.get("entities") or [])}


def _markers(folder: Path) -> List[Record]:
    """The markers of the folder's finished shards whose outputs all exist, by shard name."""
    markers = [json.loads(p.read_text(encoding="utf8")) for p in sorted((folder / MARKERS).glob("*.json"))]
    return [m for m in markers if all((folder / name).exists() for name in m["outputs"])]


def _shard_records(folder: Path, marker: Record) -> Iterator[Record]:
    """A finished shard's records `{"id", "length", "entities"}` (no text)."""
    name = next(n for n in marker["outputs"] if n.endswith((".parquet", ".jsonl")))
    path = folder / name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=["id", "length", "entities"]):
            yield from batch.to_pylist()
    else:
        yield from (record for _, record in json_lines(path))


def _texts(marker: Record, wanted: Set[str], text_key: str, id_key: str) -> Dict[str, str]:
    """The texts of the `wanted` documents of a shard, read again from its source."""
    source = Path(marker["source"])
    if source.is_dir():  # a group of .txt files: the id is the file's path under the folder
        return {doc_id: (source / doc_id).read_text(encoding="utf8") for doc_id in wanted}
    if not source.exists():
        raise FileNotFoundError(f"{source}: the source of shard {marker['shard']!r} is gone; the records hold no text, so it is needed to export them")
    shard = Shard(marker["shard"], FORMATS[source.suffix], str(source))
    texts = {}
    for chunk in plan_chunks(shard, text_field=text_key, id_field=id_key):
        texts.update({row["id"]: row["text"] for row in read_chunk(chunk) if row["kind"] == "doc" and row["id"] in wanted})
    return texts


def read_records(path: Union[str, Path], ids: Optional[Iterable[str]] = None, *, text_key: str = "text", id_key: str = "id") -> Iterator[Record]:
    """The records of an `annotate` folder or a JSONL file of records. Without `ids`, an annotate
    folder's records come without text (enough to select); with `ids`, only those records come,
    with their texts (`text_key`/`id_key`: the fields `annotate` read the source with)."""
    path = Path(path)
    wanted = None if ids is None else set(ids)
    if not is_annotate_folder(path):
        if path.is_dir():
            raise ValueError(f"{path}: neither an annotate output folder (no {MARKERS}/) nor a JSONL file of records")
        yield from (r for r in _jsonl_records(path) if wanted is None or r["id"] in wanted)
        return
    for marker in _markers(path):
        where = path / MARKERS / f"{marker['shard']}.json"
        records = [r for r in _shard_records(path, marker) if wanted is None or r["id"] in wanted]
        if wanted is None:
            yield from ({"id": r["id"], "entities": r["entities"]} for r in records)
            continue
        texts = _texts(marker, {r["id"] for r in records}, text_key, id_key) if records else {}
        for r in records:
            text = texts.get(r["id"])
            if text is None or len(text) != r["length"]:
                problem = "is not in it" if text is None else f"has {len(text)} characters there, {r['length']} when annotated"
                raise ReviewFormatError(where, None, f"document {r['id']!r} of source {marker['source']} {problem}; was the source changed, or annotated with another --text-key/--id-key?")
            yield {"id": r["id"], "text": text, "entities": _entities(where, f"document {r['id']!r}", text, r["entities"])}


@dataclass
class ExportSummary:
    """What an export wrote: tasks, documents ranked, entities marked auto-accepted, the config."""

    tasks: int
    documents: int
    auto_accepted: int
    config: Optional[Path]


def export_queue(
    input: Union[str, Path], output: Union[str, Path], *, format: str = "label-studio", strategy: str = "least_confident",
    limit: Optional[int] = None, threshold: float = 0.9, seed: int = 0, empty: float = 0.5, missing: float = 0.5,
    labels: Sequence[str] = (), model_version: Optional[str] = None, text_key: str = "text", id_key: str = "id",
) -> ExportSummary:
    """Rank the documents of `input` by `strategy` and write the first `limit` as `format` tasks
    to `output`; for Label Studio also `<output stem>.labelling.xml`, the project's labelling config
    (the exported labels and `labels`). `model_version` defaults to the annotate run's pipeline."""
    check_format(format)
    input, output = Path(input), Path(output)
    documents = 0

    def scored() -> Iterator[Record]:  # ids and entities only: selection keeps no text
        nonlocal documents
        for record in read_records(input, text_key=text_key, id_key=id_key):
            documents += 1
            yield {"id": record["id"], "entities": record["entities"]}

    order = select(scored(), strategy, limit=limit, empty=empty, missing=missing, seed=seed)
    chosen = {r["id"]: r for r in read_records(input, order, text_key=text_key, id_key=id_key)}
    records = [chosen[doc_id] for doc_id in order]
    if model_version is None:
        manifest = input / "manifest.json"
        model_version = json.loads(manifest.read_text(encoding="utf8")).get("pipeline", "spacy-msnr") if manifest.exists() else "spacy-msnr"
    options = {"model_version": model_version, "empty": empty, "missing": missing} if format == "label-studio" else {}
    written = write_tasks(records, output, format, threshold=threshold, **options)
    config = None
    if format == "label-studio":
        config = output.with_name(output.stem + ".labelling.xml")
        write_labelling_config(config, {e["label"] for r in records for e in r["entities"]} | set(labels))
    accepted = sum(auto_accepted(e, threshold) for r in records for e in r["entities"])
    return ExportSummary(tasks=written, documents=documents, auto_accepted=accepted, config=config)
