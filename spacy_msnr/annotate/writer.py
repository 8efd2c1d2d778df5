"""The output folder: one Parquet/JSONL file (and optionally a .spacy DocBin) per input shard,
committed atomically, a done marker per shard, `errors.jsonl` and `manifest.json`.

Exactly once: a shard's records go to `<name>.<format>.partial` and `os.replace` it to
`<name>.<format>` when the shard's last chunk has arrived and every row has been counted; its
DocBin follows, then its marker `_shards/<name>.json` (counts, errors, source, pipeline). A shard
is done when its marker and outputs exist; a rerun skips done shards and redoes the others, so a
crash or `kill -9` at any moment leaves each document in exactly one finished file.
`errors.jsonl` and `manifest.json` are rebuilt from the markers at the end of every run.
"""
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from ..util import atomic_write_bytes
from .readers import Chunk, Row, Shard

ENTITY = pa.struct([("start_char", pa.int64()), ("end_char", pa.int64()), ("label", pa.string()), ("text", pa.string()), ("score", pa.float64())])
SCHEMA = pa.schema([("id", pa.string()), ("length", pa.int64()), ("entities", pa.list_(ENTITY))])
MARKERS = "_shards"
ROW_GROUP = 2048


class ShardMismatchError(ValueError):
    """The output folder holds a finished shard from another source, format or pipeline."""


@dataclass
class ShardWriter:
    """Streams one shard's records to a temporary file and commits it when all rows are in."""

    folder: "OutputFolder"
    shard: Shard
    chunks: int
    docs: int = 0
    entities: int = 0
    received: int = 0
    expected: int = 0
    ends: int = 0
    errors: List[Dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.final = self.folder.path / f"{self.shard.name}.{self.folder.format}"
        self.tmp = self.final.with_name(self.final.name + ".partial")
        self.buffer: List[Dict[str, Any]] = []
        self.docbin: Optional[DocBin] = DocBin(store_user_data=False) if self.folder.docbin else None
        self.vocab = Vocab()
        if self.folder.format == "parquet":
            self.parquet: Optional[pq.ParquetWriter] = pq.ParquetWriter(self.tmp, SCHEMA)
            self.jsonl = None
        else:
            self.parquet, self.jsonl = None, self.tmp.open("w", encoding="utf8")

    def add(self, row: Row) -> bool:
        """Take one output row; True when it completed the shard (which is then committed)."""
        if row["kind"] == "doc":
            self.received += 1
            ents = json.loads(row["entities"])
            self.docs += 1
            self.entities += len(ents)
            self.buffer.append({"id": row["id"], "length": int(row["length"]), "entities": ents})
            if self.docbin is not None:
                self.docbin.add(Doc(self.vocab).from_bytes(row["doc"]))
            if len(self.buffer) >= ROW_GROUP:
                self._flush()
        elif row["kind"] == "error":
            self.received += 1
            self.errors.append({"id": row["id"] or None, "file": row["file"], "line": int(row["line"]), "error": row["message"]})
        else:
            self.ends += 1
            self.expected += int(row["count"])
        if self.ends == self.chunks:
            if self.received != self.expected:
                raise RuntimeError(f"shard {self.shard.name}: {self.received} rows arrived, its chunks read {self.expected}")
            self.commit()
            return True
        return False

    def _flush(self) -> None:
        if self.parquet is not None:
            self.parquet.write_table(pa.Table.from_pylist(self.buffer, schema=SCHEMA))
        else:
            self.jsonl.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in self.buffer)
        self.buffer = []

    def commit(self) -> None:
        """Close the temporary file, move it into place, then write the DocBin and the marker."""
        self._flush()
        if self.parquet is not None:
            self.parquet.close()
        else:
            self.jsonl.flush()
            os.fsync(self.jsonl.fileno())
            self.jsonl.close()
        os.replace(self.tmp, self.final)
        outputs = [self.final.name]
        if self.docbin is not None:
            atomic_write_bytes(self.folder.path / f"{self.shard.name}.spacy", self.docbin.to_bytes())
            outputs.append(f"{self.shard.name}.spacy")
        marker = {
            "shard": self.shard.name, "source": self.shard.path, "files": len(self.shard.files) or None, "format": self.folder.format,
            "pipeline": self.folder.pipeline, "outputs": outputs, "docs": self.docs, "entities": self.entities, "errors": self.errors,
        }
        atomic_write_bytes(self.folder.marker(self.shard.name), json.dumps(marker, ensure_ascii=False).encode("utf8"))

    def abort(self) -> None:
        """Drop the temporary file of an unfinished shard."""
        if self.parquet is not None:
            self.parquet.close()
        elif self.jsonl is not None:
            self.jsonl.close()
        self.tmp.unlink(missing_ok=True)


class OutputFolder:
    """An annotate job's output folder (see the module docstring)."""

    def __init__(self, path: Path, format: str = "parquet", docbin: bool = False, pipeline: str = ""):
        if format not in ("parquet", "jsonl"):
            raise ValueError(f"format must be 'parquet' or 'jsonl', got {format!r}")
        self.path, self.format, self.docbin, self.pipeline = Path(path), format, docbin, pipeline
        (self.path / MARKERS).mkdir(parents=True, exist_ok=True)

    def marker(self, name: str) -> Path:
        return self.path / MARKERS / f"{name}.json"

    def clear(self, shards: Sequence[Shard]) -> None:
        """Forget earlier results (--overwrite): markers, the shards' outputs, manifest, errors."""
        for marker in (self.path / MARKERS).glob("*.json"):
            outputs = json.loads(marker.read_text(encoding="utf8")).get("outputs", [])
            for name in outputs:
                (self.path / name).unlink(missing_ok=True)
            marker.unlink()
        for shard in shards:
            for suffix in (".parquet", ".jsonl", ".spacy"):
                (self.path / f"{shard.name}{suffix}").unlink(missing_ok=True)
        for name in ("manifest.json", "errors.jsonl"):
            (self.path / name).unlink(missing_ok=True)

    def remove_partials(self) -> None:
        """Delete temporary files that a killed run left behind."""
        for tmp in list(self.path.glob("*.partial")) + list((self.path / MARKERS).glob("*.partial")):
            tmp.unlink(missing_ok=True)

    def is_done(self, shard: Shard) -> bool:
        """Whether the shard was finished by an earlier run with the same source, format and
        pipeline; ShardMismatchError when it was finished with different ones."""
        path = self.marker(shard.name)
        if not path.exists():
            return False
        marker = json.loads(path.read_text(encoding="utf8"))
        for key, value in (("source", shard.path), ("format", self.format), ("pipeline", self.pipeline)):
            if marker[key] != value:
                raise ShardMismatchError(
                    f"{self.path}: shard {shard.name!r} was finished with {key} {marker[key]!r}, this run has {value!r}; "
                    "use another --output folder or --overwrite"
                )
        return all((self.path / name).exists() for name in marker["outputs"]) and (not self.docbin or f"{shard.name}.spacy" in marker["outputs"])

    def consume(self, rows: Iterable[Row], shards: Sequence[Shard], chunks: Sequence[Chunk]) -> None:
        """Route output rows to per-shard writers, committing each shard as it completes.
        The temporary files of shards left unfinished are removed."""
        counts: Dict[str, int] = {}
        for chunk in chunks:
            counts[chunk.shard] = counts.get(chunk.shard, 0) + 1
        by_name = {s.name: s for s in shards}
        open_writers: Dict[str, ShardWriter] = {}
        try:
            for row in rows:
                name = row["shard"]
                writer = open_writers.get(name)
                if writer is None:
                    writer = open_writers[name] = ShardWriter(self, by_name[name], counts[name])
                if writer.add(row):
                    del open_writers[name]
        finally:
            for writer in open_writers.values():
                writer.abort()
        if open_writers:
            raise RuntimeError(f"the engine ended before shards {sorted(open_writers)} were complete")

    def finish(self, shards: Sequence[Shard], info: Dict[str, Any]) -> Dict[str, Any]:
        """Write errors.jsonl and manifest.json from the markers of `shards`; the manifest."""
        markers = [json.loads(self.marker(s.name).read_text(encoding="utf8")) for s in shards if self.marker(s.name).exists()]
        errors = [e for m in markers for e in m["errors"]]
        atomic_write_bytes(self.path / "errors.jsonl", "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors).encode("utf8"))
        manifest = {
            **info,
            "format": self.format,
            "docbin": self.docbin,
            "shards": [{k: m[k] for k in ("shard", "source", "files", "outputs", "docs", "entities")} | {"errors": len(m["errors"])} for m in markers],
            "unfinished": [s.name for s in shards if not self.marker(s.name).exists()],
            "docs": sum(m["docs"] for m in markers),
            "entities": sum(m["entities"] for m in markers),
            "errors": len(errors),
        }
        atomic_write_bytes(self.path / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf8"))
        return manifest
