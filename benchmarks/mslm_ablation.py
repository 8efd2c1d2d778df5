"""Does MSLM help? One base model, equal adaptation budget, five adaptations, the same NER pipeline.

    python benchmarks/mslm_ablation.py [--base DIR] [--datasets NCBI-disease-IOB BC5CDR-IOB]
        [--seeds 0 1 2] [--adapt-steps 30] [--ner-steps 100] [--train-limit 500] [--test-limit 300]

For each dataset and seed, the base masked LM is adapted on the dataset's training split with
(a) nothing, (b) uniform MLM, (c) span masking, (d) PMI masking, (e) MSLM, each for the same
number of optimizer steps on the same batches; then `python -m spacy train configs/ner_trf.cfg`
trains transformer+ner on each adapted model and `spacy evaluate` scores the test split. DS-term
sensitivity (probability / top-1 of the gold wordpiece at masked DS-terms and generic words) is
measured on the test split with identical masks for every model. Prints mean +- std over seeds
as a table, writes results JSON and a PNG under --work (default benchmarks/work/mslm_ablation).
Finished cells are cached in the results JSON, so an interrupted run continues where it stopped.

Without --base, a small BERT (4x256, 8000 pieces) is pretrained with uniform MLM on the PubMed
abstracts for --base-steps steps and cached; its own MLM loss is printed beside the table. See
../shared/docs/CALIBRATION.md: small CPU budgets teach such a base little, so differences
between adaptations at smoke-test budgets are mostly noise. Use a real checkpoint (--base) and
larger budgets, or a GPU (--gpu-id 0), for conclusions.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MSNR_SHARED_DATA", ROOT.parent / "shared" / "data"))

#: Each adaptation: (masker block, weighting) for configs/mslm.cfg; None = no adaptation.
METHODS: Dict[str, object] = {
    "none": None,
    "uniform": ({"@msnr_maskers": "spacy_msnr.uniform.v1", "rate": 0.15, "replacement": "bert"}, "spacy_msnr.unweighted.v1"),
    "span": ({"@msnr_maskers": "spacy_msnr.span.v1", "rate": 0.15, "min_length": 1, "max_length": 5, "replacement": "bert"}, "spacy_msnr.unweighted.v1"),
    "pmi": ({"@msnr_maskers": "spacy_msnr.pmi_ngram.v1", "rate": 0.15, "max_n": 3, "replacement": "bert"}, "spacy_msnr.unweighted.v1"),
    "mslm": ({"@msnr_maskers": "spacy_msnr.mask_specific.v1", "elm_rate": 0.5, "blm_rate": 0.15, "replacement": "mask"}, "spacy_msnr.softmax_share.v1"),
}


def run(cmd: List[str], log: Path) -> None:
    """Run a command, its output to `log`; raise with the log's tail if it fails."""
    with log.open("w", encoding="utf8") as f:
        result = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if result.returncode:
        tail = "".join(log.read_text(encoding="utf8").splitlines(True)[-25:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (log {log}):\n{tail}")


def make_corpus(work: Path, dataset: str, train_limit: int, test_limit: int) -> Path:
    """DocBins of the dataset's splits (first N sentences), cached under work/corpus/<dataset>."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    from spacy_msnr.corpus.iob import iob_to_docs

    out = work / "corpus" / f"{dataset}-{train_limit}-{test_limit}"
    if (out / "test.spacy").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    vocab = Vocab()
    for split, name, limit in (("train", "train", train_limit), ("devel", "dev", test_limit), ("test", "test", test_limit)):
        docs = iob_to_docs(DATA / "blurb" / dataset / f"{split}.tsv", vocab)
        DocBin(docs=docs[:limit] if limit else docs).to_disk(out / f"{name}.spacy")
    return out


def make_base(work: Path, args: argparse.Namespace) -> Path:
    """The cached uniform-MLM base (built by `python -m spacy_msnr base` on PubMed abstracts)."""
    base = work / f"base-{args.base_steps}"
    if not (base / "config.json").exists():
        print(f"building the base model ({args.base_steps} MLM steps on PubMed abstracts) ...", flush=True)
        run([sys.executable, "-m", "spacy_msnr", "base", str(base), str(DATA / "pubmed" / "abstracts.jsonl"),
             "--max-steps", str(args.base_steps), "--max-seconds", str(args.base_seconds), "--gpu-id", str(args.gpu_id),
             "--resume"], work / "base.log")
    return base


def adapt(work: Path, base: Path, corpus: Path, method: str, seed: int, args: argparse.Namespace) -> Path:
    """Adapt `base` with `method` (or return it for "none")."""
    if METHODS[method] is None:
        return base
    masker, weighting = METHODS[method]
    out = work / "adapted" / f"{corpus.name}-{method}-s{seed}"
    if (out / "config.json").exists():
        return out
    from spacy_msnr.mslm.train import load_config, train

    config = load_config(ROOT / "configs" / "mslm.cfg", {
        "paths.train": str(corpus / "train.spacy"), "paths.base_model": str(base), "system.seed": seed,
        "training.max_steps": args.adapt_steps, "training.eval_frequency": args.adapt_steps,
        "training.checkpoint_every": max(10, args.adapt_steps // 2), "training.optimizer.learn_rate": args.adapt_lr,
        "training.batch_size": args.adapt_batch,
    })
    config["model"]["masker"] = dict(masker)
    config["model"]["weighting"] = {"@msnr_weightings": weighting}
    log = train(config, out, gpu_id=args.gpu_id, resume=True, show_progress=False)
    print(f"  adapted {out.name}: {log['steps']} steps, final loss {log['history'][-1]['loss']:.3f}, "
          f"{log['wordpieces_per_second']:.0f} wordpieces/s", flush=True)
    return out


def sensitivity(model_dir: Path, corpus: Path, limit: int) -> Dict[str, float]:
    """DS-term sensitivity of `model_dir` on the test split (same masks for every model)."""
    from spacy.util import registry
    from spacy.vocab import Vocab
    from thinc.api import Config

    from spacy_msnr.mslm.metrics import ds_term_sensitivity
    from spacy_msnr.mslm.terms import GoldTerms
    from spacy_msnr.mslm.train import encode, read_docs

    cfg = Config({"model": {"@architectures": "spacy_msnr.MaskSpecificMLM.v1", "name": str(model_dir),
                            "masker": METHODS["mslm"][0], "weighting": {"@msnr_weightings": "spacy_msnr.unweighted.v1"}}})
    model = registry.resolve(cfg)["model"]
    docs = read_docs(corpus / "test.spacy", Vocab())[:limit]
    return ds_term_sensitivity(model, encode(docs, model.attrs["tokenizer"], GoldTerms(), 128), seed=1234)


def ner(work: Path, model_dir: Path, corpus: Path, tag: str, seed: int, args: argparse.Namespace) -> Dict[str, float]:
    """Train transformer+ner on `model_dir` and return the test P/R/F1 of the best model."""
    out = work / "ner" / tag
    metrics = out / "test_metrics.json"
    if not metrics.exists():
        cmd = [sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / "ner_trf.cfg"), "--output", str(out),
               "--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy"),
               "--paths.base_model", str(model_dir), "--training.max_steps", str(args.ner_steps),
               "--training.eval_frequency", str(max(10, args.ner_steps // 4)), "--system.seed", str(seed),
               "--training.optimizer.learn_rate.warmup_steps", str(max(1, args.ner_steps // 10)), "--gpu-id", str(args.gpu_id)]
        run(cmd, work / "logs" / f"ner-{tag}.log")
        run([sys.executable, "-m", "spacy", "evaluate", str(out / "model-best"), str(corpus / "test.spacy"),
             "--output", str(metrics), "--gpu-id", str(args.gpu_id)], work / "logs" / f"eval-{tag}.log")
        for sub in ("model-best", "model-last"):  # keep the scores, not 5 x seeds copies of the weights
            import shutil

            shutil.rmtree(out / sub, ignore_errors=True)
    scores = json.loads(metrics.read_text())
    return {"p": 100 * scores["ents_p"], "r": 100 * scores["ents_r"], "f1": 100 * scores["ents_f"]}


def summarise(results: Dict[str, dict], datasets: List[str], seeds: List[int]) -> List[List[str]]:
    rows = []
    for method in METHODS:
        row = [method]
        for dataset in datasets:
            f1 = [results[k]["ner"]["f1"] for k in (f"{dataset}/{method}/{s}" for s in seeds) if k in results]
            row.append(_mean_std(f1))
        for key in ("term_prob", "term_acc", "generic_acc"):
            vals = [results[k]["sens"][key] for d in datasets for k in (f"{d}/{method}/{s}" for s in seeds) if k in results]
            row.append(_mean_std(vals, scale=100))
        rows.append(row)
    return rows


def _mean_std(values: List[float], scale: float = 1.0) -> str:
    values = [v * scale for v in values if not math.isnan(v)]
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f} (n={len(values)})"


def plot(results: Dict[str, dict], datasets: List[str], seeds: List[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets) + 1, figsize=(4.5 * (len(datasets) + 1), 3.6))
    methods = list(METHODS)
    for ax, dataset in zip(axes, datasets):
        vals = [[results[f"{dataset}/{m}/{s}"]["ner"]["f1"] for s in seeds if f"{dataset}/{m}/{s}" in results] for m in methods]
        ax.bar(methods, [statistics.mean(v) if v else 0 for v in vals],
               yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in vals], capsize=4, color="#4c72b0")
        ax.set_title(f"{dataset}: test F1")
        ax.set_ylabel("entity F1 (%)")
    ax = axes[-1]
    for offset, (key, color) in enumerate((("term_acc", "#dd8452"), ("generic_acc", "#55a868"))):
        vals = [[100 * results[f"{d}/{m}/{s}"]["sens"][key] for d in datasets for s in seeds if f"{d}/{m}/{s}" in results] for m in methods]
        xs = [i + (offset - 0.5) * 0.38 for i in range(len(methods))]
        ax.bar(xs, [statistics.mean(v) if v else 0 for v in vals], width=0.38, label=key.replace("_", " "),
               yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in vals], capsize=3, color=color)
    ax.set_xticks(range(len(methods)), methods)
    ax.set_title("top-1 at masked positions (test)")
    ax.set_ylabel("%")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, help="masked LM directory to adapt (default: build and cache a small one)")
    parser.add_argument("--base-steps", type=int, default=300, help="MLM steps for the built base")
    parser.add_argument("--base-seconds", type=float, default=300, help="wall-clock cap for building the base")
    parser.add_argument("--datasets", nargs="+", default=["NCBI-disease-IOB", "BC5CDR-IOB"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--adapt-steps", type=int, default=30, help="optimizer steps of every adaptation (the equal budget)")
    parser.add_argument("--adapt-batch", type=int, default=2048, help="wordpieces per adaptation step")
    parser.add_argument("--adapt-lr", type=float, default=1e-4)
    parser.add_argument("--ner-steps", type=int, default=100)
    parser.add_argument("--train-limit", type=int, default=500, help="training sentences (0: all)")
    parser.add_argument("--test-limit", type=int, default=300, help="dev and test sentences (0: all)")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--report-only", action="store_true", help="print the table of the cells finished so far")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "mslm_ablation")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    work = args.work
    (work / "logs").mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    budget = f"a{args.adapt_steps}-n{args.ner_steps}-t{args.train_limit}"
    store = work / f"results-{budget}.json"
    results: Dict[str, dict] = json.loads(store.read_text()) if store.exists() else {}
    base = args.base or (work / f"base-{args.base_steps}" if args.report_only else make_base(work, args))
    base_info = base / "msnr_base.json"
    if base_info.exists():
        info = json.loads(base_info.read_text())
        print(f"base: {base} | {info.get('objective', 'mlm')} loss {info.get('final_loss')} after {info.get('steps')} steps", flush=True)
    for dataset in [] if args.report_only else args.datasets:
        corpus = make_corpus(work, dataset, args.train_limit, args.test_limit)
        for seed in args.seeds:
            for method in args.methods:
                key = f"{dataset}/{method}/{seed}"
                if key in results or args.report_only:
                    continue
                model_dir = adapt(work, base, corpus, method, seed, args)
                sens = sensitivity(model_dir, corpus, args.test_limit)
                scores = ner(work, model_dir, corpus, f"{corpus.name}-{method}-s{seed}", seed, args)
                results[key] = {"ner": scores, "sens": sens}
                store.write_text(json.dumps(results, indent=1))
                print(f"{key}: F1 {scores['f1']:.2f} | term acc {100 * sens['term_acc']:.2f} | term prob {100 * sens['term_prob']:.3f}"
                      f" | generic acc {100 * sens['generic_acc']:.2f}", flush=True)
    from wasabi import table

    header = ["adaptation"] + [f"{d} test F1" for d in args.datasets] + ["DS-term prob %", "DS-term top-1 %", "generic top-1 %"]
    text = table(summarise(results, args.datasets, args.seeds), header=header, divider=True)
    note = (f"\nbudget: adapt {args.adapt_steps} steps x {args.adapt_batch} wordpieces, NER {args.ner_steps} steps, "
            f"{args.train_limit or 'all'} train / {args.test_limit or 'all'} test sentences, seeds {args.seeds}, base {base}\n")
    print(text + note)
    (args.results / f"mslm_ablation-{budget}.md").write_text(text + note, encoding="utf8")
    try:
        plot(results, args.datasets, args.seeds, args.results / f"mslm_ablation-{budget}.png")
        print(f"plot: {args.results / f'mslm_ablation-{budget}.png'}")
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no plot")


if __name__ == "__main__":
    main()
