"""One annotate job: find and plan the shards, skip finished ones, run an engine, write."""
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence

from spacy.util import get_model_meta, get_package_path, is_package

from .readers import Row, find_shards, plan_chunks
from .writer import OutputFolder

ENGINES = ("local", "ray")


@dataclass
class Summary:
    """What a run did: documents and entities written now, errors, shards skipped as done."""

    docs: int
    entities: int
    errors: int
    shards: int
    skipped: int
    seconds: float

    @property
    def docs_per_second(self) -> float:
        return self.docs / self.seconds if self.seconds else 0.0


def pipeline_id(model: str) -> str:
    """'lang_name-version' of an installed package or a pipeline folder (from its meta.json)."""
    path = get_package_path(model) if is_package(model) else Path(model)
    if not (path / "meta.json").exists():
        raise FileNotFoundError(f"Pipeline not found: {model!r} is neither an installed package nor a folder with meta.json")
    meta = get_model_meta(path)
    return f"{meta['lang']}_{meta['name']}-{meta['version']}"


def _progress(rows: Iterable[Row], total: int) -> Iterator[Row]:
    """Pass rows through, showing documents done and docs/s."""
    from tqdm import tqdm

    with tqdm(total=total, unit="docs", desc="annotate", smoothing=0.1) as bar:
        for row in rows:
            if row["kind"] != "end":
                bar.update(1)
            yield row
        bar.total = bar.n  # sizes count blank lines too
        bar.refresh()


def annotate(
    model: str,
    inputs: Sequence[str],
    output: Path,
    *,
    engine: str = "local",
    format: str = "parquet",
    docbin: bool = False,
    overwrite: bool = False,
    batch_size: int = 64,
    n_process: int = 1,
    text_field: str = "text",
    id_field: str = "id",
    max_length: Optional[int] = None,
    chunk_size: int = 1000,
    txt_files_per_shard: int = 1000,
    address: Optional[str] = None,
    num_actors: int = 1,
    gpus_per_actor: float = 0.0,
    progress: bool = True,
    gpu_id: int = -1,
    code_path: Optional[Path] = None,
) -> Summary:
    """Annotate every document of `inputs` with `model` into `output` (see the writer module for
    the exactly-once layout); returns this run's Summary. `code_path` (a Python file of registered
    functions) is imported before the pipeline loads; `gpu_id` is the local engine's GPU."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError('--engine ray needs the ray extra: pip install "spacy-msnr[ray]"') from None
    if code_path is not None:
        from spacy.cli._util import import_code

        import_code(code_path)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    shards = find_shards(inputs, txt_files_per_shard)
    folder = OutputFolder(output, format, docbin, pipeline_id(model))
    if overwrite:
        folder.clear(shards)
    folder.remove_partials()
    todo = [s for s in shards if not folder.is_done(s)]
    chunks = [c for s in todo for c in plan_chunks(s, chunk_size, text_field, id_field)]
    common: Dict[str, Any] = {"batch_size": batch_size, "max_length": max_length, "keep_docs": docbin}
    if not chunks:
        rows: Iterable[Row] = iter(())
    elif engine == "local":
        from .local import run_local

        rows = run_local(model, chunks, n_process=n_process, gpu_id=gpu_id, **common)
    else:
        from .ray_engine import run_ray

        rows = run_ray(model, chunks, code_path=code_path, address=address, num_actors=num_actors, gpus_per_actor=gpus_per_actor, progress=progress, **common)
    if progress and engine == "local":
        rows = _progress(rows, sum(c.size for c in chunks))
    ran = {s.name for s in todo}
    folder.consume(rows, todo, chunks)
    seconds = time.perf_counter() - clock
    info = {
        "pipeline": folder.pipeline, "model": model, "engine": engine, "inputs": list(inputs),
        "start": started.isoformat(timespec="seconds"), "end": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 3), "skipped_shards": len(shards) - len(todo),
    }
    manifest = folder.finish(shards, info)
    now = [s for s in manifest["shards"] if s["shard"] in ran]
    return Summary(
        docs=sum(s["docs"] for s in now), entities=sum(s["entities"] for s in now), errors=sum(s["errors"] for s in now),
        shards=len(now), skipped=len(shards) - len(todo), seconds=seconds,
    )
