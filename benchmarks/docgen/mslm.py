"""Tables of docs/mslm.md: the MSLM ablations, learning curve, search validation, head warm-up, throughput."""
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from .sources import RESULTS, result, Sources, SourceError
from .format import mean_std, note, signed, source_link, table
from .blocks import block
from .project import read_config



# MSLM ablations -------------------------------------------------------------------------------------
ABLATION_FILES = (
    "mslm_ablation_minilm_ncbi.json", "mslm_ablation_minilm_ncbi_elm1.json", "mslm_ablation_minilm_ncbi_invfreq.json",
    "mslm_ablation_minilm_ncbi_elm1_invfreq.json", "mslm_ablation_minilm_ncbi_span_pmi.json",
    "mslm_ablation_minilm_ncbi_none.json",
    "mslm_ablation_minilm_bc5cdr.json", "mslm_ablation_minilm_bc5cdr_elm1.json", "mslm_ablation_minilm_bc5cdr_invfreq.json",
    "mslm_ablation_minilm_bc5cdr_elm1_invfreq.json", "mslm_ablation_minilm_bc5cdr_span_pmi.json",
    "mslm_ablation_minilm_bc5cdr_elm1_seeded.json",
    "mslm_ablation_minilm_bc5cdr_none.json",
)
DATASETS = {"NCBI-disease-IOB": "NCBI-disease", "BC5CDR-IOB": "BC5CDR"}
#: Row names of the ablation's methods (its result keys), in table order; MSLM variants after them.
BASELINES = {
    "none": "no adaptation (the warmed base)",
    "uniform": "uniform MLM",
    "span": "span masking",
    "pmi": "PMI n-gram masking",
    "mslm": "MSLM, the paper's setting (ELM rate 0.5, BLM rate 0.15, softmax-share weighting)",
}


def method_label(method: str) -> str:
    """A row name: the baselines by name, a variant from its key (mslm-elm<rate>-blm<rate>[-<weighting>])."""
    if method in BASELINES:
        return BASELINES[method]
    match = re.fullmatch(r"mslm-elm([\d.]+)-blm([\d.]+)(?:-(\w+))?", method)
    if not match:
        raise SourceError(f"unknown ablation method {method!r}")
    elm, blm, weighting = match.groups()
    return f"MSLM, ELM rate {elm}, BLM rate {blm}" + (f", {weighting.replace('_', '-')} weighting" if weighting else "")


def methods_of(cells) -> List[str]:
    found = {method for _, method, _ in cells}
    return [m for m in BASELINES if m in found] + sorted(found - set(BASELINES))
METRICS = {"f1": ("F1", lambda c: c["ner"]["f1"]), "term": ("term top-1", lambda c: 100 * c["sens"]["term_acc"]),
           "generic": ("generic top-1", lambda c: 100 * c["sens"]["generic_acc"])}


def _cells(src: Sources, files: Sequence[str]) -> Dict[Tuple[str, str, int], Dict[str, Any]]:
    """(dataset, method, seed) -> cell, merged over result files (the same cell in two files is one run)."""
    cells = {}
    for name in files:
        for key, value in src.json(result(f"{name}")).items():
            if key == "run":  # what the run was (budget, base, machine), not a cell
                continue
            dataset, method, seed = key.rsplit("/", 2)
            cells[(dataset, method, int(seed))] = value
    return cells


def _seeds(cells) -> List[int]:
    return sorted({seed for _, _, seed in cells})


def _ablation_table(cells, datasets: Sequence[str], metrics: Sequence[str], methods: Sequence[str], versus: str) -> str:
    """Rows per method, then each MSLM row minus `versus` and minus each other baseline that ran
    (no adaptation, span, PMI), paired by seed."""
    text = _ablation_rows(cells, datasets, metrics, methods, versus)
    ran = {m for _, m, _ in cells}
    for other in ("none", "span", "pmi"):
        if other != versus and other in ran:
            text += "\n" + _ablation_rows(cells, datasets, metrics, methods, other, differences_only=True)
    return text


def _ablation_rows(cells, datasets: Sequence[str], metrics: Sequence[str], methods: Sequence[str], versus: str,
                   differences_only: bool = False) -> str:
    seeds = _seeds(cells)
    header = ["adaptation"] + [f"{DATASETS[d]} {METRICS[m][0]}" for d in datasets for m in metrics]
    rows = []
    for method in [] if differences_only else methods:
        row = [method_label(method)]
        for d in datasets:
            for m in metrics:
                values = [METRICS[m][1](cells[(d, method, s)]) for s in seeds if (d, method, s) in cells]
                row.append(mean_std(values, of=len(seeds)) if values else "not run")
        rows.append(row)
    for method in methods:
        if method == versus or not method.startswith("mslm"):
            continue
        row = [f"**{method_label(method).split(' (')[0]} − {method_label(versus)}** (paired by seed)"]
        for d in datasets:
            for m in metrics:
                paired = [s for s in seeds if (d, method, s) in cells and (d, versus, s) in cells]
                diffs = [METRICS[m][1](cells[(d, method, s)]) - METRICS[m][1](cells[(d, versus, s)]) for s in paired]
                text = mean_std(diffs, signed=True, of=len(seeds)) if diffs else "not run"
                row.append(f"**{text}**" if m == "f1" and diffs else text)
        if not differences_only or any(cell != "not run" for cell in row[1:]):
            rows.append(row)
    if differences_only:  # rows to append to the table above it
        return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return table(header, rows, "l" + "r" * (len(header) - 1))


def _ablation_notes(src: Sources, files: Sequence[str], prefix: str) -> str:
    runs = [src.json(result(f"{name}"))["run"] for name in files]
    budgets: Dict[str, List[str]] = {}
    variants: List[str] = []
    for run in runs:
        names = budgets.setdefault(run["budget"], [])
        if run["dataset"] not in names:
            names.append(run["dataset"])
        if run.get("variant") and run["variant"] not in variants:
            variants.append(run["variant"])
    builds: Dict[str, List[str]] = {}  # base description -> the files whose cells adapted it
    for name, run in zip(files, runs):
        path, rest = run["base"].split(", ", 1)
        builds.setdefault(f"{Path(path).name}, {rest}", []).append(name)  # where the encoder lay is no difference
    if len(builds) == 1:
        base = f"Base: {next(iter(builds))}."
    else:  # the same encoder, head warm-ups built at different times: say which cells used which
        shared = os.path.commonprefix(list(builds))
        shared = shared[:shared.rfind(": ") + 2] if ": " in shared else ""
        base = f"Base, in separate builds: {shared}" + "; ".join(
            f"{build[len(shared):]} ({', '.join(f'`{n}`' for n in names)})" for build, names in builds.items()) + "."
    machine, threads, seeds = runs[0]["machine"], runs[0]["threads"], runs[0]["seeds"]
    return note(
        "Budget:", "; ".join(f"{' and '.join(names)}: {budget}" for budget, names in budgets.items()) + ".",
        ("Variants: " + "; ".join(variants) + ".") if variants else "",
        f"{base} Machine: {machine}, {threads}.",
        f"Mean ± std over {seeds}, in %; – or not run: no such cell; term top-1: top-1 accuracy of the gold wordpiece at masked",
        "DS-terms of the test text (the same masks for every model); generic top-1: the same at the other masked wordpieces.",
        "Sources: " + ", ".join(source_link(f, prefix) for f in files) + ".",
    )


@block("mslm-ablation-minilm")
def mslm_ablation_minilm(src: Sources, arg: str, prefix: str) -> str:
    cells = _cells(src, ABLATION_FILES)
    methods = methods_of(cells)
    return _ablation_table(cells, list(DATASETS), ["f1", "term"], methods, "uniform") + _ablation_notes(src, ABLATION_FILES, prefix)


#: Learning-curve results: (labelled fraction, file) of `mslm_ablation.py --train-fraction F --sample-seed 0`.
#: Files not yet produced are skipped (by the table and by benchmarks/mslm_learning_curve.py's plot).
CURVE_FILES = ((0.05, "mslm_ablation_minilm_ncbi_f0.05.json"), (0.1, "mslm_ablation_minilm_ncbi_f0.1.json"),
               (0.25, "mslm_ablation_minilm_ncbi_f0.25.json"), (0.05, "mslm_ablation_minilm_bc5cdr_f0.05.json"),
               (0.1, "mslm_ablation_minilm_bc5cdr_f0.1.json"), (0.25, "mslm_ablation_minilm_bc5cdr_f0.25.json"))
#: The MSLM row of the learning curve: the best setting of the ablation (ELM rate 1.0).
CURVE_MSLM = "mslm-elm1-blm0.15"


def curve_files(src: Sources) -> List[Tuple[float, str]]:
    """CURVE_FILES that exist."""
    return [(f, name) for f, name in CURVE_FILES if (src.root / result(name)).exists()]


def curve_cells(src: Sources) -> List[Tuple[float, Dict[Tuple[str, str, int], Dict[str, Any]]]]:
    """(labelled fraction, cells) of the learning curve: CURVE_FILES below 100 %, ABLATION_FILES at 100 %."""
    return [(f, _cells(src, [name])) for f, name in curve_files(src)] + [(1.0, _cells(src, ABLATION_FILES))]


#: benchmarks/mslm_search_validation.py results, one per dataset (rendered when present).
MSLM_SEARCH_FILES = ("mslm_search_ncbi.json", "mslm_search_bc5cdr.json")


@block("mslm-search-validation")
def mslm_search_validation(src: Sources, arg: str, prefix: str) -> str:
    """mslm-search's short-run signal per grid point beside the ablation's test F1 for that setting."""
    rows, verdicts, sources, commands = [], [], [], []
    for name in MSLM_SEARCH_FILES:
        if not (src.root / result(name)).exists():
            continue
        res = src.json(result(f"{name}"))
        sources.append(source_link(name, prefix))
        # the F1 cells' files (recorded since --rejudge; earlier runs named them in their command only)
        sources += [source_link(f, prefix) for f in res.get("ablation", [])
                    if f not in ABLATION_FILES and source_link(f, prefix) not in sources]
        rejudged = f", judged again by `{res['command']}`" if res.get("search_command") else ""
        commands.append(f"`{res.get('search_command', res['command'])}`{rejudged} "
                        f"({res['machine']}, OMP_NUM_THREADS {res['threads']})")
        shown = res["dataset"] + (f" ({res['label']})" if res.get("label") else "")
        for run in res["runs"]:
            for pt in run["points"]:
                if not pt["tried"]:
                    rows.append([shown, str(run["steps"]), pt["point"], "not tried", "", "", ""])
                    continue
                seeds = ", ".join(map(str, pt["f1_by_seed"])) if pt["f1_mean"] is not None else ""
                if pt["f1_mean"] is None:
                    f1 = "not measured"
                elif pt["f1_std"] is None:  # one seed: no spread
                    f1 = f"{pt['f1_mean']:.2f} (seed {seeds} only)"
                else:
                    f1 = f"{pt['f1_mean']:.2f} ± {pt['f1_std']:.2f} (seeds {seeds})"
                mark = "**chosen**" if pt["chosen"] else ("excluded" if pt["excluded"] else "")
                rows.append([shown, str(run["steps"]), pt["point"], f"{100 * pt['term_acc']:.2f}",
                             f"{100 * pt['generic_acc']:.2f}", f1, mark])
            v = run["verdict"]
            text = f"{shown}, {run['steps']} steps a point ({v['search_seconds'] / 60:.1f} min): "
            if "gap" in v:
                paired = signed(v["paired_gap_mean"]) + (f" ± {v['paired_gap_std']:.2f}" if v["paired_gap_std"] is not None else "")
                text += (f"chosen {v['chosen']}, best measured {v['best']}, F1 gap {signed(v['gap'])} (paired {paired}), "
                         + (f"seed spread {v['spread']:.2f}: " + ("within it" if v["within_spread"] else "outside it")
                            if v["spread"] is not None else "one seed a point, no spread of its own"))
            else:
                text += f"chosen {v['chosen']}, which the ablation did not measure"
            if v.get("spearman") is not None:
                text += f"; Spearman of the signal with F1 over {v['n_ranked']} measured points {v['spearman']:.2f}"
            verdicts.append(text + ".")
    if not rows:
        raise SourceError(f"{RESULTS}: none of {', '.join(MSLM_SEARCH_FILES)}")
    return table(["dataset", "search steps", "grid point", "dev term top-1 %", "dev generic top-1 %",
                  "test F1 after 500 adaptation steps (ablation)", ""], rows, "lrlrrrl") + note(
        *verdicts, "Search on the workflow's warmed base (`training/base`), MSLM alone, lr 1e-4, 2,048 wordpieces a step;",
        "the F1 column is from `benchmarks/mslm_ablation.py` cells (the ablation table's and the files named below;",
        "other warm-ups of the same base, 500 adaptation steps, the same NER budget).",
        "Commands:", "; ".join(commands) + ".", "Sources:", ", ".join(sources) + ".",
    )


@block("mslm-learning-curve")
def mslm_learning_curve(src: Sources, arg: str, prefix: str) -> str:
    """none vs the best MSLM setting (ELM rate 1.0) per labelled fraction, per-seed differences."""
    best = CURVE_MSLM
    points = curve_cells(src)
    rows = []
    for dataset, shown in DATASETS.items():
        for fraction, cells in points:
            seeds = sorted({seed for d, m, seed in cells if d == dataset and m == "none"}
                           & {seed for d, m, seed in cells if d == dataset and m == best})
            if not seeds:
                continue
            none = [cells[(dataset, "none", k)]["ner"]["f1"] for k in seeds]
            mslm = [cells[(dataset, best, k)]["ner"]["f1"] for k in seeds]
            cnn = [cells[(dataset, "spacy_cnn", k)]["ner"]["f1"] for k in seeds if (dataset, "spacy_cnn", k) in cells]
            # uniform MLM where it ran, paired with MSLM on the seeds both have
            paired = [k for k in seeds if (dataset, "uniform", k) in cells]
            uniform = [cells[(dataset, "uniform", k)]["ner"]["f1"] for k in paired]
            over_uniform = [cells[(dataset, best, k)]["ner"]["f1"] - cells[(dataset, "uniform", k)]["ner"]["f1"] for k in paired]
            uniform_seeds = "" if paired == seeds or not paired else f" (seed{'s' * (len(paired) > 1)} {', '.join(map(str, paired))})"
            rows.append([shown, f"{100 * fraction:g} %", mean_std(none), mean_std(uniform) + uniform_seeds, mean_std(mslm),
                         mean_std([b - a for a, b in zip(none, mslm)], signed=True), mean_std(over_uniform, signed=True),
                         mean_std(cnn), ", ".join(map(str, seeds))])
    header = ["dataset", "labelled", "none F1", "uniform MLM F1", "MSLM (ELM 1.0) F1", "MSLM − none (paired)",
              "MSLM − uniform (paired)", "spaCy CNN F1", "seeds"]
    return table(header, rows, "llrrrrrrl") + note(
        "all-MiniLM-L6-v2 + MLM head; the same budgets as the ablation table (500 adaptation steps, 300 NER steps);",
        "below 100 %, a seeded sample of the training sentences is labelled (the same for every row; NER and DS-terms",
        "from it) and the rest is adapted on as unlabelled text. Uniform MLM: the same adaptation budget and text, 15 % of",
        "the wordpieces masked uniformly, unweighted; its seeds are named where it ran on fewer than the other rows. spaCy CNN: its `ner` (efficiency config) trained on the same",
        "labelled sentences for the same 300 steps, seeds where it ran. Below 100 %, the MSLM cells adapted one of three",
        "builds of the same 100-step head warm-up (its initialisation was not seeded before `init-base --seed`): seed 0 at",
        "10 % one, seed 1 at 10 % and seeds 0–1 at 25 % another, every later cell (seed 2, 5 %, BC5CDR, uniform MLM) the seeded build;",
        "no adaptation and the CNN do not use the head. Plot: "
        + source_link("mslm_learning_curve.png", prefix) + " (`python benchmarks/mslm_learning_curve.py`). Sources: "
        + ", ".join(source_link(name, prefix) for f, name in curve_files(src))
        + " and the ablation table's files.",
    )


@block("mslm-learning-curve-per-seed")
def mslm_learning_curve_per_seed(src: Sources, arg: str, prefix: str) -> str:
    """The learning curve's rows seed by seed, with the paired differences."""
    rows = []
    for dataset, shown in DATASETS.items():
        for fraction, cells in sorted(curve_cells(src), key=lambda point: point[0]):
            for seed in sorted(k for d, m, k in cells if d == dataset and m == "none" and (dataset, CURVE_MSLM, k) in cells):
                f1 = {m: cells[(dataset, m, seed)]["ner"]["f1"] for m in ("none", "uniform", CURVE_MSLM, "spacy_cnn")
                      if (dataset, m, seed) in cells}

                def diff(a: str, b: str) -> str:
                    return signed(f1[a] - f1[b]) if a in f1 and b in f1 else "–"

                rows.append([shown, f"{100 * fraction:g} %", seed] + [f"{f1[m]:.2f}" if m in f1 else "–" for m in ("none", "uniform", CURVE_MSLM)]
                            + [diff(CURVE_MSLM, "none"), diff("uniform", "none"), diff(CURVE_MSLM, "uniform"),
                               f"{f1['spacy_cnn']:.2f}" if "spacy_cnn" in f1 else "–"])
    header = ["dataset", "labelled", "seed", "none F1", "uniform MLM F1", "MSLM (ELM 1.0) F1", "MSLM − none", "uniform − none",
              "MSLM − uniform", "spaCy CNN F1"]
    return table(header, rows, "llr" + "r" * (len(header) - 3)) + note(
        "Test F1 of each seed of the learning curve above (the same runs; – : not run); the differences are paired:",
        "the same NER seed and, below 100 %, the same labelled sample.",
    )


def default_mslm_method(src: Sources) -> str:
    """The ablation key (mslm-elm<rate>-blm<rate>[-<weighting>]) of `configs/mslm.cfg`'s setting."""
    model = read_config(src, "configs/mslm.cfg")["model"]
    weighting = model["weighting"]["@msnr_weightings"].replace("spacy_msnr.", "").rsplit(".v", 1)[0]
    return (f"mslm-elm{float(model['masker']['elm_rate']):g}-blm{float(model['masker']['blm_rate']):g}"
            + ("" if weighting == "softmax_share" else f"-{weighting}"))


def curve_differences(src: Sources) -> List[Dict[str, Any]]:
    """Per (dataset, labelled fraction): the best MSLM setting (CURVE_MSLM) minus no adaptation and
    minus uniform MLM, paired by seed (the seeds both rows ran)."""
    out = []
    for dataset, shown in DATASETS.items():
        for fraction, cells in sorted(curve_cells(src), key=lambda point: point[0]):
            diffs = {}
            for other in ("none", "uniform"):
                seeds = sorted(k for d, m, k in cells if d == dataset and m == other and (dataset, CURVE_MSLM, k) in cells)
                diffs[other] = [cells[(dataset, CURVE_MSLM, k)]["ner"]["f1"] - cells[(dataset, other, k)]["ner"]["f1"] for k in seeds]
            if diffs["none"]:
                out.append({"dataset": shown, "fraction": fraction, **diffs})
    return out


@block("mslm-ablation-per-seed")
def mslm_ablation_per_seed(src: Sources, arg: str, prefix: str) -> str:
    cells = _cells(src, ABLATION_FILES)
    methods = methods_of(cells)
    rows = []
    for dataset in DATASETS:
        for seed in sorted({k[2] for k in cells if k[0] == dataset}):
            row = [DATASETS[dataset], seed]
            row += [f"{cells[(dataset, m, seed)]['ner']['f1']:.2f}" if (dataset, m, seed) in cells else "–" for m in methods]
            if (dataset, "mslm", seed) in cells and (dataset, "uniform", seed) in cells:
                row.append(signed(cells[(dataset, "mslm", seed)]["ner"]["f1"] - cells[(dataset, "uniform", seed)]["ner"]["f1"]))
            else:
                row.append("–")
            rows.append(row)
    header = ["test set", "seed"] + [method_label(m).split(" (")[0] for m in methods] + ["MSLM − uniform MLM"]
    return table(header, rows, "lr" + "r" * (len(header) - 2)) + note(
        "Test F1 of `model-best` per seed, the same runs as the table above; – : not run.",
    )


@block("mslm-ablation-gpu")
def mslm_ablation_gpu(src: Sources, arg: str, prefix: str) -> str:
    files = ("mslm_ablation_minilm_gpu.json",)
    run = src.json(result("mslm_ablation_minilm_gpu.json"))["run"]
    cells = _cells(src, files)
    dataset = "NCBI-disease-IOB"
    methods = methods_of(cells)
    seeds = _seeds(cells)
    out = _ablation_table(cells, [dataset], ["f1", "term", "generic"], methods, "uniform")
    steps = "; ".join(f"{m}: " + "/".join(str(cells[(dataset, m, s)]["ner"]["best_step"]) for s in seeds) for m in methods)
    machine, side, command = run["machine"], run["side"].lower(), run["command"]
    return out + note(
        f"Machine: {machine}; {side}, one per (seed, adaptation), each `{command}`.",
        "**The NER runs were cut by time, not steps**: test F1 is that of the best dev evaluation reached, at NER step",
        f"{steps} (seeds {'/'.join(map(str, seeds))}), so the F1 column compares runs of unequal length; the step-matched dev F1 below is the fair F1 comparison.",
        f"Source: {source_link('mslm_ablation_minilm_gpu.json', prefix)}.",
    )


@block("mslm-ablation-gpu-dev")
def mslm_ablation_gpu_dev(src: Sources, arg: str, prefix: str) -> str:
    matched = src.json(result("mslm_ablation_minilm_gpu.json"))["run"]["step_matched"]
    heading, header, rows = matched["heading"], matched["columns"], matched["rows"]
    return table(header, rows, "l" + "r" * (len(header) - 1)) + note(
        f"{heading}, the same runs as the table above. Source: {source_link('mslm_ablation_minilm_gpu.json', prefix)}.",
    )


@block("mslm-ablation-small-bert")
def mslm_ablation_small_bert(src: Sources, arg: str, prefix: str) -> str:
    run = src.json(result("mslm_ablation.json"))
    header, rows = run["columns"], run["rows"]
    keep = [i for i, h in enumerate(header) if i == 0 or h.endswith(("F1", "term p", "term top-1"))]
    body = [[r[i] if i < len(r) else "–" for i in keep] for r in rows]
    body = [[("–" if c == "-" else re.sub(r" \(n=\d+\)", "", c).replace("-", "−")) if j else c for j, c in enumerate(r)] for r in body]
    budget, base, seeds, machine = run["budget"], run["base"], run["seeds"], run["machine"]
    return table([header[i] for i in keep], body, "l" + "r" * (len(keep) - 1)) + note(
        f"Budget: {budget}. Base: {base}, pretrained here on the PubMed abstracts only.",
        f"Mean ± std over {seeds}, in %; `spacy_cnn (peer)`: spaCy's CNN `ner` for the same NER steps.",
        f"Machine: {machine}. Source: {source_link('mslm_ablation.json', prefix)} (the run's record: {source_link('mslm_ablation.md', prefix)}).",
    )


@block("head-warmup")
def head_warmup(src: Sources, arg: str, prefix: str) -> str:
    run = src.json(result("ner_budget_minilm.json"))["head_warmup"]
    header, rows = run["columns"], run["rows"]
    setting, ner, threads, machine = run["setting"], run["ner"], run["threads"], run["machine"]
    return table(header, rows, "l" + "r" * (len(header) - 1)) + note(
        f"MiniLM with its new MLM head warmed up alone or not, then the same MSLM adaptation ({setting}) and NER ({ner}),",
        f"NCBI-disease; {machine}, {threads}. Source: {source_link('ner_budget_minilm.json', prefix)} (the runs' record:",
        f"{source_link('ner_budget_minilm.md', prefix)}).",
    )


@block("mslm-throughput")
def mslm_throughput(src: Sources, arg: str, prefix: str) -> str:
    cpu = src.json(result("mslm_throughput_minilm.json"))
    gpu = src.json(result("mslm_ablation_minilm_gpu.json"))["run"]["throughput"]
    rows = [[r["machine"], r["wordpieces_per_s"]["mslm"], r["wordpieces_per_s"]["uniform_same_layers"],
             r["wordpieces_per_s"]["plain_hf_uniform"], r["ratio_uniform"], r["ratio_plain_hf"]] for r in (cpu, gpu)]
    commands = [f"`{r['command']}`" for r in (cpu, gpu)]
    header = ["machine", "MSLM wordpieces/s", "uniform MLM, same layers", "plain HF uniform MLM", "MSLM / uniform", "MSLM / plain HF"]
    caveat = cpu["caveat"]
    return table(header, rows, "lrrrll") + note(
        "all-MiniLM-L6-v2 with its new MLM head, batches of NCBI-disease training text, the objectives' steps interleaved in one run;",
        f"wall (and CPU) ratios. Commands: {' and '.join(commands)}.",
        f"CPU row: {caveat[0].lower()}{caveat[1:]}" if caveat else "",
        f"Sources: {source_link('mslm_throughput_minilm.json', prefix)}, {source_link('mslm_ablation_minilm_gpu.json', prefix)}.",
    )
