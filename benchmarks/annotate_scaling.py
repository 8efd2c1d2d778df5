"""Docs/s of `annotate` beside plain `nlp.pipe`, on the same abstracts and pipeline, in one run.

Rows: plain `nlp.pipe` in one process; `annotate --engine local` with 1 and `--n-process` 2
processes; `annotate --engine ray` with 1 and 2 actors on a Ray started beforehand (as with
`--address` to a running cluster; its start time is printed apart). Every row is end to end:
loading the pipeline, reading the shards and (annotate) writing Parquet. All rows must give the
same entities. Prints the table with ratios to plain `nlp.pipe` and writes
benchmarks/results/annotate_scaling.md.

    OMP_NUM_THREADS=1 python benchmarks/annotate_scaling.py benchmarks/work/annotate/cnn/model-best
"""
import json
import os
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pyarrow.parquet as pq
import spacy
import typer

from spacy_msnr.annotate import annotate
from spacy_msnr.annotate.records import entity_records
from spacy_msnr.util import atomic_write_bytes

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "pubmed" / "abstracts.jsonl"
Entities = Dict[str, List[Tuple[int, int, str]]]


def write_shards(source: Path, folder: Path, n_docs: int, n_shards: int) -> List[Path]:
    """The first `n_docs` lines of `source` in `n_shards` JSONL files."""
    with source.open(encoding="utf8") as f:
        lines = [line for _, line in zip(range(n_docs), f)]
    if len(lines) < n_docs:
        raise ValueError(f"{source} has only {len(lines)} documents, {n_docs} asked")
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-n_docs // n_shards)
    paths = []
    for i in range(0, n_docs, size):
        path = folder / f"part-{i // size:03d}.jsonl"
        path.write_text("".join(lines[i : i + size]), encoding="utf8")
        paths.append(path)
    return paths


def plain_pipe(pipeline: str, shards: List[Path], batch_size: int) -> Tuple[float, Entities]:
    """Seconds of spacy.load + reading + one-process nlp.pipe, and the entities."""
    start = time.perf_counter()
    nlp = spacy.load(pipeline)
    records = [json.loads(line) for path in shards for line in path.open(encoding="utf8")]
    docs = nlp.pipe((r["text"] for r in records), batch_size=batch_size)
    found = {r["id"]: [(e["start_char"], e["end_char"], e["label"]) for e in entity_records(doc)] for r, doc in zip(records, docs)}
    return time.perf_counter() - start, found


def read_output(folder: Path) -> Entities:
    rows = [r for path in sorted(folder.glob("*.parquet")) for r in pq.read_table(path).to_pylist()]
    return {r["id"]: [(e["start_char"], e["end_char"], e["label"]) for e in r["entities"]] for r in rows}


def main(
    pipeline: str = typer.Argument(..., help="Pipeline to measure (package name or folder)"),
    label: str = typer.Option("", help="How to name the pipeline in the results (default: its path)"),
    data: Path = typer.Option(DATA, help="JSONL of abstracts ({'id', 'text'} a line)"),
    n_docs: int = typer.Option(2000, help="Documents to annotate"),
    n_shards: int = typer.Option(8, help="Input shards they are split into"),
    batch_size: int = typer.Option(64, help="nlp.pipe / Ray batch size"),
    gpus_per_actor: float = typer.Option(0.0, help="Ray rows: GPUs per actor"),
    work: Path = typer.Option(ROOT / "benchmarks" / "work" / "annotate_scaling", help="Scratch folder"),
    results: Path = typer.Option(ROOT / "benchmarks" / "results" / "annotate_scaling.md", help="Markdown table to write"),
) -> None:
    import ray

    shards = write_shards(data, work / "input", n_docs, n_shards)
    list(spacy.load(pipeline).pipe(["Warm-up: imports, disk cache and lazy initialisation are paid before any row is timed."]))
    load_before = os.getloadavg()
    rows: List[Tuple[str, float]] = []
    seconds, reference = plain_pipe(pipeline, shards, batch_size)
    rows.append(("plain nlp.pipe, 1 process", seconds))
    print(rows[-1], flush=True)
    same = True
    inputs = [str(p) for p in shards]
    for n_process in (1, 2):
        out = work / f"local-{n_process}"
        summary = annotate(pipeline, inputs, out, engine="local", n_process=n_process, batch_size=batch_size, overwrite=True, progress=False)
        rows.append((f"annotate --engine local --n-process {n_process}", summary.seconds))
        print(rows[-1], flush=True)
        same &= read_output(out) == reference
    ray_start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - ray_start
    print(f"ray.init: {ray_start:.1f} s", flush=True)
    try:
        for actors in (1, 2):
            out = work / f"ray-{actors}"
            summary = annotate(
                pipeline, inputs, out, engine="ray", num_actors=actors, gpus_per_actor=gpus_per_actor, batch_size=batch_size,
                chunk_size=-(-n_docs // n_shards), overwrite=True, progress=False,
            )
            gpu = f", --gpus-per-actor {gpus_per_actor:g}" if gpus_per_actor else ""
            rows.append((f"annotate --engine ray --num-actors {actors}{gpu}", summary.seconds))
            print(rows[-1], flush=True)
            same &= read_output(out) == reference
    finally:
        ray.shutdown()
    load_after = os.getloadavg()
    plain = rows[0][1]
    lines = [
        f"# annotate scaling: {n_docs} PubMed abstracts, {n_shards} shards, batch size {batch_size}",
        "",
        f"Pipeline: {label or pipeline}. Machine: {os.cpu_count()} CPU cores shared with other jobs "
        f"(1-min load average {load_before[0]:.1f} before, {load_after[0]:.1f} after); one run, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.",
        "Each row is end to end (pipeline load, reading, and for annotate writing Parquet), after one untimed load of the pipeline; the Ray rows run on a Ray "
        f"started beforehand, whose start took {ray_start:.1f} s and is not in the rows.",
        "",
        "| setup | seconds | docs/s | x plain nlp.pipe |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {sec:.1f} | {n_docs / sec:.1f} | {plain / sec:.2f} |" for name, sec in rows]
    lines += ["", f"Same entities in every row: {'yes' if same else 'NO'}."]
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_bytes(results, text.encode("utf8"))


if __name__ == "__main__":
    typer.run(main)
