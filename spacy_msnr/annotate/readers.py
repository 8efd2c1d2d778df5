"""Input shards (JSONL, Parquet, folders of .txt files), their chunks, and a streaming reader
that turns one chunk into rows with file:line problems instead of exceptions.

Both engines read through `read_chunk`, so they see the same rows. The Ray engine does not use
`ray.data.read_json`: it stops the whole job at the first malformed line and cannot say which
line it was. Instead the driver plans chunks (a byte range of a JSONL file with the number of its
first line, a Parquet row group, or a group of .txt files) by one streaming pass over each file,
and Ray hands the chunks to its actors, which read them with `read_chunk`; reading stays
parallel and streaming, and every problem keeps its file and line.
"""
import hashlib
import json
from dataclasses import asdict, dataclass, field
from glob import glob
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence

#: Reader row: kind is "doc" (id, text, line), "error" (file, line, message) or "end" (the
#: chunk's last row; `count` = its doc and error rows). Every row has every key, so Ray infers
#: one schema.
Row = Dict[str, Any]
FORMATS = {".jsonl": "jsonl", ".parquet": "parquet", ".txt": "txt"}
#: Output names the job writes itself; a shard of that name gets a suffix.
RESERVED = {"manifest", "errors"}


@dataclass
class Shard:
    """One unit of output: a JSONL or Parquet file, or a group of .txt files under `path`."""

    name: str
    format: str
    path: str
    files: List[str] = field(default_factory=list)


@dataclass
class Chunk:
    """A slice of a shard that one task reads: JSONL bytes [start, stop) whose first line is
    `first_line`; Parquet row group `start` whose first row is `first_line`; .txt files
    `files[start:stop]` of the shard. `size`: its lines, rows or files (at least its documents)."""

    shard: str
    format: str
    path: str
    start: int
    stop: int
    first_line: int = 1
    size: int = 0
    files: List[str] = field(default_factory=list)
    text_field: str = "text"
    id_field: str = "id"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: str) -> "Chunk":
        return cls(**json.loads(data))


def make_row(kind: str, shard: str, *, id: str = "", text: str = "", file: str = "", line: int = 0, message: str = "", count: int = 0) -> Row:
    """A reader row with every key set (see `Row`)."""
    return {"kind": kind, "shard": shard, "id": id, "text": text, "file": file, "line": line, "message": message, "count": count}


def find_shards(inputs: Sequence[str], txt_files_per_shard: int = 1000) -> List[Shard]:
    """Shards of the given files, globs and folders, in a stable order.

    A folder gives its .jsonl and .parquet files (recursively), one shard each, and its .txt
    files in groups of `txt_files_per_shard` (sorted by relative path, the documents' ids).
    """
    if txt_files_per_shard < 1:
        raise ValueError(f"txt_files_per_shard must be at least 1, got {txt_files_per_shard}")
    shards: List[Shard] = []
    seen = set()
    for spec in inputs:
        matches = sorted(glob(spec, recursive=True)) if any(c in spec for c in "*?[") else [spec]
        if not matches:
            raise FileNotFoundError(f"No input matches {spec!r}")
        for match in matches:
            path = Path(match)
            if not path.exists():
                raise FileNotFoundError(f"Input not found: {path}")
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.suffix in (".jsonl", ".parquet") and p.is_file())
                shards.extend(Shard(p.stem, FORMATS[p.suffix], str(p.resolve())) for p in files if p.resolve() not in seen)
                seen.update(p.resolve() for p in files)
                texts = sorted(str(p.relative_to(path)) for p in path.rglob("*.txt") if p.is_file())
                for i in range(0, len(texts), txt_files_per_shard):
                    shards.append(Shard(f"{path.resolve().name}-txt-{i // txt_files_per_shard:05d}", "txt", str(path.resolve()), texts[i : i + txt_files_per_shard]))
                if not files and not texts:
                    raise ValueError(f"{path}: folder has no .jsonl, .parquet or .txt files")
            elif path.suffix in (".jsonl", ".parquet"):
                if path.resolve() not in seen:
                    seen.add(path.resolve())
                    shards.append(Shard(path.stem, FORMATS[path.suffix], str(path.resolve())))
            else:
                raise ValueError(f"{path}: unsupported input (expected .jsonl, .parquet or a folder of .txt files)")
    return _unique_names(shards)


def _unique_names(shards: List[Shard]) -> List[Shard]:
    """Give shards whose names clash (or are reserved) a suffix from a hash of their source."""
    counts: Dict[str, int] = {}
    for shard in shards:
        counts[shard.name] = counts.get(shard.name, 0) + 1
    for shard in shards:
        if counts[shard.name] > 1 or shard.name in RESERVED:
            digest = hashlib.sha1(f"{shard.path}\0{shard.files[:1]}".encode("utf8")).hexdigest()[:8]
            shard.name = f"{shard.name}-{digest}"
    return shards


def plan_chunks(shard: Shard, chunk_size: int = 1000, text_field: str = "text", id_field: str = "id") -> List[Chunk]:
    """Split a shard into chunks of about `chunk_size` documents (Parquet: one row group each).

    JSONL files are scanned once, line by line, for the byte offset of every `chunk_size`-th line.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    common = {"shard": shard.name, "format": shard.format, "path": shard.path, "text_field": text_field, "id_field": id_field}
    if shard.format == "txt":
        return [Chunk(**common, start=i, stop=min(i + chunk_size, len(shard.files)), size=min(chunk_size, len(shard.files) - i), files=shard.files) for i in range(0, len(shard.files), chunk_size)]
    if shard.format == "parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(shard.path).metadata
        chunks, first = [], 1
        for group in range(meta.num_row_groups):
            rows = meta.row_group(group).num_rows
            chunks.append(Chunk(**common, start=group, stop=group + 1, first_line=first, size=rows))
            first += rows
        return chunks or [Chunk(**common, start=0, stop=0)]
    chunks, start, first, line = [], 0, 1, 0
    with open(shard.path, "rb") as f:
        offset = 0
        for raw in f:
            line += 1
            offset += len(raw)
            if line - first + 1 == chunk_size:
                chunks.append(Chunk(**common, start=start, stop=offset, first_line=first, size=chunk_size))
                start, first = offset, line + 1
    if offset > start or not chunks:
        chunks.append(Chunk(**common, start=start, stop=offset, first_line=first, size=line - first + 1))
    return chunks


def read_chunk(chunk: Chunk) -> Iterator[Row]:
    """The chunk's rows: one "doc" or "error" row a line/row/file, then one "end" row."""
    reader = {"jsonl": _read_jsonl, "parquet": _read_parquet, "txt": _read_txt}[chunk.format]
    count = 0
    for row in reader(chunk):
        count += 1
        yield row
    yield make_row("end", chunk.shard, file=chunk.path, line=chunk.start, count=count)


def _document(chunk: Chunk, record: Any, file: str, line: int, where: str) -> Row:
    """A "doc" row from one decoded record, or an "error" row saying what is wrong with it."""
    if not isinstance(record, dict):
        return make_row("error", chunk.shard, file=file, line=line, message=f"expected a JSON object, got {type(record).__name__}")
    text = record.get(chunk.text_field)
    doc_id = record.get(chunk.id_field)
    if not isinstance(text, str):  # the row's id, when it has one, goes with the error (a review queue points back to it)
        problem = f"no {chunk.text_field!r} field" if text is None else f"{chunk.text_field!r} is {type(text).__name__}, expected a string"
        return make_row("error", chunk.shard, id="" if doc_id is None else str(doc_id), file=file, line=line, message=problem)
    return make_row("doc", chunk.shard, id=where if doc_id is None else str(doc_id), text=text, file=file, line=line)


def _read_jsonl(chunk: Chunk) -> Iterator[Row]:
    with open(chunk.path, "rb") as f:
        f.seek(chunk.start)
        line, offset = chunk.first_line - 1, chunk.start
        name = Path(chunk.path).name
        while offset < chunk.stop:
            raw = f.readline()
            if not raw:
                break
            offset += len(raw)
            line += 1
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf8"))
            except UnicodeDecodeError as err:
                yield make_row("error", chunk.shard, file=chunk.path, line=line, message=f"bytes that are not UTF-8 ({err.reason} at column {err.start + 1})")
                continue
            except json.JSONDecodeError as err:
                yield make_row("error", chunk.shard, file=chunk.path, line=line, message=f"malformed JSON: {err.msg} at column {err.colno}")
                continue
            yield _document(chunk, record, chunk.path, line, f"{name}:{line}")


def _read_parquet(chunk: Chunk) -> Iterator[Row]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(chunk.path)
    names = pf.schema_arrow.names
    if chunk.text_field not in names:
        if chunk.start == 0:
            yield make_row("error", chunk.shard, file=chunk.path, line=0, message=f"no column {chunk.text_field!r} (columns: {names})")
        return
    columns = [chunk.text_field] + ([chunk.id_field] if chunk.id_field in names else [])
    row, name = chunk.first_line, Path(chunk.path).name
    for group in range(chunk.start, chunk.stop):
        for batch in pf.iter_batches(batch_size=1024, row_groups=[group], columns=columns):
            for record in batch.to_pylist():
                yield _document(chunk, record, chunk.path, row, f"{name}:{row}")
                row += 1


def _read_txt(chunk: Chunk) -> Iterator[Row]:
    root = Path(chunk.path)
    for rel in chunk.files[chunk.start : chunk.stop]:
        file = root / rel
        raw = file.read_bytes()
        try:
            text = raw.decode("utf8")
        except UnicodeDecodeError as err:
            line = raw[: err.start].count(b"\n") + 1
            yield make_row("error", chunk.shard, file=str(file), line=line, message=f"bytes that are not UTF-8 ({err.reason} at byte {err.start})")
            continue
        yield make_row("doc", chunk.shard, id=rel, text=text, file=str(file), line=0)

