"""Does `mslm-search`'s cheap signal pick a setting as good as the best grid point?

    python benchmarks/mslm_search_validation.py --project benchmarks/work/workflow_all --dataset NCBI-disease-IOB \
        --ablation benchmarks/results/mslm/mslm_ablation_minilm_ncbi*.json --steps 50 100 --results-name mslm_search_ncbi

Runs the search (`spacy_msnr.mslm.search.search`, what `python -m spacy_msnr mslm-search` and the
project's `mslm-search` step run) on the project folder's `training/base`, `corpus/train.spacy` and
`corpus/dev.spacy`, with the adaptation settings of `benchmarks/mslm_ablation.py` (configs/mslm.cfg,
MSLM alone, --adapt-lr, 2,048 wordpieces a step), once per `--steps`. Then it puts each grid point's
dev signal beside the test NER F1 that the ablation measured for the same setting after a full
adaptation (`--ablation`: that script's results JSONs; cells keyed dataset/row/seed), and reports

- the chosen point's F1 minus the best measured point's, paired by seed, and whether the gap is
  within the seed spread (no larger than the larger of the two points' seed standard deviations);
- the Spearman rank correlation of the signal with the mean F1 over the points with an F1;
- the search's cost (seconds of its short runs).

A chosen point the ablation never measured is reported as such (no F1, nothing claimed).
Writes `benchmarks/results/<results-name>.{json,md}`; rerunning reuses finished search points.
`--rejudge EARLIER.json` runs no search: it judges that earlier file's search points again
against the `--ablation` files given now (e.g. once the chosen point has F1 cells of its own),
and keeps the earlier search command beside the new one.
"""
import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spacy_msnr.mslm.search import ablation_row_name  # noqa: E402
from spacy_msnr.util import atomic_write_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mslm"


def read_cells(paths: Sequence[Path]) -> Dict[str, Dict[str, Any]]:
    """The ablation cells of every file, later files winning on a repeated key."""
    cells: Dict[str, Dict[str, Any]] = {}
    for path in paths:
        cells.update(json.loads(Path(path).read_text(encoding="utf8")))
    return cells


def f1_by_seed(cells: Dict[str, Dict[str, Any]], dataset: str, row: str) -> Dict[int, float]:
    """Test F1 of one ablation row, by seed."""
    out = {}
    for key, cell in cells.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == dataset and parts[1] == row and "ner" in cell:
            out[int(parts[2])] = float(cell["ner"]["f1"])
    return dict(sorted(out.items()))


def spearman(xs: Sequence[float], ys: Sequence[float]) -> Optional[float]:
    """Spearman's rho (average ranks on ties); None below three pairs."""
    if len(xs) < 3:
        return None

    def ranks(values: Sequence[float]) -> List[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den if den else None


def _std(values: Sequence[float]) -> Optional[float]:
    """Sample standard deviation; None for fewer than two values (one seed has no spread)."""
    return statistics.stdev(values) if len(values) > 1 else None


def judge(record: Dict[str, Any], cells: Dict[str, Dict[str, Any]], dataset: str,
          row_name: Callable[[float, float, str], str]) -> Dict[str, Any]:
    """One search record against the ablation's F1: per-point rows, the chosen point's paired gap
    to the best measured point, and the signal's rank correlation with F1. `row_name` names a
    point's ablation row from its ELM rate, BLM rate and weighting (`ablation_row_name`)."""
    points = []
    for name in record["grid"]:
        result = record["points"].get(name)
        if result is None:
            points.append({"point": name, "tried": False})
            continue
        f1 = f1_by_seed(cells, dataset, row_name(result["elm_rate"], result["blm_rate"], result["weighting"]))
        points.append({
            "point": name, "tried": True, "elm_rate": result["elm_rate"], "blm_rate": result["blm_rate"],
            "weighting": result["weighting"], "score": record["scores"].get(name),
            "term_acc": result["metrics"].get("term_acc"), "generic_acc": result["metrics"].get("generic_acc"),
            "excluded": record.get("excluded", {}).get(name), "seconds": result["seconds"],
            "f1_by_seed": f1, "f1_mean": statistics.fmean(f1.values()) if f1 else None,
            "f1_std": _std(list(f1.values())) if f1 else None, "chosen": name == record.get("chosen"),
        })
    measured = [p for p in points if p.get("f1_mean") is not None]
    best = max(measured, key=lambda p: p["f1_mean"], default=None)
    chosen = next((p for p in points if p.get("chosen")), None)
    verdict: Dict[str, Any] = {"chosen": record.get("chosen"), "best": best["point"] if best else None}
    if chosen is not None and chosen.get("f1_mean") is not None and best is not None:
        seeds = sorted(set(chosen["f1_by_seed"]) & set(best["f1_by_seed"]))
        gaps = [chosen["f1_by_seed"][s] - best["f1_by_seed"][s] for s in seeds]
        stds = [s for s in (chosen["f1_std"], best["f1_std"]) if s is not None]
        spread = max(stds) if stds else None
        gap = chosen["f1_mean"] - best["f1_mean"]
        verdict.update(gap=gap, paired_gap_mean=statistics.fmean(gaps) if gaps else None,
                       paired_gap_std=_std(gaps) if gaps else None, paired_seeds=seeds, spread=spread,
                       within_spread=abs(gap) <= spread if spread is not None else None)
    elif chosen is not None:
        verdict["note"] = "the chosen point was not measured by the ablation: no F1 to judge it by"
    signal_f1 = [(p["score"], p["f1_mean"]) for p in measured if p["score"] is not None]
    verdict["spearman"] = spearman([s for s, _ in signal_f1], [f for _, f in signal_f1])
    verdict["n_ranked"] = len(signal_f1)
    verdict["search_seconds"] = sum(p["seconds"] for p in points if p["tried"])
    return {"points": points, "verdict": verdict}


def record_from_run(run: Dict[str, Any]) -> Dict[str, Any]:
    """The search record that `judge` turned into `run` (a results JSON's run), to judge it again."""
    record: Dict[str, Any] = {"grid": [], "points": {}, "scores": {}, "excluded": {}, "chosen": None}
    for p in run["points"]:
        record["grid"].append(p["point"])
        if not p["tried"]:
            continue
        record["points"][p["point"]] = {
            "elm_rate": p["elm_rate"], "blm_rate": p["blm_rate"], "weighting": p["weighting"],
            "metrics": {"term_acc": p["term_acc"], "generic_acc": p["generic_acc"]}, "seconds": p["seconds"]}
        if p["score"] is not None:
            record["scores"][p["point"]] = p["score"]
        if p["excluded"]:
            record["excluded"][p["point"]] = p["excluded"]
        if p["chosen"]:
            record["chosen"] = p["point"]
    return record


def run_search(args: argparse.Namespace, steps: int) -> Dict[str, Any]:
    from spacy_msnr.mslm.search import expand_grid, parse_names, parse_values, search
    from spacy_msnr.mslm.train import load_config

    project = args.project
    config = load_config(ROOT / "configs" / "mslm.cfg", {
        "paths.train": str(project / "corpus" / "train.spacy"), "paths.dev": str(project / "corpus" / "dev.spacy"),
        "paths.base_model": str(project / "training" / "base"), "system.seed": args.seed,
        "training.optimizer.learn_rate": args.adapt_lr, "training.batch_size": args.adapt_batch,
        "model.ner_weight": 0.0, "model.precision": args.precision,
    })
    points = expand_grid(parse_values(args.elm_rates, "--elm-rates"), parse_values(args.blm_rates, "--blm-rates"),
                         parse_names(args.weightings))
    return search(config, args.work / f"steps{steps}", points, steps=steps, signal=args.signal, source="configs/mslm.cfg")


def _fmt(value: Optional[float], digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def f1_text(point: Dict[str, Any]) -> str:
    """A point's test F1: mean ± std over seeds, or the one seed's figure."""
    if point.get("f1_mean") is None:
        return "not measured"
    if point["f1_std"] is None:
        return f"{point['f1_mean']:.2f} (one seed)"
    return f"{point['f1_mean']:.2f} ± {point['f1_std']:.2f}"


def spread_text(verdict: Dict[str, Any]) -> str:
    """Whether the chosen point's gap lies within the seed spread, or why that cannot be said."""
    if verdict.get("spread") is None:
        return "one seed a point: no seed spread to judge the gap by"
    return f"seed spread {verdict['spread']:.2f}: " + ("within it" if verdict["within_spread"] else "outside it")


def render(results: Dict[str, Any]) -> str:
    label = f" ({results['label']})" if results.get("label") else ""
    command = f"`{results['command']}`"
    if results.get("search_command"):
        command = f"`{results['search_command']}`, judged again by {command}"
    lines = [f"# mslm-search against measured NER F1: {results['dataset']}{label}", "",
             f"Command: {command}", "", f"Machine: {results['machine']}", ""]
    for run in results["runs"]:
        v = run["verdict"]
        lines += [f"## {run['steps']} steps a point (signal {results['signal']}; search {v['search_seconds']:.0f} s)", "",
                  "| point | dev term top-1 | dev generic top-1 | test F1 (ablation) | seeds | |",
                  "|---|---:|---:|---:|---|---|"]
        for p in run["points"]:
            if not p["tried"]:
                lines.append(f"| {p['point']} | not tried | | | | |")
                continue
            f1 = f1_text(p)
            mark = "chosen" if p["chosen"] else (f"excluded: {p['excluded']}" if p["excluded"] else "")
            lines.append(f"| {p['point']} | {100 * p['term_acc']:.2f} % | {100 * p['generic_acc']:.2f} % | {f1} | "
                         f"{', '.join(map(str, p['f1_by_seed'])) or '–'} | {mark} |")
        lines.append("")
        if "gap" in v:
            lines.append(f"Chosen {v['chosen']}, best measured {v['best']}: F1 gap {_fmt(v['gap'], sign=True)} "
                         f"(paired by seed {_fmt(v['paired_gap_mean'], sign=True)}"
                         + (f" ± {_fmt(v['paired_gap_std'])}" if v.get("paired_gap_std") is not None else "") + ", seeds "
                         f"{', '.join(map(str, v['paired_seeds']))}); " + spread_text(v) + ".")
        else:
            lines.append(f"Chosen {v['chosen']}: {v.get('note', '')}.")
        lines += [f"Spearman of the signal with mean test F1 over {v['n_ranked']} measured points: {_fmt(v['spearman'])}.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, help="a project folder with training/base and corpus/")
    parser.add_argument("--rejudge", type=Path, help="an earlier results JSON: judge its search points again, run no search")
    parser.add_argument("--dataset", required=True, help="the dataset name in the ablation cells, e.g. NCBI-disease-IOB")
    parser.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"),
                        help="MSLM's precision (the committed tables: fp32)")
    parser.add_argument("--ablation", type=Path, nargs="+", required=True, help="benchmarks/mslm_ablation.py results JSONs")
    parser.add_argument("--steps", type=int, nargs="+", default=[50], help="search lengths to try (steps a point)")
    parser.add_argument("--elm-rates", default="0.5,1.0")
    parser.add_argument("--blm-rates", default="0.15")
    parser.add_argument("--weightings", default="spacy_msnr.softmax_share.v1,spacy_msnr.inverse_frequency.v1")
    parser.add_argument("--signal", default="term_acc")
    parser.add_argument("--adapt-lr", type=float, default=1e-4, help="the ablation's --adapt-lr")
    parser.add_argument("--adapt-batch", type=int, default=2048, help="the ablation's --adapt-batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "mslm_search_validation")
    parser.add_argument("--results-name", required=True)
    parser.add_argument("--machine", default="the 2-core, 24 GiB CPU workplace machine, no GPU")
    parser.add_argument("--label", default="", help="what the ablation files are, shown beside the dataset")
    args = parser.parse_args()
    if (args.project is None) == (args.rejudge is None):
        parser.error("give exactly one of --project (run the search) and --rejudge (judge an earlier one again)")
    args.work = args.work / args.dataset

    cells = read_cells(args.ablation)
    command = "python benchmarks/mslm_search_validation.py " + " ".join(sys.argv[1:])
    results = {"dataset": args.dataset, "label": args.label, "signal": args.signal, "machine": args.machine,
               "threads": os.environ.get("OMP_NUM_THREADS", "unset"), "command": command,
               "ablation": [path.name for path in args.ablation]}
    if args.rejudge is not None:
        earlier = json.loads(args.rejudge.read_text(encoding="utf8"))
        if earlier["dataset"] != args.dataset:
            parser.error(f"{args.rejudge}: its search is on {earlier['dataset']}, not {args.dataset}")
        # the search's own facts stay the earlier run's; only the judging is new
        results.update(signal=earlier["signal"], machine=earlier["machine"], threads=earlier.get("threads", "unset"),
                       search_command=earlier.get("search_command", earlier["command"]))
        records = [(run["steps"], record_from_run(run)) for run in earlier["runs"]]
    else:
        records = [(steps, run_search(args, steps)) for steps in args.steps]
    results["runs"] = [{"steps": steps, **judge(record, cells, args.dataset, ablation_row_name)}
                       for steps, record in records]
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(RESULTS / f"{args.results_name}.json", (json.dumps(results, indent=2) + "\n").encode("utf8"))
    text = render(results)
    atomic_write_bytes(RESULTS / f"{args.results_name}.md", text.encode("utf8"))
    print(text)


if __name__ == "__main__":
    main()
