"""Does MSLM help? One base model, equal adaptation budget, five adaptations, the same NER pipeline.

    python benchmarks/mslm_ablation.py [--base DIR] [--datasets NCBI-disease-IOB BC5CDR-IOB]
        [--seeds 0 1 2] [--adapt-steps 30] [--ner-steps 100] [--train-limit 500] [--test-limit 300]

For each seed and dataset, the base masked LM is adapted on the dataset's training split with
(a) nothing, (b) uniform MLM, (c) span masking, (d) PMI masking, (e) MSLM, each for the same
number of optimizer steps on the same batches; then `python -m spacy train configs/ner_trf.cfg`
trains transformer+ner on each adapted model and `spacy evaluate` scores the test split. DS-term
sensitivity (probability / top-1 of the gold wordpiece at masked DS-terms and generic words) is
measured on the test split with identical masks for every model. Prints mean ± std over seeds
per dataset, and MSLM minus each baseline paired by seed, as a table; writes it (.md) and a PNG
to --results. Finished cells are cached in one results JSON a dataset under --work (default
benchmarks/work/mslm_ablation), so an interrupted run continues where it stopped, and two
datasets can run side by side, one process a core, once the base exists (build it first, or
give --base; the two processes would otherwise both build it):

    OMP_NUM_THREADS=1 python benchmarks/mslm_ablation.py --datasets NCBI-disease-IOB ... &
    OMP_NUM_THREADS=1 python benchmarks/mslm_ablation.py --datasets BC5CDR-IOB ... &
    python benchmarks/mslm_ablation.py --datasets NCBI-disease-IOB BC5CDR-IOB ... --report-only

Cells of one dataset can also run side by side, each process with its own --work folder (a
seed or a method each); `--merge FOLDER ...` then reads the cells those folders finished (same
base and budgets) into this run's table and results JSON.
`--elm-rate`, `--blm-rate` and `--weighting` run MSLM with another setting, as its own row (e.g.
`mslm-elm1-blm0.15`) and its differences to every other row, MSLM with the defaults included.

Without --base, a small BERT (--base-layers x 256, 8000 pieces) is pretrained with uniform MLM
on the PubMed abstracts for --base-steps steps (at most --base-seconds) and cached; its own MLM
loss is printed beside the table. See ../shared/docs/CALIBRATION.md: small CPU budgets teach
such a base little, so differences between adaptations at CPU budgets are mostly noise. Use a
real checkpoint (--base) and larger budgets, or a GPU (--gpu-id 0), for conclusions.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from spacy_msnr.mslm.search import MASKER, PAPER_SETTING, ablation_row_name  # noqa: E402
from spacy_msnr.util import atomic_write_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MSNR_SHARED_DATA", ROOT.parent / "shared" / "data"))

#: Each adaptation: (masker block, weighting) for configs/mslm.cfg; None = no adaptation.
METHODS: Dict[str, object] = {
    "none": None,
    "uniform": ({"@msnr_maskers": "spacy_msnr.uniform.v1", "rate": 0.15, "replacement": "bert"}, "spacy_msnr.unweighted.v1"),
    "span": ({"@msnr_maskers": "spacy_msnr.span.v1", "rate": 0.15, "min_length": 1, "max_length": 5, "replacement": "bert"}, "spacy_msnr.unweighted.v1"),
    "pmi": ({"@msnr_maskers": "spacy_msnr.pmi_ngram.v1", "rate": 0.15, "max_n": 3, "replacement": "bert"}, "spacy_msnr.unweighted.v1"),
    "mslm": ({"@msnr_maskers": MASKER, "elm_rate": PAPER_SETTING.elm_rate, "blm_rate": PAPER_SETTING.blm_rate, "replacement": "mask"},
             PAPER_SETTING.weighting),
}
#: The MSLM masker every model's DS-term sensitivity is measured with (identical test masks).
SENSITIVITY_MASKER = dict(METHODS["mslm"][0])
#: The MSLM setting of the "mslm" row; --elm-rate/--blm-rate/--weighting name a variant row beside it.
MSLM_DEFAULTS = {"elm_rate": SENSITIVITY_MASKER["elm_rate"], "blm_rate": SENSITIVITY_MASKER["blm_rate"], "weighting": METHODS["mslm"][1]}
#: spaCy's CNN ner (no transformer) trained for the same steps: the peer beside every NER figure.
PEER = "spacy_cnn"
#: Reported per dataset: test entity F1; probability and top-1 of the gold wordpiece at masked DS-terms; top-1 at generic words.
METRICS = ("f1", "term_prob", "term_acc", "generic_acc")
METRIC_NAMES = {"f1": "F1", "term_prob": "term p", "term_acc": "term top-1", "generic_acc": "generic top-1"}
DIGITS = {"f1": 2, "term_prob": 3, "term_acc": 2, "generic_acc": 2}


def add_mslm_variant(elm_rate: float, blm_rate: float, weighting: str) -> str:
    """Add an MSLM row with other ELM/BLM rates or another weighting to METHODS and return its
    name (`ablation_row_name`), which also names its cells and cached models ("mslm" for the default setting)."""
    name = ablation_row_name(elm_rate, blm_rate, weighting)
    if name == "mslm":
        return name
    METHODS[name] = ({**METHODS["mslm"][0], "elm_rate": elm_rate, "blm_rate": blm_rate}, weighting)
    return name


def run(cmd: List[str], log: Path, timeout: Optional[float] = None) -> bool:
    """Run a command, its output to `log`; raise with the log's tail if it fails. Returns False
    when it was stopped after `timeout` seconds."""
    with log.open("w", encoding="utf8") as f:
        try:
            result = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                                    timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
    if result.returncode:
        tail = "".join(log.read_text(encoding="utf8").splitlines(True)[-25:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (log {log}):\n{tail}")
    return True


def trained_steps(log: Path) -> Dict[str, int]:
    """The last step and the best-scoring step in a `spacy train` log (its console table)."""
    rows = []
    for line in log.read_text(encoding="utf8").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and parts[1].isdigit():
            try:
                rows.append((int(parts[1]), float(parts[-1])))
            except ValueError:
                continue
    if not rows:
        return {"steps": 0, "best_step": 0}
    return {"steps": rows[-1][0], "best_step": max(rows, key=lambda r: r[1])[0]}


def make_corpus(work: Path, dataset: str, train_limit: int, test_limit: int, fraction: float = 1.0, sample_seed: int = 0) -> Path:
    """DocBins of the dataset's splits (first N sentences), cached under work/corpus/<dataset>.
    With `fraction` < 1, train.spacy keeps a seeded random sample of that share of the training
    sentences (the labelled ones: NER trains on them, MSLM takes its DS-terms from them) and
    unlabeled.spacy the rest with their entities removed (text a user with few labels also has,
    adapted on beside them); the sample depends on `sample_seed` only, so every row and seed sees
    the same labelled sentences."""
    import random

    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    from spacy_msnr.corpus.iob import iob_to_docs

    sampled = f"-f{fraction:g}-ss{sample_seed}" if fraction < 1 else ""
    out = work / "corpus" / f"{dataset}-{train_limit}-{test_limit}{sampled}"
    if (out / "test.spacy").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    vocab = Vocab()
    for split, name, limit in (("train", "train", train_limit), ("devel", "dev", test_limit), ("test", "test", test_limit)):
        docs = iob_to_docs(DATA / "blurb" / dataset / f"{split}.tsv", vocab)
        docs = docs[:limit] if limit else docs
        if name == "train" and fraction < 1:
            keep = set(random.Random(sample_seed).sample(range(len(docs)), max(1, round(fraction * len(docs)))))
            rest = [doc for i, doc in enumerate(docs) if i not in keep]
            for doc in rest:
                doc.ents = []
            DocBin(docs=rest).to_disk(out / "unlabeled.spacy")
            docs = [doc for i, doc in enumerate(docs) if i in keep]
        DocBin(docs=docs).to_disk(out / f"{name}.spacy")
    return out


def make_base(work: Path, args: argparse.Namespace) -> Path:
    """The cached uniform-MLM base (built by `python -m spacy_msnr init-base` on PubMed abstracts)."""
    base = work / base_name(args)
    if not (base / "config.json").exists():
        print(f"building the base model ({args.base_steps} MLM steps on PubMed abstracts) ...", flush=True)
        run([sys.executable, "-m", "spacy_msnr", "init-base", str(base), str(DATA / "pubmed" / "abstracts.jsonl"),
             "--layers", str(args.base_layers), "--batch-size", str(args.base_batch_size), "--learning-rate", str(args.base_lr),
             "--max-steps", str(args.base_steps), "--max-seconds", str(args.base_seconds), "--gpu-id", str(args.gpu_id),
             "--resume"], work / "base.log")
    return base


def with_mlm_head(work: Path, base: Path, args: argparse.Namespace) -> Path:
    """`base` itself when it has a masked-LM head; an encoder saved without one (a plain
    `BertModel` such as all-MiniLM-L6-v2) is saved once with a new head tied to its word
    embeddings, warmed up for --base-warmup-steps head-only steps on the PubMed abstracts."""
    config = json.loads((base / "config.json").read_text())
    if any(a.endswith("ForMaskedLM") for a in config.get("architectures") or []):
        return base
    out = work / f"{base_tag(base)}-mlm-w{args.base_warmup_steps}"
    if not (out / "config.json").exists():
        print(f"adding an MLM head to {base} ({args.base_warmup_steps} head-only warm-up steps) ...", flush=True)
        run([sys.executable, "-m", "spacy_msnr", "init-base", str(out), str(DATA / "pubmed" / "abstracts.jsonl"),
             "--use-model", str(base), "--warmup-steps", str(args.base_warmup_steps)], work / "base-head.log")
    return out


def base_name(args: argparse.Namespace) -> str:
    """The cache folder of the built base: one per shape and budget."""
    return f"base-l{args.base_layers}-b{args.base_batch_size}-lr{args.base_lr}-s{args.base_steps}-t{args.base_seconds:g}"


def base_tag(base: Path) -> str:
    """Names the base in cache keys: its folder name and a hash of its path (two checkpoints
    in folders of the same name never share cells)."""
    return f"{base.name}-{hashlib.sha1(str(base.resolve()).encode()).hexdigest()[:6]}"


def adapt(work: Path, base: Path, corpus: Path, method: str, seed: int, args: argparse.Namespace) -> Path:
    """Adapt `base` with `method` (or return it for "none")."""
    if METHODS[method] is None:
        return base
    masker, weighting = METHODS[method]
    # cached per base and adaptation budget, so a run with other settings never reuses it
    out = work / "adapted" / f"{base_tag(base)}-a{args.adapt_steps}x{args.adapt_batch}-lr{args.adapt_lr}" / f"{corpus.name}-{method}-s{seed}"
    if (out / "config.json").exists():
        return out
    from spacy_msnr.mslm.train import load_config, train

    unlabeled = corpus / "unlabeled.spacy"  # the unlabelled rest of a sampled training split
    config = load_config(ROOT / "configs" / "mslm.cfg", {
        "paths.train": str(corpus / "train.spacy"), "paths.base_model": str(base), "system.seed": seed,
        **({"paths.unlabeled": str(unlabeled)} if unlabeled.exists() else {}),
        "training.max_steps": args.adapt_steps, "training.eval_frequency": args.adapt_steps,
        "training.checkpoint_every": max(10, args.adapt_steps // 2), "training.optimizer.learn_rate": args.adapt_lr,
        "training.batch_size": args.adapt_batch, "model.precision": args.precision,
    })
    config["model"]["masker"] = dict(masker)
    config["model"]["weighting"] = {"@msnr_weightings": weighting}
    log = train(config, out, gpu_id=args.gpu_id, resume=True, show_progress=False)
    print(f"  adapted {out.name}: {log['steps']} steps, final loss {log['history'][-1]['loss']:.3f}, "
          f"{log['wordpieces_per_second']:.0f} wordpieces/s", flush=True)
    return out


def sensitivity(model_dir: Path, corpus: Path) -> Dict[str, float]:
    """DS-term sensitivity of `model_dir` on the test split (same masks for every model)."""
    from spacy.util import registry
    from spacy.vocab import Vocab
    from thinc.api import Config

    from spacy_msnr.mslm.metrics import ds_term_sensitivity
    from spacy_msnr.mslm.terms import GoldTerms
    from spacy_msnr.corpus.texts import read_docs
    from spacy_msnr.mslm.train import encode

    cfg = Config({"model": {"@architectures": "spacy_msnr.MaskSpecificMLM.v1", "name": str(model_dir),
                            "masker": SENSITIVITY_MASKER, "weighting": {"@msnr_weightings": "spacy_msnr.unweighted.v1"}}})
    model = registry.resolve(cfg)["model"]
    docs = read_docs(corpus / "test.spacy", Vocab())  # already cut to --test-limit by make_corpus
    return ds_term_sensitivity(model, encode(docs, model.attrs["tokenizer"], GoldTerms(), 128), seed=1234)


def ner(work: Path, model_dir: Optional[Path], corpus: Path, tag: str, seed: int, args: argparse.Namespace) -> Dict[str, float]:
    """Train transformer+ner on `model_dir` (or spaCy's CNN ner, the peer, when None) for
    --ner-steps steps and return the test P/R/F1 of the best model."""
    out = work / "ner" / tag
    metrics = out / "test_metrics.json"
    if not metrics.exists():
        common = ["--output", str(out), "--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy"),
                  "--training.max_steps", str(args.ner_steps), "--training.eval_frequency", str(max(10, args.ner_steps // 4)),
                  "--system.seed", str(seed), "--gpu-id", str(args.gpu_id)]
        if model_dir is None:
            config = work / "cnn.cfg"
            if not config.exists():
                from spacy.cli.init_config import init_config

                cnn = init_config(lang="en", pipeline=["ner"], optimize="efficiency", gpu=False)
                atomic_write_bytes(config, cnn.to_str().encode("utf8"))  # a process beside may read it
            cmd = [sys.executable, "-m", "spacy", "train", str(config)] + common
        else:
            cmd = [sys.executable, "-m", "spacy", "train", str(ROOT / "configs" / "ner_trf.cfg")] + common + [
                "--paths.base_model", str(model_dir), "--training.optimizer.learn_rate.warmup_steps", str(max(1, args.ner_steps // 10)),
                "--training.optimizer.learn_rate.initial_rate", str(args.ner_lr),
                "--components.transformer.model.precision", args.precision]
        log = work / "logs" / tag.replace("/", "_")
        train_log = log.with_name(f"ner-{log.name}.log")
        finished = run(cmd, train_log, timeout=args.ner_seconds or None)
        if not finished and not (out / "model-best").exists():
            raise RuntimeError(f"NER training stopped at --ner-seconds {args.ner_seconds} before its first evaluation (log {train_log})")
        run([sys.executable, "-m", "spacy", "evaluate", str(out / "model-best"), str(corpus / "test.spacy"),
             "--output", str(metrics), "--gpu-id", str(args.gpu_id)], log.with_name(f"eval-{log.name}.log"))
        steps = trained_steps(train_log)
        scores = json.loads(metrics.read_text())
        atomic_write_bytes(metrics, json.dumps({**scores, **steps, "stopped_at_time_limit": not finished}).encode("utf8"))
        for sub in ("model-best", "model-last"):  # keep the scores, not 5 x seeds copies of the weights
            shutil.rmtree(out / sub, ignore_errors=True)
    scores = json.loads(metrics.read_text())
    return {"p": 100 * scores["ents_p"], "r": 100 * scores["ents_r"], "f1": 100 * scores["ents_f"],
            "steps": scores.get("steps"), "best_step": scores.get("best_step"), "capped": scores.get("stopped_at_time_limit")}


def _cell(results: Dict[str, dict], dataset: str, method: str, seed: int, metric: str) -> float:
    entry = results[f"{dataset}/{method}/{seed}"]
    return entry["ner"]["f1"] if metric == "f1" else 100 * entry["sens"][metric]


def summarise(results: Dict[str, dict], datasets: List[str], seeds: List[int]) -> List[List[str]]:
    """One row a method and one for the peer: per dataset each of METRICS (mean ± std over seeds),
    then rows of MSLM (and of an MSLM variant) minus each baseline, paired by seed (same NER seed,
    same test masks); a variant's differences that never ran are left out."""
    rows = []
    for method in list(METHODS) + [PEER]:
        row = [f"{PEER} (peer)" if method == PEER else method]
        for dataset in datasets:
            for metric in METRICS:
                row.append(_mean_std([_cell(results, dataset, method, s, metric) for s in seeds if f"{dataset}/{method}/{s}" in results],
                                     digits=DIGITS[metric]))
        rows.append(row)
    for target in [m for m in METHODS if m.startswith("mslm")]:
        for method in [m for m in METHODS if m != target and (target != "mslm" or not m.startswith("mslm"))]:
            row, any_paired = [f"{target} - {method}"], False
            for dataset in datasets:
                paired = [s for s in seeds if f"{dataset}/{target}/{s}" in results and f"{dataset}/{method}/{s}" in results]
                any_paired = any_paired or bool(paired)
                for metric in METRICS:
                    row.append(_mean_std([_cell(results, dataset, target, s, metric) - _cell(results, dataset, method, s, metric) for s in paired],
                                         signed=True, digits=DIGITS[metric]))
            if any_paired or target == "mslm":
                rows.append(row)
    return rows


def _mean_std(values: List[float], signed: bool = False, digits: int = 2) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{'+' if signed else ''}.{digits}f} ± {spread:.{digits}f} (n={len(values)})"


def plot(results: Dict[str, dict], datasets: List[str], seeds: List[int], path: Path) -> None:
    """Bars of mean ± std over seeds: test F1 (top row), DS-term and generic top-1 (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def ran(name: str) -> bool:
        return any(f"{d}/{name}/{s}" in results for d in datasets for s in seeds)

    methods = [m for m in METHODS if ran(m)]  # rows never run get no (zero-height) bar
    labels = [m.replace("-", "\n") for m in methods]  # variant names on several lines
    peers = [PEER] if ran(PEER) else []
    fig, axes = plt.subplots(2, len(datasets), figsize=(4.8 * len(datasets), 6.4), squeeze=False)

    def stats(dataset: str, metric: str, names: List[str]):
        vals = [[_cell(results, dataset, m, s, metric) for s in seeds if f"{dataset}/{m}/{s}" in results] for m in names]
        return [statistics.mean(v) if v else 0 for v in vals], [statistics.stdev(v) if len(v) > 1 else 0 for v in vals]

    for col, dataset in enumerate(datasets):
        ax = axes[0][col]
        mean, std = stats(dataset, "f1", methods + peers)
        ax.bar(labels + [f"{p}\n(peer)" for p in peers], mean, yerr=std, capsize=4, color=["#4c72b0"] * len(methods) + ["#8c8c8c"] * len(peers))
        ax.set_title(f"{dataset}: test entity F1")
        ax.set_ylabel("F1 (%)")
        ax = axes[1][col]
        for offset, (metric, color) in enumerate((("term_acc", "#dd8452"), ("generic_acc", "#55a868"))):
            mean, std = stats(dataset, metric, methods)
            xs = [i + (offset - 0.5) * 0.38 for i in range(len(methods))]
            ax.bar(xs, mean, width=0.38, yerr=std, capsize=3, color=color, label=METRIC_NAMES[metric])
        ax.set_xticks(range(len(methods)), labels)
        ax.set_title(f"{dataset}: top-1 at masked positions (test)")
        ax.set_ylabel("%")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def save(results: Dict[str, dict], dataset: str, store: Path) -> None:
    """Write the dataset's finished cells (atomically: a crash never loses the file)."""
    mine = {k: v for k, v in results.items() if k.startswith(f"{dataset}/")}
    atomic_write_bytes(store, json.dumps(mine, indent=1).encode("utf8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, help="masked LM directory to adapt (default: build and cache a small one)")
    parser.add_argument("--base-steps", type=int, default=300, help="MLM steps for the built base")
    parser.add_argument("--base-seconds", type=float, default=300, help="wall-clock cap for building the base")
    parser.add_argument("--base-layers", type=int, default=4, help="transformer layers of the built base (256 wide)")
    parser.add_argument("--base-batch-size", type=int, default=16, help="sequences of 128 pieces a base pretraining step")
    parser.add_argument("--base-lr", type=float, default=5e-4, help="peak learning rate of base pretraining")
    parser.add_argument("--base-warmup-steps", type=int, default=100, help="head-only warm-up steps when --base has no MLM head")
    parser.add_argument("--datasets", nargs="+", default=["NCBI-disease-IOB", "BC5CDR-IOB"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"),
                        help="MSLM's and the transformer + ner's precision (the committed tables: fp32)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--adapt-steps", type=int, default=30, help="optimizer steps of every adaptation (the equal budget)")
    parser.add_argument("--adapt-batch", type=int, default=2048, help="wordpieces per adaptation step")
    parser.add_argument("--adapt-lr", type=float, default=1e-4)
    parser.add_argument("--elm-rate", type=float, default=MSLM_DEFAULTS["elm_rate"],
                        help="with --blm-rate/--weighting: other than the defaults, the mslm method runs as a variant row named for them")
    parser.add_argument("--blm-rate", type=float, default=MSLM_DEFAULTS["blm_rate"])
    parser.add_argument("--weighting", default=MSLM_DEFAULTS["weighting"], help="registered @msnr_weightings function of the MSLM loss")
    parser.add_argument("--ner-steps", type=int, default=100)
    parser.add_argument("--ner-lr", type=float, default=3e-4, help="peak learning rate of the transformer+ner runs")
    parser.add_argument("--ner-seconds", type=float, default=0,
                        help="wall-clock cap of each NER training (0: none); a capped run is scored at its best evaluation so far "
                             "and the steps it reached are kept with its scores")
    parser.add_argument("--train-limit", type=int, default=500, help="training sentences (0: all)")
    parser.add_argument("--train-fraction", type=float, default=1.0,
                        help="labelled share of the training sentences (a seeded sample; the rest is adapted on as unlabelled text)")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the --train-fraction sample (the same for every row and seed)")
    parser.add_argument("--test-limit", type=int, default=300, help="dev and test sentences (0: all)")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--no-peer", action="store_true", help=f"skip the {PEER} peer (spaCy's CNN ner, same steps)")
    parser.add_argument("--report-only", action="store_true", help="print the table of the cells finished so far")
    parser.add_argument("--merge", nargs="+", type=Path, default=[],
                        help="other --work folders whose finished cells (same base and budgets) join this run's")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "mslm_ablation")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "mslm")
    parser.add_argument("--machine", default="", help="How the machine ran, for the docs (default: cores and GPU)")
    args = parser.parse_args()
    import spacy_msnr.mslm.loss  # noqa: F401  (registers the weightings)
    from spacy_msnr.registry import weightings

    weightings.get(args.weighting)  # an unknown name fails here, listing the registered ones
    variant = add_mslm_variant(args.elm_rate, args.blm_rate, args.weighting)
    args.methods = [variant if m == "mslm" else m for m in args.methods]

    work = args.work
    (work / "logs").mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    base = args.base or (work / base_name(args) if args.report_only else make_base(work, args))
    if args.base and not args.report_only:
        base = with_mlm_head(work, args.base, args)
    base_info = base / "msnr_base.json"
    base_note = ""
    if base_info.exists():
        info = json.loads(base_info.read_text())
        if "source" in info:  # a saved checkpoint (`base --use-model`), perhaps given a new MLM head
            warm = info.get("head_warmup")
            if not info.get("new_head_parameters"):
                head = "its own MLM head"
            elif warm:
                head = (f"new MLM head warmed up alone for {warm['steps']} steps: "
                        f"held-out MLM loss {warm['mlm_loss_before']} -> {warm['mlm_loss_after']}")
            else:
                head = "new MLM head, not warmed up"
            base_note = f"({info['source']}, {info.get('parameters', 0):,} params; {head})"
        else:
            base_note = (f"({info.get('num_layers')}x{info.get('hidden_size')} {info.get('family')}, {info.get('parameters', 0):,} params, "
                         f"{info.get('objective', 'mlm')} loss {info.get('initial_loss')} -> {info.get('final_loss')} after {info.get('steps')} steps "
                         f"on {info.get('train_tokens', 0):,} tokens)")
        print(f"base: {base} {base_note}", flush=True)
    budget = (f"{base_tag(base)}-a{args.adapt_steps}x{args.adapt_batch}-lr{args.adapt_lr}-n{args.ner_steps}"
              + (f"-nlr{args.ner_lr:g}" if args.ner_lr != 3e-4 else "")
              + (f"-ns{args.ner_seconds:g}" if args.ner_seconds else "")
              + f"-t{args.train_limit}-e{args.test_limit}"
              + (f"-f{args.train_fraction:g}-ss{args.sample_seed}" if args.train_fraction < 1 else ""))
    # One results file a dataset, so runs on different datasets can go side by side (one per core).
    stores = {d: work / f"results-{budget}-{d}.json" for d in args.datasets}
    results: Dict[str, dict] = {}
    for dataset, store in stores.items():
        for path in [other / store.name for other in args.merge] + [store]:
            if path.exists():
                results.update(json.loads(path.read_text()))
        if args.merge:
            save(results, dataset, store)
    for seed in [] if args.report_only else args.seeds:
        for dataset in args.datasets:
            corpus = make_corpus(work, dataset, args.train_limit, args.test_limit, args.train_fraction, args.sample_seed)
            for method in args.methods:
                key = f"{dataset}/{method}/{seed}"
                if key in results:
                    continue
                model_dir = adapt(work, base, corpus, method, seed, args)
                sens = sensitivity(model_dir, corpus)
                scores = ner(work, model_dir, corpus, f"{budget}/{corpus.name}-{method}-s{seed}", seed, args)
                results[key] = {"ner": scores, "sens": sens}
                save(results, dataset, stores[dataset])
                print(f"{key}: F1 {scores['f1']:.2f} (NER step {scores['steps']}, best {scores['best_step']}) | term acc {100 * sens['term_acc']:.2f} | term prob {100 * sens['term_prob']:.3f}"
                      f" | generic acc {100 * sens['generic_acc']:.2f}", flush=True)
            key = f"{dataset}/{PEER}/{seed}"
            if not args.no_peer and key not in results:
                scores = ner(work, None, corpus, f"{budget}/{corpus.name}-{PEER}-s{seed}", seed, args)
                results[key] = {"ner": scores, "sens": {m: float("nan") for m in METRICS if m != "f1"}}
                save(results, dataset, stores[dataset])
                print(f"{key}: F1 {scores['f1']:.2f}", flush=True)
    from wasabi import table

    header = ["adaptation"] + [f"{d.replace('-IOB', '')} {METRIC_NAMES[m]}" for d in args.datasets for m in METRICS]
    text = table(summarise(results, args.datasets, args.seeds), header=header, divider=True, max_col=60)
    budget_text = (f"adapt {args.adapt_steps} steps x {args.adapt_batch} wordpieces (lr {args.adapt_lr}), NER {args.ner_steps} steps (lr {args.ner_lr}), "
                   f"{args.train_limit or 'all'} train / {args.test_limit or 'all'} dev+test sentences"
                   + (f", {args.train_fraction:.0%} of the train sentences labelled (sample seed {args.sample_seed}), the rest adapted on unlabelled"
                      if args.train_fraction < 1 else "")
                   + (f", NER capped at {args.ner_seconds:g} s a run (scored at its best evaluation; steps reached in the results JSON)" if args.ner_seconds else ""))
    variant_text = f"MSLM with ELM rate {args.elm_rate:g}, BLM rate {args.blm_rate:g}, weighting {args.weighting}" if variant != "mslm" else ""
    note = (f"\nmean ± std over seeds {args.seeds} (n = seeds finished), in %; 'mslm - X' rows: per-seed differences (same NER seed, same test masks)."
            f"\nbudget: {budget_text}" + (f"\n{variant}: {variant_text}" if variant_text else "") + f"\nbase: {base} {base_note}\n")
    print(text + note)
    (args.results / f"mslm_ablation-{budget}.md").write_text(text + note, encoding="utf8")
    # What the docs read (benchmarks/docgen/mslm.py): the cells, and the run's facts under "run".
    run = {"dataset": " and ".join(d.replace("-IOB", "") for d in args.datasets), "budget": budget_text, "base": base_note.strip("()"),
           "seeds": f"seeds {args.seeds}", **({"variant": variant_text} if variant_text else {}),
           "machine": args.machine or f"a {os.cpu_count()}-core machine, {'GPU ' + str(args.gpu_id) if args.gpu_id >= 0 else 'no GPU'}",
           "threads": f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"}
    atomic_write_bytes(args.results / f"mslm_ablation-{budget}.json", json.dumps({"run": run, **results}, indent=1).encode("utf8"))
    try:
        plot(results, args.datasets, args.seeds, args.results / f"mslm_ablation-{budget}.png")
        print(f"plot: {args.results / f'mslm_ablation-{budget}.png'}")
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no plot")


if __name__ == "__main__":
    main()
