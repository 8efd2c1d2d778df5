"""The Ray engine: a Ray Data pipeline over the planned chunks whose actors each load the
pipeline once, then read and annotate one chunk at a time; the driver streams the results to
the writer.

The dataset holds one row a chunk (its descriptor); `map_batches` hands chunks to the actor
pool (`concurrency=num_actors`), and an actor yields its chunk's output in tables of
`batch_size` documents, so a big chunk streams. Reading inside the actor (as Ray fuses a read
into the map that follows it) starts no extra worker processes and sends no texts through the
object store. `address=None` starts a local Ray (or uses the one this process already
started); "auto" or "ray://..." joins an existing cluster, whose nodes must be able to load
`model` (an installed package or a path on shared storage) and read the input paths.
"""
from itertools import islice
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from .readers import Chunk, Row, read_chunk
from .records import OUT_KEYS, annotate_rows


def _out_schema() -> Any:
    """The output rows' Arrow schema (ids and messages as strings, Doc bytes as binary)."""
    import pyarrow as pa

    types = {"line": pa.int64(), "count": pa.int64(), "length": pa.int64(), "doc": pa.binary()}
    return pa.schema([(key, types.get(key, pa.string())) for key in OUT_KEYS])


class PipelineActor:
    """A Ray Data actor: loads the pipeline once, then reads and annotates chunks."""

    def __init__(self, model: str, batch_size: int, max_length: Optional[int], keep_docs: bool, use_gpu: bool, code_path: Optional[str] = None):
        import spacy

        if code_path:
            from spacy.cli._util import import_code

            import_code(code_path)
        if use_gpu:
            spacy.require_gpu()
        self.nlp = spacy.load(model)
        self.batch_size, self.max_length, self.keep_docs = batch_size, max_length, keep_docs
        self.schema = _out_schema()

    def __call__(self, batch: Any) -> Iterator[Any]:
        import pyarrow as pa

        for item in batch.column("chunk").to_pylist():
            rows = annotate_rows(self.nlp, read_chunk(Chunk.from_json(item)), batch_size=self.batch_size, max_length=self.max_length, keep_docs=self.keep_docs)
            while True:
                part = list(islice(rows, self.batch_size))
                if not part:
                    break
                yield pa.Table.from_pylist(part, schema=self.schema)


def run_ray(
    model: str,
    chunks: Sequence[Chunk],
    *,
    batch_size: int = 64,
    max_length: Optional[int] = None,
    keep_docs: bool = False,
    code_path: Optional[Path] = None,
    address: Optional[str] = None,
    num_actors: int = 1,
    gpus_per_actor: float = 0.0,
    progress: bool = True,
) -> Iterator[Row]:
    """Output rows of all chunks in input order (Ray Data's `preserve_order`)."""
    import ray

    if num_actors < 1:
        raise ValueError(f"num_actors must be at least 1, got {num_actors}")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    before = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True
    context.enable_progress_bars = progress
    try:
        items: List[Dict[str, str]] = [{"chunk": chunk.to_json()} for chunk in chunks]
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        ds = ds.map_batches(
            PipelineActor,
            fn_constructor_args=(model, batch_size, max_length, keep_docs, gpus_per_actor > 0, str(code_path) if code_path else None),
            batch_size=1,
            batch_format="pyarrow",
            concurrency=num_actors,
            num_cpus=1,
            num_gpus=gpus_per_actor or None,
        )
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield from table.to_pylist()
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = before
        if started:
            ray.shutdown()
