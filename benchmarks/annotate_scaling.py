"""Docs/s of `annotate` beside plain `nlp.pipe` and `spacy apply`, same abstracts and pipeline, one run.

Rows: plain `nlp.pipe` in one process; `annotate --engine local` with 1 and 2 processes;
`annotate --engine ray` with 1 and 2 actors on a Ray started beforehand (as with `--address` to a
running cluster; its start time is reported apart); `spacy apply` with 1 and 2 processes. Every
row is end to end: loading the pipeline, reading the input and writing the output (`spacy apply`
also pays its Python start-up, measured apart). One torch/BLAS thread per process or actor:
run it with OMP_NUM_THREADS=1 (Ray gives each 1-CPU actor one thread itself). A sampler reads
every worker's resident memory (VmRSS of the process for in-process rows, of each worker process
or Ray actor otherwise) twice a second: the peak is reported per worker. All rows must give the
same entities. Past the abstracts of `--data`, documents come round again with new ids.

    OMP_NUM_THREADS=1 python benchmarks/annotate_scaling.py PIPELINE --label cnn --n-docs 20000
"""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

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
    """`n_docs` records of `source` in `n_shards` JSONL files, cycling through it with ids `<id>-<round>`."""
    with source.open(encoding="utf8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    docs = [
        {**r, "id": f"{r['id']}-{i // len(records)}" if i >= len(records) else r["id"]}
        for i, r in ((i, records[i % len(records)]) for i in range(n_docs))
    ]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jsonl"):
        old.unlink()
    size = -(-n_docs // n_shards)
    paths = []
    for i in range(0, n_docs, size):
        path = folder / f"part-{i // size:03d}.jsonl"
        path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs[i : i + size]), encoding="utf8")
        paths.append(path)
    return paths


def _status(pid: int) -> Tuple[int, str]:
    """(parent pid, VmRSS in kB) of a live process, or (-1, "")."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return -1, ""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return int(fields["PPid"]), fields.get("VmRSS", "0 kB").split()[0]


class MemorySampler:
    """Peak resident memory (MiB) of each process that `select(pid, cmdline)` picks, sampled every
    `interval` s; processes it picks at the start (such as a Ray actor still exiting from the row
    before) are left out, except this process and `keep`."""

    def __init__(self, select: Callable[[int, str], bool], interval: float = 0.5, keep: Tuple[int, ...] = ()):
        self.select, self.interval, self.keep = select, interval, keep
        self.peaks: Dict[int, float] = {}
        self.before: set = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "MemorySampler":
        self.before = {pid for pid, _ in self._processes()} - {os.getpid(), *self.keep}
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _processes(self) -> List[Tuple[int, str]]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf8", "replace")
                except OSError:
                    continue
                if self.select(int(entry.name), cmdline):
                    found.append((int(entry.name), cmdline))
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for pid, _ in self._processes():
                _, rss = _status(pid)
                if rss and pid not in self.before:
                    self.peaks[pid] = max(self.peaks.get(pid, 0.0), int(rss) / 1024)


def descendants_of(root: int) -> Callable[[int, str], bool]:
    def select(pid: int, cmdline: str) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid, _ = _status(pid)
        return False

    return select


def children_of(root: int) -> Callable[[int, str], bool]:
    return lambda pid, cmdline: pid != root and _status(pid)[0] == root


def ray_actors(pid: int, cmdline: str) -> bool:
    return cmdline.startswith("ray::MapWorker")


def this_process(pid: int, cmdline: str) -> bool:
    return pid == os.getpid()


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


def read_docbin(path: Path, pipeline: str, shards: List[Path]) -> Entities:
    """Entities of `spacy apply`'s DocBin, keyed by the input ids (it keeps the input order)."""
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    ids = [json.loads(line)["id"] for p in shards for line in p.open(encoding="utf8")]
    docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    return {i: [(e["start_char"], e["end_char"], e["label"]) for e in entity_records(d)] for i, d in zip(ids, docs)}


def main(
    pipeline: str = typer.Argument(..., help="Pipeline to measure (package name or folder)"),
    label: str = typer.Option("cnn", help="Short name: results go to annotate_scaling_<label>.{json,md}"),
    description: str = typer.Option("", help="How to describe the pipeline in the results (default: its name)"),
    data: Path = typer.Option(DATA, help="JSONL of abstracts ({'id', 'text'} a line)"),
    n_docs: int = typer.Option(20000, help="Documents to annotate"),
    n_shards: int = typer.Option(8, help="Input shards they are split into"),
    chunks_per_shard: int = typer.Option(4, help="Read chunks per shard (the unit Ray hands to an actor)"),
    batch_size: int = typer.Option(64, help="nlp.pipe / Ray batch size"),
    gpus_per_actor: float = typer.Option(0.0, help="Ray rows: GPUs per actor"),
    work: Path = typer.Option(ROOT / "benchmarks" / "work" / "annotate_scaling", help="Scratch folder"),
    results: Path = typer.Option(ROOT / "benchmarks" / "results" / "annotate", help="Folder for annotate_scaling_<label>.{json,md}"),
) -> None:
    import ray

    work = work / label
    shards = write_shards(data, work / "input", n_docs, n_shards)
    chunk_size = -(-n_docs // (n_shards * chunks_per_shard))
    list(spacy.load(pipeline).pipe(["Warm-up: imports, disk cache and lazy initialisation are paid before any row is timed."]))
    load_before = os.getloadavg()
    rows: List[Dict[str, Any]] = []
    same = True

    def add(name: str, seconds: float, sampler: MemorySampler, found: Entities, **extra: Any) -> None:
        nonlocal same
        same &= found == reference if rows else True
        peaks = sorted(sampler.peaks.values(), reverse=True)
        rows.append({"setup": name, "seconds": round(seconds, 2), "docs_per_s": round(n_docs / seconds, 2), "workers": len(peaks),
                     "peak_rss_mib": [round(p) for p in peaks], **extra})
        print(json.dumps(rows[-1]), flush=True)

    with MemorySampler(this_process) as sampler:
        seconds, reference = plain_pipe(pipeline, shards, batch_size)
    add("plain nlp.pipe, 1 process", seconds, sampler, reference)
    inputs = [str(p) for p in shards]
    for n_process in (1, 2):
        out = work / f"local-{n_process}"
        with MemorySampler(this_process if n_process == 1 else children_of(os.getpid())) as sampler:
            summary = annotate(pipeline, inputs, out, engine="local", n_process=n_process, batch_size=batch_size, chunk_size=chunk_size, overwrite=True, progress=False)
        add(f"annotate --engine local --n-process {n_process}", summary.seconds, sampler, read_output(out))
    ray_start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - ray_start
    print(f"ray.init: {ray_start:.1f} s", flush=True)
    gpu = f" --gpus-per-actor {gpus_per_actor:g}" if gpus_per_actor else ""
    try:
        for actors in (1, 2):
            out = work / f"ray-{actors}"
            with MemorySampler(ray_actors) as sampler:
                summary = annotate(
                    pipeline, inputs, out, engine="ray", num_actors=actors, gpus_per_actor=gpus_per_actor, batch_size=batch_size,
                    chunk_size=chunk_size, overwrite=True, progress=False,
                )
            add(f"annotate --engine ray --num-actors {actors}{gpu}", summary.seconds, sampler, read_output(out))
    finally:
        ray.shutdown()
    python = [sys.executable, "-c", "import spacy"]
    start = time.perf_counter()
    subprocess.run(python, check=True)
    startup = time.perf_counter() - start
    for n_process in (1, 2):
        out = work / f"apply-{n_process}.spacy"
        command = [sys.executable, "-m", "spacy", "apply", pipeline, str(work / "input"), str(out), "--text-key", "text",
                   "--batch-size", str(batch_size), "--n-process", str(n_process)]
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        with MemorySampler(descendants_of(process.pid) if n_process == 1 else children_of(process.pid), keep=(process.pid,)) as sampler:
            if process.wait():
                raise RuntimeError(f"{' '.join(command)} failed")
        add(f"spacy apply --n-process {n_process}", time.perf_counter() - start, sampler, read_docbin(out, pipeline, shards),
            python_startup_s=round(startup, 2))
    load_after = os.getloadavg()
    plain, by_name = rows[0]["seconds"], {r["setup"]: r["seconds"] for r in rows}
    for row in rows:
        row["x_plain"] = round(plain / row["seconds"], 3)
    ray1, ray2 = by_name[f"annotate --engine ray --num-actors 1{gpu}"], by_name[f"annotate --engine ray --num-actors 2{gpu}"]
    report = {
        "label": label, "pipeline": description or pipeline, "n_docs": n_docs, "n_shards": n_shards, "chunk_size": chunk_size,
        "batch_size": batch_size, "cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "load_before": round(load_before[0], 2), "load_after": round(load_after[0], 2), "ray_init_s": round(ray_start, 2),
        "rows": rows, "same_entities": same,
        "goals": {
            "ray_2_over_1": round(ray1 / ray2, 3),
            "annotate_local_1_over_plain": round(plain / by_name["annotate --engine local --n-process 1"], 3),
            "annotate_ray_1_over_plain": round(plain / ray1, 3),
        },
        "command": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} python benchmarks/annotate_scaling.py {pipeline} --label {label} --n-docs {n_docs}",
    }
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(results / f"annotate_scaling_{label}.json", json.dumps(report, indent=2).encode("utf8"))
    print(json.dumps(report["goals"]))


if __name__ == "__main__":
    typer.run(main)
