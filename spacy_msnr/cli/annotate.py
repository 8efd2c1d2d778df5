"""`annotate`: run a pipeline over a whole corpus into per-shard Parquet/JSONL files, exactly once.

Beside `spacy apply` (one DocBin out): records with character offsets and scores in Parquet or
JSONL, resumable after a crash, and a Ray engine for a cluster. Flags mean what they mean there.
"""
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ._app import GPU_ID_OPTION, app, user_errors


class Engine(str, Enum):
    local = "local"
    ray = "ray"


class Format(str, Enum):
    parquet = "parquet"
    jsonl = "jsonl"


@app.command("annotate")
def annotate_cli(
    model: str = typer.Argument(..., help="Pipeline to load: an installed package name or a folder"),
    inputs: List[str] = typer.Argument(..., help="JSONL or Parquet files, globs, or folders (of those, or of .txt files)"),
    output: Path = typer.Argument(..., help="Output folder (one file per input shard, manifest.json, errors.jsonl)"),
    code_path: Optional[Path] = typer.Option(None, "--code", "-c", help="Python file with additional code (registered functions) to import first"),
    text_key: str = typer.Option("text", "--text-key", "-tk", help="JSONL key / Parquet column of the text"),
    id_key: str = typer.Option("id", "--id-key", "-ik", help="JSONL key / Parquet column of the id (absent: file:line)"),
    force: bool = typer.Option(False, "--force", "-F", help="Discard earlier results in OUTPUT instead of resuming"),
    gpu_id: int = GPU_ID_OPTION,
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Texts per nlp.pipe batch (and per Ray batch)"),
    n_process: int = typer.Option(1, "--n-process", "-n", help="Local engine: nlp.pipe worker processes"),
    engine: Engine = typer.Option(Engine.local, "--engine", help="local (nlp.pipe) or ray (Ray Data; needs the ray extra)"),
    format: Format = typer.Option(Format.parquet, "--format", help="Output records as Parquet or JSON lines"),
    docbin: bool = typer.Option(False, "--docbin", help="Also write a .spacy DocBin per shard"),
    max_length: int = typer.Option(0, "--max-length", help="Split longer texts on paragraph/sentence boundaries (0 and upper bound: the pipeline's max_length)"),
    chunk_size: int = typer.Option(1000, "--chunk-size", help="Documents per read chunk (the unit Ray hands to an actor)"),
    txt_files_per_shard: int = typer.Option(1000, "--txt-files-per-shard", help="Folders of .txt files: files per output shard"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray engine: cluster to join ('auto', 'ray://host:10001'); none starts a local Ray"),
    num_actors: int = typer.Option(1, "--num-actors", help="Ray engine: actors, each loading the pipeline once"),
    gpus_per_actor: float = typer.Option(0.0, "--gpus-per-actor", help="Ray engine: GPUs per actor (transformer pipelines)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar"),
) -> None:
    """Annotate a corpus: one record per document (id, length, entities with character offsets
    and scores), each document exactly once, resumable after a crash."""
    from ..annotate import annotate

    with user_errors():
        summary = annotate(
            model, inputs, output, engine=engine.value, format=format.value, docbin=docbin, overwrite=force, batch_size=batch_size,
            n_process=n_process, text_field=text_key, id_field=id_key, max_length=max_length or None, chunk_size=chunk_size,
            txt_files_per_shard=txt_files_per_shard, address=address, num_actors=num_actors, gpus_per_actor=gpus_per_actor,
            progress=progress, gpu_id=gpu_id, code_path=code_path,
        )
    if summary.skipped:
        msg.info(f"Skipped {summary.skipped} shards finished by an earlier run")
    msg.good(
        f"{summary.docs} docs, {summary.entities} entities, {summary.errors} errors in {summary.shards} shards; "
        f"{summary.seconds:.1f} s, {summary.docs_per_second:.1f} docs/s -> {output}"
    )
    if summary.errors:
        msg.warn(f"{summary.errors} input problems listed in {output / 'errors.jsonl'}")
