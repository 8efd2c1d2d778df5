"""Tables of docs/benchmarks.md on the workflows: the `all` runs, transformer + `ner` budgets and baselines, fp32 against bf16."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import srsly

from .sources import RESULTS, result, Sources
from .format import mean_std, note, paired_interval, signed, source_link, t_interval, table
from .blocks import block


# The `all` workflow and spaCy's CNN on NCBI-disease ---------------------------------------------------
def first_all_run(src: Sources) -> Dict[str, Any]:
    """The first timed `all` run (a record made by hand): its table rows (header first) and facts."""
    run = src.json(result("all_workflow_minilm.json"))
    return {**run, "rows": [run["columns"], *run["rows"]]}


@block("all-workflow")
def all_workflow(src: Sources, arg: str, prefix: str) -> str:
    run = first_all_run(src)
    header, *rows = run["rows"]
    return table(header, rows, "l" + "r" * (len(header) - 1)) + note(
        f"One run of `python -m spacy project run all .` with the defaults of {run['date']} on a clean clone:",
        f"the {run['machine']}, no GPU, default threads; {run['wall']} wall, peak RSS {run['peak_rss']}.",
        "P/R/F1 and words/s are `spacy evaluate`'s on the test split.",
        f"Source: {source_link('all_workflow_minilm.json', prefix)} (the run's record: {source_link('all_workflow_minilm.md', prefix)}).",
    )


def run_options(run: Dict[str, Any]) -> Dict[str, str]:
    """A run's `--vars.NAME VALUE` / `--vars.NAME=VALUE` overrides as {"--vars.NAME": VALUE}."""
    options, words = {}, list(run["overrides"])
    while words:
        word = words.pop(0)
        if "=" in word:
            name, value = word.split("=", 1)
        else:
            name, value = word, words.pop(0) if words else ""
        options[name] = value
    return options


def other_set_runs(src: Sources) -> List[Tuple[str, Dict[str, Any]]]:
    """(set name, run) of each recorded `all` run on a set other than the project's default."""
    default = srsly.read_yaml(src.root / "project.yml")["vars"]["dataset"]
    runs = []
    for path in sorted((src.root / RESULTS / "workflows").glob(PER_SET_RUNS)):
        run = src.json(result(path.name))
        dataset = run_options(run).get("--vars.dataset", default)
        if dataset != default and "lead" in run:
            runs.append((dataset.removesuffix("-IOB"), run))
    return runs


def latest_all_run(src: Sources) -> Optional[Dict[str, Any]]:
    """benchmarks/results/workflow_all.json (benchmarks/workflow_run.py), if a run was recorded."""
    rel = result("workflow_all.json")
    return src.json(rel) if (src.root / rel).exists() else None


def run_overrides(run: Dict[str, Any], skip: Sequence[str] = ("--vars.asset_mirror",)) -> str:
    pairs = [f"{name} {value}" for name, value in run_options(run).items() if name not in skip]
    return ", ".join(f"`{p}`" for p in pairs) or "none"


def steps_table(run: Dict[str, Any]) -> str:
    """The step times and memory of a `benchmarks/workflow_run.py` record."""
    rows = [[f"`{r['step']}`", f"{r['seconds'] / 60:.1f}", f"{r['cpu_seconds'] / 60:.1f}", f"{r['peak_rss_mib']:,}"] for r in run["steps"]]
    rows.append(["**total**", f"**{run['total_seconds'] / 60:.1f}**", "", f"{run['peak_rss_mib']:,}"])
    return table(["step", "wall min", "CPU min", "largest process so far, MiB"], rows, "lrrr")


def _threads(machine: Dict[str, Any]) -> str:
    """A recorded run's OMP_NUM_THREADS as the docs say it."""
    threads = machine.get("omp_threads")
    return "unset (torch's default: a thread per core)" if threads == "unset" else threads or "not recorded"


def _busy_load(machine: Dict[str, Any]) -> int:
    """The load average above which a recorded run shared the cores: its threads (all cores when unset)."""
    threads = machine.get("omp_threads")
    return int(threads) if threads and threads.isdigit() else machine["cpus"]


def run_machine(run: Dict[str, Any]) -> str:
    """Cores, threads and load of a `benchmarks/workflow_run.py` record, and what the load means for its times."""
    m = run["machine"]
    return (f"{m['cpus']} cores, no GPU, OMP_NUM_THREADS {_threads(m)}; load average {m['load_before'][0]} "
            f"before and {m['load_after'][0]} after the run (other jobs shared the machine when it is above {_busy_load(m)}: "
            "the wall times are then upper bounds).")


@block("workflow-run")
def workflow_run(src: Sources, arg: str, prefix: str) -> str:
    run = latest_all_run(src)
    if run is None:
        return "No run of `benchmarks/workflow_run.py` is recorded yet."
    out = steps_table(run)
    pk, cnn = run["package"], run["cnn"]
    out += "\n\n" + table(["pipeline (NCBI-disease test)", "P", "R", "F1", "words/s"], [
        ["the package (`evaluate`: `training/ner/model-best`)", f"{pk['p']:.2f}", f"{pk['r']:.2f}", f"**{pk['f']:.2f}**", f"{pk['words_per_s']:,.0f}"],
        ["spaCy's CNN `ner` (`evaluate-cnn`)", f"{cnn['p']:.2f}", f"{cnn['r']:.2f}", f"{cnn['f']:.2f}", f"{cnn['words_per_s']:,.0f}"],
        ["F1 lead", "", "", f"**{run['lead']:+.2f}**", ""],
    ], "lrrrr")
    return out + note(
        f"`python benchmarks/workflow_run.py --workflow {run['workflow']}` ({run['date']}): `spacy project run` of each step of `{run['workflow']}`",
        f"in a fresh copy of the project, defaults of its date except: {run_overrides(run)}"
        + ("" if "ner_budget" in run else " (before the transformer + `ner` budget followed the data: a fixed step count)") + ";",
        run_machine(run), "One run: no spread measured.",
        f"Source: {source_link('workflow_all.json', prefix)}.",
    )


#: The per-set runs of the `all` workflow: workflow_all.json (the project's default set) and
#: workflow_all_<set>.json (`--vars.dataset <set>-IOB`).
PER_SET_RUNS = "workflow_all*.json"


@block("workflow-per-set")
def workflow_per_set(src: Sources, arg: str, prefix: str) -> str:
    default = srsly.read_yaml(src.root / "project.yml")["vars"]["dataset"]
    rows, names, notes = [], [], []
    for path in sorted((src.root / RESULTS / "workflows").glob(PER_SET_RUNS)):
        run = src.json(result(path.name))
        if "lead" not in run:
            continue
        options = run_options(run)
        budget = run.get("ner_budget")
        train = next((r["seconds"] for r in run["steps"] if r["step"] == "train"), None)
        if budget:
            cap = budget["max_seconds"]
            steps = f"{budget['max_steps']} (eval every {budget['eval_frequency']}" + (
                f"; cap {cap / 60:.0f} min, {'not reached' if train and train < cap else 'may have ended it'})" if cap else ")")
        else:
            steps = "fixed `train_steps` (before `train-budget`)"
        rows.append([options.get("--vars.dataset", default).removesuffix("-IOB"), steps, f"{run['package']['f']:.2f}",
                     f"{run['cnn']['f']:.2f}", f"**{run['lead']:+.2f}**", f"{train / 60:.1f}" if train else "–",
                     f"{run['total_seconds'] / 60:.1f}", _threads(run["machine"]),
                     f"{run['machine']['load_before'][0]} / {(run['machine'].get('load_after') or ['–'])[0]}", run_overrides(run, ("--vars.asset_mirror", "--vars.dataset")), run["date"]])
        names.append(path.name)
        if run.get("note"):  # what was done by hand to a run, as its JSON records it
            notes.append(f"{rows[-1][0]}: {run['note']}")
    if not rows:
        return "No run of `benchmarks/workflow_run.py` is recorded yet."
    header = ["set", "transformer + ner steps", "package F1", "CNN F1", "lead", "train min", "workflow min", "OMP_NUM_THREADS",
              "load before / after", "other overrides", "date"]
    return table(header, rows, "llrrrrrrrll") + note(
        "`python benchmarks/workflow_run.py --workflow all --vars.dataset SET` once a set, each in a fresh copy of the project",
        "with the defaults of its date and the overrides shown: the package (`evaluate`) and spaCy's CNN `ner` (`evaluate-cnn`)",
        "on the same test split in the same run.",
        "The 2-core, 24 GiB CPU workplace machine, no GPU; runs side by side share its two cores (1-minute load average before",
        "and after the run in the table), so wall times are upper bounds. Seed 0, one run a set: no spread measured.",
        "Sources: " + ", ".join(source_link(name, prefix) for name in names) + ".",
        *notes,
    )


# fp32 against bf16 (the `precision` setting) -----------------------------------------------------------
#: The `all` runs of the precision table: (label, results file); the first is the reference.
PRECISION_RUNS = (("fp32", "precision_workflow_fp32.json"), ("bf16", "precision_workflow_bf16.json"),
                  ("bf16, larger budgets", "precision_workflow_bf16_budget.json"))


@block("precision-speed")
def precision_speed(src: Sources, arg: str, prefix: str) -> str:
    run = src.json(result("precision_speed.json"))
    rows = []
    for r in run["rows"]:
        same = f"{r['same_entities']}/{r['docs']}" if "same_entities" in r else "–"
        f1 = r.get("test_f1")
        digits = 2 if r["fp32"] < 10 else 1
        rows.append([r["what"], r["unit"], f"{r['fp32']:,.{digits}f}", f"{r['bf16']:,.{digits}f}", f"**{r['ratio']:.2f}x**", same,
                     f"{f1['fp32']:.2f} / {f1['bf16']:.2f}" if f1 else "–"])
    m = run["machine"]
    return table(["what", "unit", "fp32", "bf16", "bf16 / fp32", "same entities", "test F1 fp32 / bf16"], rows, "llrrrrr") + note(
        f"`python benchmarks/precision_speed.py` ({run['date']}): each pair run alternately (fp32, bf16, ...) {run['repeats']} times",
        "on the same inputs, median of each side; bf16 is autocast with fp32 weights (the `precision` setting), fewshot_ner's",
        "frozen base held in bf16. The transformer + `ner` rows use the `all` workflow's NCBI-disease pipeline (trained in bf16),",
        f"loaded once with each precision. {m['cpu']}, {m['cpus']} cores, torch {m['torch']} with {m['torch_threads']} threads",
        f"(OMP_NUM_THREADS {m['omp_threads']}), native bf16: {'yes' if m['cpu_native_bf16'] else 'no'}; load average",
        f"{m['load_before'][0]} at the start. Source: {source_link('precision_speed.json', prefix)}.",
    )


@block("precision-workflow")
def precision_workflow(src: Sources, arg: str, prefix: str) -> str:
    runs = [(label, name, src.json(result(f"{name}"))) for label, name in PRECISION_RUNS
            if label in ("fp32", "bf16") or (src.root / result(name)).exists()]
    steps = [r["step"] for r in runs[0][2]["steps"]]
    seconds = [{r["step"]: r["seconds"] for r in run["steps"]} for _, _, run in runs]
    scaled = [step for step in steps if step in PRECISION_STEPS]

    def minutes(values: List[float]) -> List[str]:
        return [f"{v / 60:.1f}" for v in values] + [f"{v / values[0]:.2f}" for v in values[1:]]

    rows = [[f"`{step}`", *minutes([secs[step] for secs in seconds])] for step in steps]
    rows.append(["**total**", *(f"**{c}**" for c in minutes([run["total_seconds"] for _, _, run in runs]))])
    rows.append([f"steps that compute in `precision` ({', '.join(f'`{s}`' for s in scaled)})",
                 *minutes([sum(secs[step] for step in scaled) for secs in seconds])])
    labels = [label for label, _, _ in runs]
    out = table(["step", *(f"{label} min" for label in labels), *(f"{label} / fp32" for label in labels[1:])], rows,
                "l" + "r" * (2 * len(runs) - 1))
    fig = []
    for label, _, run in runs:
        options = run_options(run)
        pk = run["package"]
        fig.append([label, options.get("--vars.mslm_steps", str(src.project()["vars"]["mslm_steps"])), str(run.get("ner_budget", {}).get("max_steps", "–")),
                    f"{pk['p']:.2f}", f"{pk['r']:.2f}", f"{pk['f']:.2f}", signed(pk['f'] - runs[0][2]['package']['f']),
                    f"{pk['words_per_s']:,.0f}", f"{run['cnn']['f']:.2f}"])
    out += "\n\n" + table(["run", "MSLM steps", "transformer + ner steps", "package P", "R", "F1", "F1 − fp32",
                            "words/s (`evaluate`)", "CNN F1"], fig, "llrrrrrrr")
    m = runs[0][2]["machine"]
    return out + note(
        f"`python benchmarks/workflow_run.py --workflow all --vars.precision fp32|bf16` ({runs[0][2]['date']}), each in a fresh copy",
        f"of the project, two runs at a time side by side, one thread each (OMP_NUM_THREADS {_threads(m)}), on the 2-core, 24 GiB",
        "CPU workplace machine (AMD EPYC with native bf16), no GPU. fp32 and bf16: the same budgets (the defaults of the date);",
        "\"bf16, larger budgets\" (if recorded) spends about the time bf16 saves on the precision steps on more MSLM steps and",
        "more passes of transformer + `ner` (`--vars.mslm_steps`, `--vars.train_epochs`). `precision` applies to `mslm`, `train`,",
        "`evaluate` and `visualize`; `init-base` (MiniLM's head warm-up) and spaCy's CNN run in fp32 every time. Seed 0, one run",
        "each; the table below pairs these settings over three seeds.",
        "Sources: " + ", ".join(source_link(name, prefix) for _, name, _ in runs) + ".",
    )


#: The `all` steps whose matmuls follow `vars.precision`.
PRECISION_STEPS = ("mslm", "train", "evaluate", "visualize")


@block("ner-runs")
def ner_runs(src: Sources, arg: str, prefix: str) -> str:
    runs = src.json(result("ner_budget_minilm.json"))
    header, rows = runs["columns"], runs["rows"]
    keep = [header.index(h) for h in ("run", "base given to `transformer`", "batches", "test P", "test R", "test F1", "train wall s")]
    body = [[r[i].replace("**", "") for i in keep] for r in rows]
    return table([header[i] for i in keep], body, "lllrrrr") + note(
        f"Machine: {runs['machine']}", f"Runs: {runs['runs']}.",
        f"Source: {source_link('ner_budget_minilm.json', prefix)} (the runs' record: {source_link('ner_budget_minilm.md', prefix)}).",
    )


@block("ner-baselines")
def ner_baselines(src: Sources, arg: str, prefix: str) -> str:
    data = src.json(result("ner_baselines.json"))
    rows = [[r["pipeline"], f"{r['train_minutes']:.1f}", f"{r['P']:.2f}", f"{r['R']:.2f}", f"{r['F1']:.2f}"] for r in data["rows"]]
    adapted, date, machine, threads = data["adapted"], data["date"], data["machine"], data["threads"]
    seeds = f"Seed {data['seed']}, all three rows"
    return table(["pipeline", "train min", "P", "R", "F1"], rows, "lrrrr") + note(
        f"{data['dataset']} test split; transformer rows: {data['trf_steps']} steps at a peak learning rate of {data['trf_lr']}",
        f"(`configs/ner_trf.cfg`); the adapted row reads the `all` workflow's `training/mslm` ({adapted}).",
        f"{seeds}; run {date} on {machine}, no GPU, {threads}.",
        f"Speed is left out here: the `all` workflow's table measures it. Source: {source_link('ner_baselines.json', prefix)}.",
    )




#: The precision seed study on NCBI-disease: arm -> results file of each seed. fp32 and bf16: the
#: workflow's budgets; bf16b: MSLM 200 steps and 6 passes of transformer + ner; none: bf16b's
#: transformer + ner budget on the unadapted encoder (`--vars.trf_model training/base`, no `mslm`).
PRECISION_SEEDS = {
    "fp32": {0: "precision_workflow_fp32.json", 1: "precision_workflow_ncbi_fp32_s1.json", 2: "precision_workflow_ncbi_fp32_s2.json"},
    "bf16": {0: "precision_workflow_bf16.json", 1: "precision_workflow_ncbi_bf16_s1.json", 2: "precision_workflow_ncbi_bf16_s2.json"},
    "bf16b": {0: "precision_workflow_bf16_budget.json", 1: "precision_workflow_ncbi_bf16b_s1.json", 2: "precision_workflow_ncbi_bf16b_s2.json"},
    "none": {0: "precision_workflow_ncbi_none_s0.json", 1: "precision_workflow_ncbi_none_s1.json", 2: "precision_workflow_ncbi_none_s2.json"},
}
PRECISION_ARMS = {"fp32": "fp32, the workflow's budgets", "bf16": "bf16, the same budgets",
                  "bf16b": "bf16, MSLM 200 steps, 6 passes", "none": "bf16, no adaptation, 6 passes"}


def _precision_minutes(run: Dict[str, Any]) -> float:
    return sum(r["seconds"] for r in run["steps"] if r["step"] in PRECISION_STEPS) / 60


@block("precision-seeds")
def precision_seeds(src: Sources, arg: str, prefix: str) -> str:
    runs = {arm: {seed: src.json(result(f"{name}")) for seed, name in files.items() if (src.root / result(name)).exists()}
            for arm, files in PRECISION_SEEDS.items()}
    seeds = sorted({seed for files in runs.values() for seed in files})
    f1 = {arm: {s: r["package"]["f"] for s, r in by_seed.items()} for arm, by_seed in runs.items()}
    rows = []
    for seed in seeds:
        rows.append([f"seed {seed}"] + [f"{f1[a][seed]:.2f} ({_precision_minutes(runs[a][seed]):.1f} min)" if seed in f1[a] else "–"
                                        for a in PRECISION_SEEDS])
    rows.append(["mean ± std"] + [mean_std(list(f1[a].values())) if f1[a] else "–" for a in PRECISION_SEEDS])
    out = table(["NCBI-disease test F1 (minutes of mslm + train + evaluate + visualize)", *PRECISION_ARMS.values()], rows, "lrrrr")

    def paired(a: str, b: str) -> List[float]:
        return [f1[a][s] - f1[b][s] for s in seeds if s in f1[a] and s in f1[b]]

    def time_ratio(a: str, b: str) -> str:
        ratios = [_precision_minutes(runs[a][s]) / _precision_minutes(runs[b][s]) for s in seeds if s in runs[a] and s in runs[b]]
        return mean_std(ratios) if len(ratios) > 1 else (f"{ratios[0]:.2f}" if ratios else "–")

    diffs = [["bf16 − fp32 (same budgets)", paired_interval(paired("bf16", "fp32")), time_ratio("bf16", "fp32")],
             ["bf16 with larger budgets − fp32", paired_interval(paired("bf16b", "fp32")), time_ratio("bf16b", "fp32")],
             ["MSLM − no adaptation (bf16, larger budgets)", paired_interval(paired("bf16b", "none")), time_ratio("bf16b", "none")]]
    out += "\n\n" + table(["paired by seed", "F1 difference, mean [95 % t-interval]", "time ratio of those steps"], diffs, "lrr")

    def reading(a: str, b: str, what: str) -> str:
        d = paired(a, b)
        if len(d) < 2:
            return f"{what}: not enough seeds yet"
        _, low, high = t_interval(d)
        side = "above 0" if low > 0 else ("below 0" if high < 0 else "includes 0")
        return f"{what}: the interval {side} ({len(d)} seeds)"

    out += "\n\n" + "; ".join([reading("bf16", "fp32", "bf16 at the workflow's budgets against fp32"),
                                  reading("bf16b", "fp32", "bf16 with the larger budgets against fp32"),
                                  reading("bf16b", "none", "MSLM against no adaptation at those budgets")]) + "."
    used = [name for arm, files in PRECISION_SEEDS.items() for seed, name in files.items() if seed in runs[arm]]
    return out + note(
        "`benchmarks/workflow_run.py` in a fresh copy of the project per run, `--vars.seed S` (MSLM's and transformer + `ner`'s",
        "seed), two runs side by side, one torch thread each, on the 2-core, 24 GiB CPU workplace machine (AMD EPYC with native",
        "bf16), no GPU; seeds 1 and 2 without spaCy's CNN (`--skip train-cnn evaluate-cnn compare`). Larger budgets:",
        "`--vars.mslm_steps 200 --vars.train_epochs 6`; no adaptation: the same with `--vars.trf_model training/base`, the",
        "`mslm` step skipped. The time ratio compares the steps that compute in `precision` (a run beside another one: upper",
        "bounds, and the two sides of a pair did not always run beside the same job). Interval: the mean paired difference ±",
        "t(0.975, n − 1) × std / √n over the seeds that both rows have.",
        "Sources: " + ", ".join(source_link(name, prefix) for name in used) + ".",
    )
