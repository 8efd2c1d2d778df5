"""Render the generated tables of README.md, docs/*.md and ARCHITECTURE.md from their sources.

Every table of figures in the documentation sits between `<!-- table:NAME -->` and
`<!-- /table:NAME -->`. This script renders each NAME from the benchmarks' committed outputs in
`benchmarks/results/` (their JSON, or the Markdown a benchmark wrote where it wrote no JSON),
from `project.yml` and from the package itself (pinned models, factory defaults, commands), and
writes it in place. Nothing between the markers is typed by hand; edit the source and re-run.

    python benchmarks/render_tables.py            # rewrite every generated block
    python benchmarks/render_tables.py --check    # exit 1, naming file and block, if one differs
    python benchmarks/render_tables.py --root DIR # another copy of the repository

A source that no longer holds what a block reads (a renamed file, a reworded results note) stops
the script with the file and the pattern it looked for.
"""
import argparse
import json
import os
import re
import statistics
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import srsly

ROOT = Path(__file__).resolve().parent.parent
RESULTS = "benchmarks/results"
#: The files whose blocks are rendered (globs, relative to the root).
TARGETS = ("README.md", "ARCHITECTURE.md", "docs/*.md")
BLOCK = re.compile(r"<!-- table:(?P<name>[\w:.-]+) -->\n(?P<body>.*?)<!-- /table:(?P=name) -->", re.S)
OPENING = re.compile(r"<!-- table:([\w:.-]+) -->")


class SourceError(RuntimeError):
    """A source lacks what a block reads from it."""


# -- reading sources ------------------------------------------------------------------------------
class Sources:
    """The repository's files, read once."""

    def __init__(self, root: Path):
        self.root = root

    @lru_cache(maxsize=None)
    def text(self, rel: str) -> str:
        path = self.root / rel
        if not path.exists():
            raise SourceError(f"{rel}: not found")
        return path.read_text(encoding="utf8")

    @lru_cache(maxsize=None)
    def json(self, rel: str) -> Any:
        return json.loads(self.text(rel))

    @lru_cache(maxsize=None)
    def project(self) -> Dict[str, Any]:
        return srsly.yaml_loads(self.text("project.yml"))

    def result(self, name: str) -> str:
        return self.text(f"{RESULTS}/{name}")

    def find(self, rel: str, pattern: str, group: int = 1, flags: int = 0, text: Optional[str] = None, flat: bool = False) -> str:
        """Group `group` of the first match of `pattern` in `rel` (or in `text`, a part of it), its
        whitespace runs collapsed; `flat`: match the text with its line breaks as spaces."""
        text = self.text(rel) if text is None else text
        match = re.search(pattern, " ".join(text.split()) if flat else text, flags)
        if not match:
            raise SourceError(f"{rel}: no match for {pattern!r}")
        return " ".join(match.group(group).split())


def md_tables(text: str) -> List[List[List[str]]]:
    """Every Markdown table of `text` as rows of cells (header first, the --- row left out)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def table_after(src: Sources, rel: str, heading: str) -> List[List[str]]:
    """The first Markdown table after the first line that starts with `heading`."""
    text = src.text(rel)
    at = text.find(heading)
    if at < 0:
        raise SourceError(f"{rel}: no {heading!r}")
    tables = md_tables(text[at:])
    if not tables:
        raise SourceError(f"{rel}: no table after {heading!r}")
    return tables[0]


def fixed_width_block(src: Sources, rel: str, first_word: str = "adaptation") -> List[List[str]]:
    """Rows of the first fixed-width table (columns 2+ spaces apart, a ---- rule) starting with `first_word`."""
    for block in re.findall(r"```\n(.*?)```", src.text(rel), re.S):
        lines = [line.rstrip() for line in block.strip("\n").splitlines()]
        if lines and lines[0].startswith(first_word):
            rows = []
            for line in lines:
                if not line.strip():
                    break
                if not set(line.replace(" ", "")) <= {"-"}:
                    rows.append(re.split(r"\s{2,}", line.strip()))
            return rows
    raise SourceError(f"{rel}: no fixed-width table starting with {first_word!r}")


# -- formatting -------------------------------------------------------------------------------------
def cell(text: Any) -> str:
    """A table cell from plain text: `|` escaped, and `<`/`>` outside code spans as entities."""
    parts = str(text).split("`")
    for i, part in enumerate(parts):
        part = part.replace("|", "\\|")
        parts[i] = part if i % 2 else part.replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: Optional[str] = None) -> str:
    """A Markdown table; `align` holds one of l/r per column (default: all left)."""
    rule = ["---:" if a == "r" else "---" for a in (align or "l" * len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(values: Sequence[float], digits: int = 2, signed: bool = False, of: Optional[int] = None) -> str:
    """'mean ± sample std' ('(n = k)' added when fewer than `of` values); '–' for none."""
    if not values:
        return "–"
    sign = "+" if signed else ""
    mean = statistics.mean(values)
    if len(values) == 1:
        out = f"{mean:{sign}.{digits}f}"
    else:
        out = f"{mean:{sign}.{digits}f} ± {statistics.stdev(values):.{digits}f}"
    if of is not None and len(values) < of:
        out += f" (n = {len(values)})"
    return out.replace("-", "−")


def signed(value: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f}".replace("-", "−")


def note(*parts: str) -> str:
    """A caption line under a table."""
    return "\n\n" + " ".join(p.strip() for p in parts if p)


def source_link(name: str, prefix: str) -> str:
    return f"[`{name}`]({prefix}{RESULTS}/{name})"


# -- the blocks -------------------------------------------------------------------------------------
Renderer = Callable[[Sources, str, str], str]
RENDERERS: Dict[str, Renderer] = {}


def block(name: str) -> Callable[[Renderer], Renderer]:
    def register(func: Renderer) -> Renderer:
        RENDERERS[name] = func
        return func

    return register


def render(src: Sources, name: str, rel_file: str) -> str:
    """The body of block `name` in the file `rel_file` (links are relative to that file)."""
    base, _, arg = name.partition(":")
    if base not in RENDERERS:
        raise SourceError(f"{rel_file}: unknown generated block {name!r} (known: {', '.join(sorted(RENDERERS))})")
    prefix = "../" * rel_file.count("/")
    return RENDERERS[base](src, arg, prefix).rstrip("\n") + "\n"


# The `all` workflow and spaCy's CNN on NCBI-disease ---------------------------------------------------
def _all_workflow(src: Sources) -> Dict[str, Any]:
    rel = f"{RESULTS}/all_workflow_minilm.md"
    rows = md_tables(src.text(rel))[0]
    return {
        "rel": rel,
        "rows": rows,
        "machine": src.find(rel, r"the (quiet [^,]+, [^,]+ CPU workplace machine), no GPU", flat=True),
        "date": src.find(rel, r"(\d{4}-\d\d-\d\d)"),
        "wall": src.find(rel, r"(\d+ min \d+ s) wall"),
        "rss": src.find(rel, r"peak RSS ([\d.]+ GB)"),
    }


def _crossner(src: Sources) -> Dict[str, Any]:
    rel = f"{RESULTS}/fewshot_crossner.md"
    data = src.json(f"{RESULTS}/fewshot_crossner.json")
    cells = {(r["target"], r["k"], r["row"]): r for r in data["rows"]}
    # Rows run later on the same episodes (benchmarks/fewshot_crossner.py --results-name fewshot_peers /
    # fewshot_losses / ...): taken when their episode settings agree, and a cell both have must agree.
    for peers_rel in (f"{RESULTS}/fewshot_peers.json", f"{RESULTS}/fewshot_losses.json", f"{RESULTS}/fewshot_episodic.json",
                      f"{RESULTS}/fewshot_trf_peer.json", f"{RESULTS}/fewshot_k10_source.json",
                      f"{RESULTS}/fewshot_contrastive_span.json", f"{RESULTS}/fewshot_in_context.json",
                      f"{RESULTS}/fewshot_source_in_context.json", f"{RESULTS}/fewshot_k10_losses.json"):
        if not (src.root / peers_rel).exists():
            continue
        peers = src.json(peers_rel)
        for key in data["settings"]:  # every episode and target-stage setting
            if peers["settings"].get(key) != data["settings"][key]:
                raise SourceError(f"{peers_rel}: {key} {peers['settings'].get(key)} differs from fewshot_crossner.json's {data['settings'][key]}")
        for r in peers["rows"]:
            key = (r["target"], r["k"], r["row"])
            if key in cells and _more_episodes(cells[key], r):
                cells[key] = r  # a later run of the same cell over more episodes, agreeing on the first ones
            elif key in cells:
                if abs(cells[key]["f_mean"] - r["f_mean"]) > 0.01 or cells[key]["episodes"] != r["episodes"]:
                    raise SourceError(f"{peers_rel}: {key} scores {r['f_mean']:.2f}, the table {cells[key]['f_mean']:.2f}: not the same episodes")
            else:
                cells[key] = r
            ours = next((c for c in data["rows"] if c["row"] == "source_full"), None)
            if "source" in r and ours and _source_settings(ours) != _source_settings(r):
                raise SourceError(f"{peers_rel}: {key} had another source stage than fewshot_crossner.json's")
            if "target_stage" in r and ours and r["target_stage"] != ours["target_stage"]:
                raise SourceError(f"{peers_rel}: {key} had another target stage than fewshot_crossner.json's")
    return {
        "settings": data["settings"],
        "cells": cells,
        "domains": sorted({r["target"] for r in data["rows"]}, key=["politics", "science", "ai"].index),
        "machine": src.find(rel, r"on (a \d+-core CPU[^.;]*)"),
        "threads": src.find(rel, r"with (OMP_NUM_THREADS=\d+)"),
        "source": src.find(rel, r"Source stage of the source_\* rows: (.+?), last losses"),
        "target": src.find(rel, r"Target stage of source_full[^:]*: (.+?) \(fresh"),
    }


def _more_episodes(old: Dict[str, Any], new: Dict[str, Any]) -> bool:
    """Whether `new` is the same (target, K, row) cell as `old` measured on more episodes: its
    per-episode F1 starts with `old`'s (to 0.01)."""
    before, after = old.get("f_episodes"), new.get("f_episodes")
    return (before is not None and after is not None and len(after) > len(before)
            and all(abs(a - b) <= 0.01 for a, b in zip(before, after)))


#: Settings only the episodic source stage has (its other settings, budget included, are the plain one's).
EPISODIC_SOURCE_ONLY = ("source_n_way", "source_k_shot", "source_pool")


def _source_settings(row: Dict[str, Any]) -> Dict[str, Any]:
    """A row's source-stage settings, as far as both source stages share them; older results name
    the source stage's negative_rate `negative_rate` and predate `source_without_fgm` (off then)."""
    settings = {k: v for k, v in row["source"]["settings"].items() if k not in EPISODIC_SOURCE_ONLY}
    if "negative_rate" in settings:
        settings.setdefault("source_negative_rate", settings.pop("negative_rate"))
    settings.setdefault("source_negative_rate", 1.0)
    settings.setdefault("source_without_fgm", False)
    return settings


def _f(row: Optional[Dict[str, Any]], of: Optional[int] = None) -> str:
    """'mean ± std' of a row's episodes, '(n = k)' added when it has fewer than `of`."""
    if row is None:
        return "–"
    if of is not None and row["episodes"] < of:
        spread = f" ± {row['f_std']:.2f}" if row["episodes"] > 1 else ""
        return f"{row['f_mean']:.2f}{spread} (n = {row['episodes']})"
    return f"{row['f_mean']:.2f} ± {row['f_std']:.2f}"


@block("headline")
def headline(src: Sources, arg: str, prefix: str) -> str:
    run = _all_workflow(src)
    names = {r[0]: r for r in run["rows"][1:]}
    package = next(r for name, r in names.items() if name.startswith("en_"))
    cnn = names["spacy_cnn_ner"]
    recorded = _workflow_run(src)  # the newest run of the current defaults, when recorded
    if recorded is not None:
        package = [package[0], "", "", f"{recorded['package']['f']:.2f}"]
        cnn = ["spacy_cnn_ner", "", "", f"{recorded['cnn']['f']:.2f}"]
        m = recorded["machine"]
        shared = m["load_after"][0] > m["cpus"]  # other jobs ran beside it: its wall time is an upper bound
        run = {**run, "date": recorded["date"],
               "machine": f"{m['cpus']}-core, 24 GiB CPU workplace machine (load average {m['load_before'][0]} at the start, "
                          f"{m['load_after'][0]} at the end{', other jobs beside it' if shared else ''})"}
    few = _crossner(src)
    s = few["settings"]
    k = min(k for _, k, _ in few["cells"])

    def per_domain(row: str) -> str:
        return " / ".join(_f(few["cells"].get((d, k, row))) for d in few["domains"])

    domains = " / ".join(few["domains"])
    baselines = src.json(f"{RESULTS}/ner_baselines.json")
    unadapted = next(r for r in baselines["rows"] if r["pipeline"].endswith("unadapted)"))
    best = max(float(package[3]), unadapted["F1"], float(cnn[3]))

    def f1(value: float) -> str:
        return f"**{value:.2f}**" if value == best else f"{value:.2f}"

    rows = [
        ["NCBI-disease, full training split", f"`{package[0]}`: all-MiniLM-L6-v2 adapted with MSLM, spacy-transformers + `ner`", f1(float(package[3]))],
        ["", f"the same transformer + `ner` on all-MiniLM-L6-v2 without adaptation ({baselines['trf_steps']} steps, `benchmarks/ner_baselines.py`, its own run)",
         f1(unadapted["F1"])],
        ["", "spaCy's CNN `ner` (efficiency config), same data, early stopping", f1(float(cnn[3]))],
    ]
    other_sets = _other_set_runs(src)
    if other_sets:
        sets = " / ".join(name for name, _ in other_sets)
        rows += [
            [f"{sets}, full training splits", "the `all` workflow's package on each set (`--vars.dataset`)",
             " / ".join(f"**{run['package']['f']:.2f}**" if run["lead"] > 0 else f"{run['package']['f']:.2f}" for _, run in other_sets)],
            ["", "spaCy's CNN `ner`, same data, same run", " / ".join(f"{run['cnn']['f']:.2f}" for _, run in other_sets)],
        ]
    rows += [
        [f"CrossNER {domains}, {s['n_way']}-way {k}-shot", "`fewshot_ner` (SmolLM2-135M-Instruct) after the conll2003 source stage", per_domain("source_full")],
        ["", "spaCy's CNN `ner` trained on the same support set", per_domain("spacy_ner")],
        ["", "spaCy's CNN `ner` trained on the source corpus first, then on the support set (the fair peer of the source stage)",
         per_domain("spacy_ner_source") if any(r == "spacy_ner_source" for *_, r in few["cells"]) else "**not measured yet**"],
    ]
    if any(r == "spacy_trf_source" for *_, r in few["cells"]):
        rows.append(["", "spaCy's MiniLM `transformer` + `ner`, the same way (source corpus first, then the support set)", per_domain("spacy_trf_source")])
    rows += [
        ["", "`fewshot_ner` on the support set alone (no source stage)", per_domain("full")],
        ["", "zero-shot SmolLM2-135M-Instruct", per_domain("zero_shot")],
    ]
    out = table(["test set", "pipeline", "F1"], rows)
    source = re.search(r"^(\w+) \(.*?(\d+ updates of \d+ at lr [\d.]+)", few["source"])
    if not source:
        raise SourceError(f"{RESULTS}/fewshot_crossner.md: no 'N updates of B at lr X' in the source-stage note")
    return out + note(
        f"NCBI-disease: one run (no spread measured) of `spacy project run all` with its defaults, {run['date']},"
        + ("" if recorded is None or "ner_budget" in recorded else " before the transformer + `ner` budget followed the data (`train-budget`; a fixed step count then),"),
        "the other BLURB sets: one run each (table `workflow-per-set` in docs/benchmarks.md for dates, budgets and load);" if other_sets else "",
        f"on the {run['machine']}, no GPU; entity-level F1 of `spacy evaluate` on the test split. Bold: the best NCBI-disease row; on the other sets, a package ahead of the CNN.",
        "The workflow keeps MSLM on because adapting with it is what this package demonstrates, not because it wins at full",
        "labels: there it is within the seed spread of no adaptation (the MSLM verdict below); `--vars.trf_model training/base`",
        "switches it off and saves the `mslm` step.",
        f"CrossNER: micro-F1 mean ± std over {next(iter(few['cells'].values()))['episodes']} episodes a domain, the same support sets",
        f"and {s['query_limit']} seeded test sentences for every row; source stage: {source.group(1)}, {source.group(2)}; {few['machine']}.",
        f"Budgets, repeated runs and every other row: [docs/benchmarks.md]({prefix}docs/benchmarks.md).",
    )


@block("all-workflow")
def all_workflow(src: Sources, arg: str, prefix: str) -> str:
    run = _all_workflow(src)
    header, *rows = run["rows"]
    return table(header, rows, "l" + "r" * (len(header) - 1)) + note(
        f"One run of `python -m spacy project run all .` with the defaults of {run['date']} on a clean clone:",
        f"the {run['machine']}, no GPU, default threads; {run['wall']} wall, peak RSS {run['rss']}.",
        "P/R/F1 and words/s are `spacy evaluate`'s on the test split.",
        f"Source: {source_link('all_workflow_minilm.md', prefix)}.",
    )


def _options(run: Dict[str, Any]) -> Dict[str, str]:
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


def _other_set_runs(src: Sources) -> List[Tuple[str, Dict[str, Any]]]:
    """(set name, run) of each recorded `all` run on a set other than the project's default."""
    default = srsly.read_yaml(src.root / "project.yml")["vars"]["dataset"]
    runs = []
    for path in sorted((src.root / RESULTS).glob(PER_SET_RUNS)):
        run = src.json(f"{RESULTS}/{path.name}")
        dataset = _options(run).get("--vars.dataset", default)
        if dataset != default and "lead" in run:
            runs.append((dataset.removesuffix("-IOB"), run))
    return runs


def _workflow_run(src: Sources) -> Optional[Dict[str, Any]]:
    """benchmarks/results/workflow_all.json (benchmarks/workflow_run.py), if a run was recorded."""
    rel = f"{RESULTS}/workflow_all.json"
    return src.json(rel) if (src.root / rel).exists() else None


def _overrides(run: Dict[str, Any], skip: Sequence[str] = ("--vars.asset_mirror",)) -> str:
    pairs = [f"{name} {value}" for name, value in _options(run).items() if name not in skip]
    return ", ".join(f"`{p}`" for p in pairs) or "none"


def _steps_table(run: Dict[str, Any]) -> str:
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


def _run_machine(run: Dict[str, Any]) -> str:
    """Cores, threads and load of a `benchmarks/workflow_run.py` record, and what the load means for its times."""
    m = run["machine"]
    return (f"{m['cpus']} cores, no GPU, OMP_NUM_THREADS {_threads(m)}; load average {m['load_before'][0]} "
            f"before and {m['load_after'][0]} after the run (other jobs shared the machine when it is above {_busy_load(m)}: "
            "the wall times are then upper bounds).")


@block("workflow-run")
def workflow_run(src: Sources, arg: str, prefix: str) -> str:
    run = _workflow_run(src)
    if run is None:
        return "No run of `benchmarks/workflow_run.py` is recorded yet."
    out = _steps_table(run)
    pk, cnn = run["package"], run["cnn"]
    out += "\n\n" + table(["pipeline (NCBI-disease test)", "P", "R", "F1", "words/s"], [
        ["the package (`evaluate`: `training/ner/model-best`)", f"{pk['p']:.2f}", f"{pk['r']:.2f}", f"**{pk['f']:.2f}**", f"{pk['words_per_s']:,.0f}"],
        ["spaCy's CNN `ner` (`evaluate-cnn`)", f"{cnn['p']:.2f}", f"{cnn['r']:.2f}", f"{cnn['f']:.2f}", f"{cnn['words_per_s']:,.0f}"],
        ["F1 lead", "", "", f"**{run['lead']:+.2f}**", ""],
    ], "lrrrr")
    return out + note(
        f"`python benchmarks/workflow_run.py --workflow {run['workflow']}` ({run['date']}): `spacy project run` of each step of `{run['workflow']}`",
        f"in a fresh copy of the project, defaults of its date except: {_overrides(run)}"
        + ("" if "ner_budget" in run else " (before the transformer + `ner` budget followed the data: a fixed step count)") + ";",
        _run_machine(run), "One run: no spread measured.",
        f"Source: {source_link('workflow_all.json', prefix)}.",
    )


#: The per-set runs of the `all` workflow: workflow_all.json (the project's default set) and
#: workflow_all_<set>.json (`--vars.dataset <set>-IOB`).
PER_SET_RUNS = "workflow_all*.json"


@block("workflow-per-set")
def workflow_per_set(src: Sources, arg: str, prefix: str) -> str:
    default = srsly.read_yaml(src.root / "project.yml")["vars"]["dataset"]
    rows, names, notes = [], [], []
    for path in sorted((src.root / RESULTS).glob(PER_SET_RUNS)):
        run = src.json(f"{RESULTS}/{path.name}")
        if "lead" not in run:
            continue
        options = _options(run)
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
                     f"{run['machine']['load_before'][0]} / {(run['machine'].get('load_after') or ['–'])[0]}", _overrides(run, ("--vars.asset_mirror", "--vars.dataset")), run["date"]])
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
    run = src.json(f"{RESULTS}/precision_speed.json")
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
    runs = [(label, name, src.json(f"{RESULTS}/{name}")) for label, name in PRECISION_RUNS
            if label in ("fp32", "bf16") or (src.root / RESULTS / name).exists()]
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
        options = _options(run)
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
        "each: no seed spread measured (two seeds of the same fp32 settings differed by about one F1 point: table `ner-runs`).",
        "Sources: " + ", ".join(source_link(name, prefix) for _, name, _ in runs) + ".",
    )


#: fewshot_ner's rows measured in bf16 (fewshot_crossner.py --precision bf16), and the fp32 results files
#: that hold the same rows' per-episode F1 on the same episodes.
PRECISION_FEWSHOT = "fewshot_bf16.json"
PRECISION_FEWSHOT_FP32 = ("fewshot_peers.json", "fewshot_source_in_context.json")


@block("precision-fewshot")
def precision_fewshot(src: Sources, arg: str, prefix: str) -> str:
    bf16 = src.json(f"{RESULTS}/{PRECISION_FEWSHOT}")
    fp32 = {}
    for name in PRECISION_FEWSHOT_FP32:
        for r in src.json(f"{RESULTS}/{name}")["rows"]:
            if r.get("f_episodes"):
                fp32.setdefault((r["target"], r["k"], r["row"]), (r, name))
    rows, names = [], set()
    for r in bf16["rows"]:
        ref, name = fp32[(r["target"], r["k"], r["row"])]
        names.add(name)
        diffs = [b - a for a, b in zip(ref["f_episodes"], r["f_episodes"])]
        rows.append([f"{r['target']}, K = {r['k']}", CROSSNER_ROWS.get(r["row"], r["row"]),
                     " / ".join(f"{v:.2f}" for v in ref["f_episodes"]), " / ".join(f"{v:.2f}" for v in r["f_episodes"]),
                     mean_std(diffs, signed=True), f"{ref['sents_per_s']:.2f}", f"{r['sents_per_s']:.2f}"])
    table_settings = src.json(f"{RESULTS}/fewshot_crossner.json")["settings"]
    differ = sorted(k for k in bf16["settings"].keys() & table_settings.keys()
                    if k != "base_model" and bf16["settings"][k] != table_settings[k])
    if differ:
        raise SourceError(f"{RESULTS}/{PRECISION_FEWSHOT}: settings {differ} differ from fewshot_crossner.json's")
    return table(["episodes", "row", "F1 per episode, fp32", "F1 per episode, bf16", "bf16 − fp32, paired", "query sentences/s fp32",
                  "bf16"], rows, "llllrrr") + note(
        "`python benchmarks/fewshot_crossner.py --precision bf16` with the CrossNER table's settings and episodes (its own",
        "source stage, run in bf16), against the same rows of the fp32 table on the same episodes; micro-F1 per episode, the",
        "paired difference as mean ± std over the episodes. Query sentences/s: one thread, other jobs beside it, so only",
        f"roughly comparable. Sources: {source_link(PRECISION_FEWSHOT, prefix)}, "
        + ", ".join(source_link(name, prefix) for name in sorted(names)) + ".",
    )


#: The `all` steps whose matmuls follow `vars.precision`.
PRECISION_STEPS = ("mslm", "train", "evaluate", "visualize")


@block("ner-runs")
def ner_runs(src: Sources, arg: str, prefix: str) -> str:
    rel = f"{RESULTS}/ner_budget_minilm.md"
    section = "## 2026-11-27: batching"
    header, *rows = table_after(src, rel, section)
    keep = [header.index(h) for h in ("run", "base given to `transformer`", "batches", "test P", "test R", "test F1", "train wall s")]
    body = [[r[i].replace("**", "") for i in keep] for r in rows]
    text = src.text(rel)
    machine = src.find(rel, r"Machine: (.+?)\n\n", flags=re.S)
    runs = src.find(rel, r"Runs \((.+?)\):", text=text[text.find(section):])
    return table([header[i] for i in keep], body, "lllrrrr") + note(
        f"Machine: {machine}", f"Runs: {runs}.", f"Source: {source_link('ner_budget_minilm.md', prefix)}.",
    )


@block("ner-baselines")
def ner_baselines(src: Sources, arg: str, prefix: str) -> str:
    data = src.json(f"{RESULTS}/ner_baselines.json")
    rel = f"{RESULTS}/ner_baselines.md"
    rows = [[r["pipeline"], f"{r['train_minutes']:.1f}", f"{r['P']:.2f}", f"{r['R']:.2f}", f"{r['F1']:.2f}"] for r in data["rows"]]
    adapted = src.find(rel, r"\((head warm-up[^)]*)\)")
    seeds = src.find(rel, r"(Seed \d+, all three rows)")
    date = src.find(rel, r"Run (\d{4}-\d\d-\d\d)")
    machine = src.find(rel, r"Run \d{4}-\d\d-\d\d on (the .+?) \(no GPU\)", flat=True)
    threads = src.find(rel, r"\(no GPU\), (one torch thread .+?job beside it)", flat=True)
    return table(["pipeline", "train min", "P", "R", "F1"], rows, "lrrrr") + note(
        f"{data['dataset']} test split; transformer rows: {data['trf_steps']} steps at a peak learning rate of {data['trf_lr']}",
        f"(`configs/ner_trf.cfg`); the adapted row reads the `all` workflow's `training/mslm` ({adapted}).",
        f"{seeds}; run {date} on {machine}, no GPU, {threads}.",
        f"Speed is left out here: the `all` workflow's table measures it. Source: {source_link('ner_baselines.json', prefix)}.",
    )


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
        for key, value in src.json(f"{RESULTS}/{name}").items():
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
    mds = [f"{RESULTS}/{f[:-5]}.md" for f in files]
    budgets: Dict[str, List[str]] = {}
    variants: List[str] = []
    for rel in mds:
        dataset = src.find(rel, r"^adaptation\s+(.+?) F1", flags=re.M)
        names = budgets.setdefault(src.find(rel, r"^budget: (.+)$", flags=re.M), [])
        if dataset not in names:
            names.append(dataset)
        variant = re.search(r"^mslm-[^:\n]+: (MSLM with .+)$", src.text(rel), re.M)
        if variant and variant.group(1) not in variants:
            variants.append(variant.group(1))
    builds: Dict[str, List[str]] = {}  # base description -> the files whose cells adapted it
    for name, rel in zip(files, mds):
        path, rest = src.find(rel, r"^base: [^(]*\((.+)\)$", flags=re.M).split(", ", 1)
        builds.setdefault(f"{Path(path).name}, {rest}", []).append(name)  # where the encoder lay is no difference
    if len(builds) == 1:
        base = f"Base: {next(iter(builds))}."
    else:  # the same encoder, head warm-ups built at different times: say which cells used which
        shared = os.path.commonprefix(list(builds))
        shared = shared[:shared.rfind(": ") + 2] if ": " in shared else ""
        base = f"Base, in separate builds: {shared}" + "; ".join(
            f"{build[len(shared):]} ({', '.join(f'`{n}`' for n in names)})" for build, names in builds.items()) + "."
    machine = src.find(mds[0], r"Machine: ([^;]+);")
    threads = src.find(mds[0], r"Machine: [^;]+; (one torch thread a process)")
    seeds = src.find(mds[0], r"mean ± std over (seeds \[[\d, ]+\])")
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
    return [(f, name) for f, name in CURVE_FILES if (src.root / RESULTS / name).exists()]


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
        if not (src.root / RESULTS / name).exists():
            continue
        res = src.json(f"{RESULTS}/{name}")
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
    model = _config(src, "configs/mslm.cfg")["model"]
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


def _paired(diffs: Sequence[float], of: int = 3) -> str:
    """'mean ± std' of paired differences, bold when positive on every seed."""
    text = mean_std(diffs, signed=True, of=of)
    return f"**{text}**" if diffs and min(diffs) > 0 else text


@block("mslm-verdict")
def mslm_verdict(src: Sources, arg: str, prefix: str) -> str:
    points = curve_differences(src)
    datasets = [d for d in DATASETS.values() if any(p["dataset"] == d for p in points)]
    fractions = sorted({p["fraction"] for p in points})
    at = {(p["dataset"], p["fraction"]): p for p in points}
    rows = []
    for fraction in fractions:
        row = [f"{100 * fraction:g} %"]
        for dataset in datasets:
            point = at.get((dataset, fraction))
            row += [_paired(point["none"]), _paired(point["uniform"])] if point else ["–", "–"]
        rows.append(row)
    header = ["labelled sentences"] + [f"{d}: MSLM {col}, paired" for d in datasets for col in ("− no adaptation", "− uniform MLM")]
    every = [p for p in points if min(p["none"]) > 0]
    plus_one = [p for p in points if min(p["none"]) >= 1.0]
    names = lambda ps: ", ".join(f"{p['dataset']} {100 * p['fraction']:g} %" for p in ps) or "none of them"
    verdict = (f"MSLM is ahead of no adaptation on every seed at {len(every)} of the {len(points)} points measured ({names(every)}), "
               f"and by +1.0 F1 or more on every seed at {names(plus_one)}.")
    default = default_mslm_method(src)
    return table(header, rows, "l" + "r" * (len(header) - 1)) + note(
        verdict,
        f"MSLM: {method_label(CURVE_MSLM)[len('MSLM, '):]}"
        + ("" if "weighting" in method_label(CURVE_MSLM) else ", softmax-share weighting")
        + (" (the default of `configs/mslm.cfg`)" if default == CURVE_MSLM
           else f" (`configs/mslm.cfg` now defaults to {method_label(default)})") + ", on all-MiniLM-L6-v2",
        "with a new MLM head; 500 adaptation steps, 300 NER steps; below 100 % labelled, the rest of the training text is",
        "adapted on unlabelled. Paired by seed (the same NER seed and labelled sample), mean ± std in F1 points over 3 seeds",
        "unless n says fewer; bold: positive on every seed. Rows, spreads and builds: the learning curve in",
        f"[docs/mslm.md]({prefix}docs/mslm.md#with-few-labels).",
    )


@block("fewshot-verdict")
def fewshot_verdict(src: Sources, arg: str, prefix: str) -> str:
    few = _crossner(src)
    margins = fewshot_margins(few)
    k = min(m["k"] for m in margins)
    shown = [m for m in margins if m["k"] == k]
    wins = [m for m in shown if m["margin"] > m["spread"]]
    losses = [m for m in shown if m["margin"] < 0]
    lead = ("**Few-shot beats its best fair peer**" if len(wins) >= 2 and len(losses) == 0
            else "**Few-shot does not yet beat its best fair peer**")
    per = "; ".join(f"{m['domain']} {signed(m['margin'])} ({margin_reading(m['margin'], m['spread'])}; the best peer: {FAIR_PEERS[m['peer']]})"
                    for m in shown)
    longer = _longer_source(src, few)
    after = ""
    if longer is not None:
        more = "; ".join(f"{m['domain']} {signed(m['margin'])} ({margin_reading(m['margin'], m['spread'])})"
                         for m in longer["margins"] if m["k"] == k)
        after = (f" With a longer source stage ({source_stage_name(longer['source'])}, {longer['source']['train_s'] / 60:.0f} min"
                 f" on one CPU thread with other jobs beside it; more than the `fewshot` workflow's 30-minute CPU budget fits)"
                 f" the margins are {more}.")
    return (f"{lead} at K = {k} (the same episodes, the same source corpus or the same shots): `fewshot_ner`'s"
            f" source path minus the best peer is {per}.{after} Every row and K = 10:"
            f" [docs/fewshot.md]({prefix}docs/fewshot.md#where-it-stands); every figure, with its machine, budget and seeds:"
            f" [docs/benchmarks.md]({prefix}docs/benchmarks.md).")


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
    rel = f"{RESULTS}/mslm_ablation_minilm_gpu.md"
    cells = _cells(src, files)
    dataset = "NCBI-disease-IOB"
    methods = methods_of(cells)
    seeds = _seeds(cells)
    out = _ablation_table(cells, [dataset], ["f1", "term", "generic"], methods, "uniform")
    steps = "; ".join(f"{m}: " + "/".join(str(cells[(dataset, m, s)]["ner"]["best_step"]) for s in seeds) for m in methods)
    machine = src.find(rel, r"Machine: (one NVIDIA [^,]+)")
    side = src.find(rel, r"(Fifteen processes side by side)").lower()
    command = src.find(rel, r"each `(benchmarks/mslm_ablation\.py.+?)`", flags=re.S)
    return out + note(
        f"Machine: {machine}; {side}, one per (seed, adaptation), each `{command}`.",
        "**The NER runs were cut by time, not steps**: test F1 is that of the best dev evaluation reached, at NER step",
        f"{steps} (seeds {'/'.join(map(str, seeds))}), so the F1 column compares runs of unequal length; the step-matched dev F1 below is the fair F1 comparison.",
        f"Source: {source_link('mslm_ablation_minilm_gpu.json', prefix)}.",
    )


@block("mslm-ablation-gpu-dev")
def mslm_ablation_gpu_dev(src: Sources, arg: str, prefix: str) -> str:
    rel = f"{RESULTS}/mslm_ablation_minilm_gpu.md"
    heading = src.find(rel, r"## (Step-matched: .+)")
    header, *rows = table_after(src, rel, "## Step-matched")
    return table(header, rows, "l" + "r" * (len(header) - 1)) + note(
        f"{heading}, the same runs as the table above. Source: {source_link('mslm_ablation_minilm_gpu.md', prefix)}.",
    )


@block("mslm-ablation-small-bert")
def mslm_ablation_small_bert(src: Sources, arg: str, prefix: str) -> str:
    rel = f"{RESULTS}/mslm_ablation.md"
    header, *rows = fixed_width_block(src, rel)
    keep = [i for i, h in enumerate(header) if i == 0 or h.endswith(("F1", "term p", "term top-1"))]
    body = [[r[i] if i < len(r) else "–" for i in keep] for r in rows]
    body = [[("–" if c == "-" else re.sub(r" \(n=\d+\)", "", c).replace("-", "−")) if j else c for j, c in enumerate(r)] for r in body]
    budget = src.find(rel, r"^budget: (.+)$", flags=re.M)
    base = src.find(rel, r"^base: \S+ \((.+)\)$", flags=re.M)
    seeds = src.find(rel, r"mean ± std over (seeds \[[\d, ]+\])")
    machine = src.find(rel, r"Machine: ([^;]+);")
    return table([header[i] for i in keep], body, "l" + "r" * (len(keep) - 1)) + note(
        f"Budget: {budget}. Base: {base}, pretrained here on the PubMed abstracts only.",
        f"Mean ± std over {seeds}, in %; `spacy_cnn (peer)`: spaCy's CNN `ner` for the same NER steps.",
        f"Machine: {machine}. Source: {source_link('mslm_ablation.md', prefix)}.",
    )


@block("head-warmup")
def head_warmup(src: Sources, arg: str, prefix: str) -> str:
    rel = f"{RESULTS}/ner_budget_minilm.md"
    section = "## 2026-11-28: the head warm-up"
    header, *rows = table_after(src, rel, section)
    text = src.text(rel)[src.text(rel).find(section):]
    setting = src.find(rel, r"The same MSLM adaptation \((.+?)\) and NER\s+\((.+?)\)", text=text)
    ner = src.find(rel, r"The same MSLM adaptation \(.+?\) and NER\s+\((.+?)\)", text=text)
    threads = src.find(rel, r"--no-peer`, (one thread, two jobs side by side)", text=text)
    machine = src.find(rel, r"Machine: ([^;]+);")
    return table(header, rows, "l" + "r" * (len(header) - 1)) + note(
        f"MiniLM with its new MLM head warmed up alone or not, then the same MSLM adaptation ({setting}) and NER ({ner}),",
        f"NCBI-disease; {machine}, {threads}. Source: {source_link('ner_budget_minilm.md', prefix)}.",
    )


@block("mslm-throughput")
def mslm_throughput(src: Sources, arg: str, prefix: str) -> str:
    runs = [("mslm_throughput_minilm.md", r"Machine: (.+?)\.\s"), ("mslm_ablation_minilm_gpu.md", r"Machine: (one NVIDIA [^,]+)")]
    rows, commands = [], []
    for name, machine in runs:
        rel = f"{RESULTS}/{name}"
        speed = re.search(r"wordpieces/s \(wall\)\s+MSLM ([\d,]+) \| uniform MLM \(same layers\) ([\d,]+) \| plain HF uniform MLM ([\d,]+)", src.text(rel))
        if not speed:
            raise SourceError(f"{rel}: no 'wordpieces/s (wall)' line")
        uniform = src.find(rel, r"ratio MSLM / uniform MLM \(same layers\) = ([\d.]+ wall, [\d.]+ CPU)")
        plain = src.find(rel, r"ratio MSLM / plain HF uniform MLM\s+= ([\d.]+ wall, [\d.]+ CPU)")
        rows.append([src.find(rel, machine), *speed.groups(), uniform, plain])
        command = src.find(rel, r"`((?:OMP_NUM_THREADS=\d+ python )?benchmarks/mslm_throughput\.py[^`]*)`")
        commands.append(f"`{command}`")
    header = ["machine", "MSLM wordpieces/s", "uniform MLM, same layers", "plain HF uniform MLM", "MSLM / uniform", "MSLM / plain HF"]
    caveat = src.find(f"{RESULTS}/mslm_throughput_minilm.md", r"(Short run[^\n]*)")
    return table(header, rows, "lrrrll") + note(
        "all-MiniLM-L6-v2 with its new MLM head, batches of NCBI-disease training text, the objectives' steps interleaved in one run;",
        f"wall (and CPU) ratios. Commands: {' and '.join(commands)}.",
        f"CPU row: {caveat[0].lower()}{caveat[1:]}",
        f"Sources: {source_link('mslm_throughput_minilm.md', prefix)}, {source_link('mslm_ablation_minilm_gpu.md', prefix)}.",
    )


# Few-shot -----------------------------------------------------------------------------------------
CROSSNER_ROWS = {
    "spacy_ner": "spaCy's CNN `ner` on the same support set",
    "spacy_ner_source": "spaCy's CNN `ner` trained on the source corpus first, then on the support set",
    "spacy_trf_source": "spaCy's MiniLM `transformer` + `ner` trained on the source corpus first, then on the support set",
    "zero_shot": "zero-shot SmolLM2",
    "in_context": "SmolLM2 prompted with the support set as solved examples, no update",
    "full": "`fewshot_ner` on the support set alone (full method)",
    "no_contrastive": "support set alone, without the contrastive loss",
    "no_fgm": "support set alone, without FGM",
    "source_zero": "source stage only, no episode update",
    "source_full": "**source stage + full method**",
    "source_no_contrastive": "source stage + episodes without the contrastive loss",
    "source_no_fgm": "source stage + episodes without FGM",
}
#: Rows added later (shown when measured, not listed as missing).
LATER_CROSSNER_ROWS = {
    "spacy_trf_source": CROSSNER_ROWS["spacy_trf_source"],
    "episodic_zero": "episodic multi-source source stage only, no episode update",
    "episodic_full": "episodic multi-source source stage + full method",
    "episodic_no_fgm": "episodic multi-source source stage + episodes without FGM",
    "source_span_no_fgm": "source stage + episodes without FGM, span-level contrast",
    "source_in_context": "source stage, then prompted with the support set as solved examples, no update",
}


@block("fewshot-crossner")
def fewshot_crossner(src: Sources, arg: str, prefix: str) -> str:
    few = _crossner(src)
    s = few["settings"]
    ks = sorted({k for _, k, _ in few["cells"]})
    found = {row for _, _, row in few["cells"]}
    episodes = max(c["episodes"] for c in few["cells"].values())
    known = {**CROSSNER_ROWS, **LATER_CROSSNER_ROWS}
    labels = {**known, **{row: f"`{row}`" for row in sorted(found - set(known))}}
    rows = []
    for k in ks:
        for row, label in labels.items():
            if any((d, k, row) in few["cells"] for d in few["domains"]):
                rows.append([label, k] + [_f(few["cells"].get((d, k, row)), episodes) for d in few["domains"]])
    missing = [f"{label} (`{row}`)" for row, label in CROSSNER_ROWS.items() if row not in found and row not in LATER_CROSSNER_ROWS]
    trainings: Dict[str, tuple] = {}  # one source training of the MiniLM peer -> (its record, the K it served)
    for (_, k, _), c in sorted(few["cells"].items(), key=lambda item: item[0][1]):
        if "trf_source" in c:
            trainings.setdefault(json.dumps(c["trf_source"], sort_keys=True), (c["trf_source"], {}))[1][k] = None
    trf = next(iter(trainings.values()), (None,))[0]
    runs = "; ".join((f"K = {', '.join(map(str, ks))}: " if len(trainings) > 1 else "")
                     + f"{t['train_s'] / 60:.0f} min, dev F1 {100 * t['dev_f']:.2f}" for t, ks in trainings.values())
    trf_note = (f"MiniLM peer (`spacy_trf_source`): `configs/ner_trf.cfg` trained with `spacy train` on all {trf['sentences']:,} "
                f"{trf['source']} training sentences, {trf['epochs']} epochs = {trf['steps']} steps ({runs}"
                f"{', one training each' if len(trainings) > 1 else ''}), then the support set with the config's optimizer."
                if trf else "")
    episodic = {d: c["source"] for (d, _, row), c in few["cells"].items() if row.startswith("episodic_") and c.get("source", {}).get("mode") == "episodic"}
    episodic_note = " ".join(
        f"Episodic source stage ({d}, leave-one-domain-out): {e['episodes']} episodes of {e['settings']['source_n_way']}-way "
        f"{e['settings']['source_k_shot']}-shot from " + ", ".join(f"{n} {name}" for name, n in e["domains"].items())
        + f", {e['instructions']:,} instructions (the plain stage's budget) in {e['updates']} updates of up to "
        f"{e['settings']['source_batch_size']} at lr {e['settings']['source_lr']}, {e['s_per_update']:.1f} s/update with other jobs beside it."
        for d, e in sorted(episodic.items()))
    return table(["row", "K"] + few["domains"], rows, "lr" + "r" * len(few["domains"])) + note(
        f"{s['n_way']}-way K-shot CrossNER episodes, micro-F1 mean ± std over {episodes} episodes (n = k: over the first k only)",
        f"(– : not run); the same support sets and the same {s['query_limit']} seeded test sentences for every row.",
        f"Base: `{Path(s['base_model']).name}`; {s['steps']} updates of {s['batch_size']} support sentences an episode",
        f"at lr {s['lr']}, LoRA r {s['lora_r']}, `prompt_format` {s['prompt_format']}, `negative_rate` {s['negative_rate']}, seed {s['seed']};",
        f"spaCy's `ner`: {s['ner_steps']} updates. Source stage (source_* rows): {few['source']}; episodes after it: {few['target']}.",
        f"Machine: {few['machine']}, {few['threads']}. Source: {source_link('fewshot_crossner.json', prefix)}",
        f"(times and memory per row: {source_link('fewshot_crossner.md', prefix)}).",
        trf_note,
        episodic_note,
        ("**Not measured yet:** " + "; ".join(missing) + ".") if missing else "",
    )


#: The fair peers of `fewshot_ner`'s source path (the same source corpus first, or the same shots in context).
FAIR_PEERS = {
    "spacy_ner_source": "spaCy's CNN `ner`, source corpus first",
    "spacy_trf_source": "spaCy's MiniLM `transformer` + `ner`, source corpus first",
    "in_context": "SmolLM2 prompted with the support set",
}
#: The row the margins are of: the workflow's path (source stage, then the method on the support set).
OUR_FEWSHOT_ROW = "source_full"


def fewshot_margins(few: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Per (K, domain): `fewshot_ner`'s source path against the best fair peer measured on as many
    episodes; `spread` is the larger of the two episode stds."""
    out = []
    for k in sorted({k for _, k, _ in few["cells"]}):
        for domain in few["domains"]:
            ours = few["cells"].get((domain, k, OUR_FEWSHOT_ROW))
            if ours is None:
                continue
            peers = [(few["cells"][(domain, k, p)], p) for p in FAIR_PEERS
                     if (domain, k, p) in few["cells"] and few["cells"][(domain, k, p)]["episodes"] >= ours["episodes"]]
            if not peers:
                continue
            best, name = max(peers, key=lambda pair: pair[0]["f_mean"])
            margin = ours["f_mean"] - best["f_mean"]
            spread = max(ours["f_std"], best["f_std"])
            out.append({"domain": domain, "k": k, "ours": ours, "peer": name, "best": best, "margin": margin, "spread": spread})
    return out


def margin_reading(margin: float, spread: float) -> str:
    side = "ahead" if margin > 0 else "behind"
    return f"{side}, {'beyond' if abs(margin) > spread else 'within'} the spread"


@block("fewshot-margins")
def fewshot_margins_table(src: Sources, arg: str, prefix: str) -> str:
    few = _crossner(src)
    rows = [[m["k"], m["domain"], _f(m["ours"]), FAIR_PEERS[m["peer"]], _f(m["best"]), signed(m["margin"]), f"{m['spread']:.2f}",
             margin_reading(m["margin"], m["spread"])] for m in fewshot_margins(few)]
    header = ["K", "domain", "`fewshot_ner`, source stage + full method", "best fair peer", "its F1", "margin",
              "larger episode std", "reading"]
    short = sorted({(d, k, p) for d, k, p in few["cells"] if p in FAIR_PEERS
                    and (d, k, OUR_FEWSHOT_ROW) in few["cells"] and few["cells"][(d, k, p)]["episodes"] < few["cells"][(d, k, OUR_FEWSHOT_ROW)]["episodes"]})
    return table(header, rows, "rlrlrrrl") + note(
        "Fair peers: " + "; ".join(FAIR_PEERS.values()) + " (rows of the table above), each on the same episodes;",
        "the best is the one with the highest mean among those measured on as many episodes as `fewshot_ner`.",
        ("Not counted, fewer episodes: " + "; ".join(
            f"{FAIR_PEERS[p]}: " + ", ".join(f"{d} K = {k} (n = {few['cells'][(d, k, p)]['episodes']})"
                                             for k, d in sorted(((k, d) for d, k, q in short if q == p),
                                                                key=lambda kd: (kd[0], few["domains"].index(kd[1]))))
            for p in FAIR_PEERS if any(q == p for *_, q in short)) + ".") if short else "",
        "Margin: difference of the means; the per-episode F1 of every row is not stored, so the spread compared",
        "is the larger of the two rows' episode stds, not a paired one.",
    )


#: (results file, base model name) of the base-model comparison, in table order.
BASE_MODEL_RESULTS = (("fewshot_crossner.json", "SmolLM2-135M-Instruct"), ("fewshot_qwen05.json", "Qwen2.5-Coder-0.5B-Instruct (re-upload)"),
                      ("fewshot_qwen15.json", "Qwen2.5-Coder-1.5B-Instruct (re-upload)"))


@block("fewshot-base-models")
def fewshot_base_models(src: Sources, arg: str, prefix: str) -> str:
    """Zero-shot and support-only rows of each base LLM on the same K = 5 episodes."""
    few = _crossner(src)
    rows, shown = [], []
    for name, model in BASE_MODEL_RESULTS:
        if not (src.root / RESULTS / name).exists():
            continue
        data = src.json(f"{RESULTS}/{name}")
        for key in ("n_way", "query_limit", "seed", "max_new_tokens", "steps", "batch_size", "lr"):
            if data["settings"][key] != few["settings"][key]:
                raise SourceError(f"{RESULTS}/{name}: {key} {data['settings'][key]} differs from fewshot_crossner.json's {few['settings'][key]}")
        cells = {(r["target"], r["k"], r["row"]): r for r in data["rows"]}
        shown.append(name)
        for row in ("zero_shot", "full"):
            hits = [cells.get((d, 5, row)) for d in few["domains"]]
            if not any(hits):
                continue
            timed = next(h for h in hits if h)
            rate = f"{timed['s_per_update']:.1f}" if row == "full" else "–"
            rows.append([model, {"zero_shot": "zero-shot, no update", "full": "support set alone, full method"}[row]] + [_f(h, 4) for h in hits]
                        + [rate, f"{timed['sents_per_s']:.2f}", f"{max(h['peak_mib'] for h in hits if h):.0f}"])
    return table(["base model", "row"] + [f"{d} F1" for d in few["domains"]] + ["s/update", "query sents/s", "peak RSS MiB"],
                 rows, "ll" + "r" * (len(few["domains"]) + 3)) + note(
        f"{few['settings']['n_way']}-way 5-shot CrossNER, the episodes and the {few['settings']['query_limit']} seeded query",
        "sentences of the table above; micro-F1 mean ± std over n episodes; support-only rows: the same updates, batch,",
        "learning rate and LoRA rank. s/update and query sentences/s: wall time of the first listed domain, one thread,",
        f"on {few['machine']}. Sources: " + ", ".join(source_link(n, prefix) for n in shown) + ".",
    )


def _later_run(src: Sources, rel: str, few: Dict[str, Any]) -> Dict[str, Any]:
    """A results file of fewshot_crossner.py kept beside the CrossNER table (rows of the same names
    from another source stage): checked to share the table's episode settings and target stage."""
    later = src.json(rel)
    for key in few["settings"]:
        if later["settings"].get(key) != few["settings"][key]:
            raise SourceError(f"{rel}: {key} {later['settings'].get(key)} differs from fewshot_crossner.json's {few['settings'][key]}")
    ours = few["cells"][(few["domains"][0], 5, OUR_FEWSHOT_ROW)]
    if any(r.get("target_stage") not in (None, ours["target_stage"]) for r in later["rows"]):
        raise SourceError(f"{rel}: another target stage than fewshot_crossner.json's")
    return later


LONGER_SOURCE = f"{RESULTS}/fewshot_source_steps.json"


def _longer_source(src: Sources, few: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The source path with a longer source stage (fewshot_source_steps.json, when present): its
    cells, its source stage, and the CrossNER table's cells with its source_full in place of theirs."""
    if not (src.root / LONGER_SOURCE).exists():
        return None
    longer = _later_run(src, LONGER_SOURCE, few)
    cells = {(r["target"], r["k"], r["row"]): r for r in longer["rows"]}
    swapped = {**few["cells"], **{key: r for key, r in cells.items() if key[2] == OUR_FEWSHOT_ROW}}
    return {"cells": cells, "source": next(r["source"] for r in longer["rows"]),
            "margins": fewshot_margins({"cells": swapped, "domains": few["domains"]})}


def source_stage_name(stage: Dict[str, Any]) -> str:
    cfg = stage["settings"]
    return (f"{cfg['source_steps']} updates of {cfg['source_batch_size']} ({stage['sentences']} sentences), "
            f"{'without FGM' if cfg.get('source_without_fgm') else 'full method'}")


@block("fewshot-source-steps")
def fewshot_source_steps(src: Sources, arg: str, prefix: str) -> str:
    """The source path with the table's source stage against a longer one, on the same episodes,
    and each one's margin over the best fair peer."""
    few = _crossner(src)
    longer = _longer_source(src, few)
    if longer is None:
        raise SourceError(f"{LONGER_SOURCE}: missing")
    ours = few["cells"][(few["domains"][0], 5, OUR_FEWSHOT_ROW)]
    plain = {(m["domain"], m["k"]): m for m in fewshot_margins(few)}
    stages = [(ours["source"], few["cells"], plain),
              (longer["source"], longer["cells"], {(m["domain"], m["k"]): m for m in longer["margins"]})]
    rows = []
    for k in sorted({key[1] for key in longer["cells"]}):
        for stage, where, margins in stages:
            name = f"{source_stage_name(stage)}: {stage['train_s'] / 60:.0f} min"
            for row in ("source_zero", OUR_FEWSHOT_ROW):
                if any((d, k, row) in where for d in few["domains"]):
                    rows.append([k, name, CROSSNER_ROWS[row]] + [_f(where.get((d, k, row)), 3) for d in few["domains"]])
            rows.append([k, name, "margin of the row above over the best fair peer (larger episode std)"]
                        + [f"{signed(margins[(d, k)]['margin'])} ({margins[(d, k)]['spread']:.2f})" if (d, k) in margins else "–"
                           for d in few["domains"]])
    target = ours["target_stage"]
    return table(["K", "source stage (conll2003, lr " + str(ours["source"]["settings"]["source_lr"]) + "), wall time", "row"]
                 + few["domains"], rows, "rll" + "r" * len(few["domains"])) + note(
        f"5-way K-shot, the episodes and the {few['settings']['query_limit']} seeded query sentences of the CrossNER table;",
        f"episodes after the source stage: {few['settings']['steps']} updates at lr {target['lr']}, negative_rate {target['negative_rate']}, full method.",
        "Best fair peer per domain as in the margin table below. Source-stage wall times with other jobs beside them (one torch",
        f"thread). Sources: the CrossNER table's rows and {source_link('fewshot_source_steps.json', prefix)}.",
    )


EPISODIC_NEGATIVES = f"{RESULTS}/fewshot_episodic_negatives.json"


def source_stage_cells(cells: Dict[tuple, Dict[str, Any]]) -> Dict[tuple, Dict[tuple, Dict[str, Any]]]:
    """The cells of the rows without FGM in the episodes ("zero", "no_fgm"), grouped by source stage:
    {("source" | "episodic", its negative_rate): {(domain, K, "zero" | "no_fgm"): cell}}; of the plain
    stages only the table's kind (negative_rate 1.0, with FGM). Keys: (domain, K, row, ...)."""
    stages: Dict[tuple, Dict[tuple, Dict[str, Any]]] = {}
    for key, c in cells.items():
        if key[2] in ("source_zero", "source_no_fgm", "episodic_zero", "episodic_no_fgm"):
            kind, row = key[2].split("_", 1)
            stage = _source_settings(c)
            if kind == "source" and (stage["source_negative_rate"], stage["source_without_fgm"]) != (1.0, False):
                continue
            stages.setdefault((kind, stage["source_negative_rate"]), {})[(key[0], key[1], row)] = c
    return stages


@block("fewshot-episodic-stage")
def fewshot_episodic_stage(src: Sources, arg: str, prefix: str) -> str:
    """The plain conll2003 source stage against the episodic multi-source one (at each of its
    negative_rates measured), each alone and followed by the episodes without FGM, same episodes."""
    few = _crossner(src)
    cells = dict(few["cells"])
    if (src.root / EPISODIC_NEGATIVES).exists():  # the episodic stage at another negative_rate (rows of the same name)
        other = _later_run(src, EPISODIC_NEGATIVES, few)
        cells.update({(r["target"], r["k"], r["row"], r["source"]["settings"]["source_negative_rate"]): r for r in other["rows"]})
    stages = source_stage_cells(cells)
    episodic_ks = sorted({k for (kind, _), where in stages.items() if kind == "episodic" for _, k, _ in where})
    if not episodic_ks:
        raise SourceError(f"{RESULTS}/fewshot_episodic.json: no episodic rows")
    names = {"zero": "source stage only, no episode update", "no_fgm": "source stage + episodes without FGM"}
    rows = []
    for k in episodic_ks:
        for kind, rate in sorted(stages, key=lambda s: (s[0] != "source", -s[1])):
            stage = ("plain: conll2003, " if kind == "source" else "episodic: leave-one-domain-out, ") + f"negative_rate {rate:g}"
            for row, label in names.items():
                where = stages[(kind, rate)]
                if any((d, k, row) in where for d in few["domains"]):
                    rows.append([k, stage, label] + [_f(where.get((d, k, row)), 3) for d in few["domains"]])
    plain = next(iter(stages[("source", 1.0)].values()))["source"]
    episodic = next(c["source"]["settings"] for (kind, _), where in stages.items() if kind == "episodic" for c in where.values())
    return table(["K", "source stage", "row"] + few["domains"], rows, "rll" + "r" * len(few["domains"])) + note(
        f"5-way K-shot, the episodes and the {few['settings']['query_limit']} seeded query sentences of the CrossNER table.",
        f"Plain stage: the table's ({plain['settings']['source_steps']} updates of {plain['settings']['source_batch_size']} conll2003",
        f"sentences, full method). Episodic stage: {episodic['source_n_way']}-way {episodic['source_k_shot']}-shot episodes from",
        f"{plain['settings']['source']} and the CrossNER domains other than",
        "the target, one stage per target, until as many (sentence, type) instructions as the plain stage (counted",
        "before `negative_rate` drops some: below 1 the stage trains on fewer), full method, same learning rate. Episodes",
        f"after either stage: {few['settings']['steps']} updates without FGM, fresh adapters. Sources: the CrossNER table's rows",
        f"and {source_link('fewshot_episodic.json', prefix)}"
        + (f", {source_link('fewshot_episodic_negatives.json', prefix)}." if (src.root / EPISODIC_NEGATIVES).exists() else "."),
    )


@block("fewshot-decode-prefix")
def fewshot_decode_prefix(src: Sources, arg: str, prefix: str) -> str:
    """In-context decoding with the shared-prefix attention against a prefix copy per row."""
    d = src.json(f"{RESULTS}/fewshot_decode_prefix.json")
    if not d["identical_entities"]:
        raise SourceError(f"{RESULTS}/fewshot_decode_prefix.json: the two ways found different entities")
    rows = [[{"copied": "a copy of the prefix's cache per row (before)", "shared": "shared-prefix attention"}[way],
             f"{d['sents_per_s'][way]:.3f}", ", ".join(f"{s:.1f}" for s in d["wall_s"][way])] for way in ("copied", "shared")]
    return table(["decoding behind the examples", "query sentences/s", "wall s per run"], rows, "lrr") + note(
        f"Speed-up {d['speedup']:.1f}x (mean over {d['repeats']} alternating pair(s) of runs: {', '.join(f'{x:.1f}x' for x in d['speedups'])});",
        f"the same {d['entities_found']} entities both ways. SmolLM2 `in_context` pipe on {d['target']} K = {d['k']} episode {d['episode'] + 1}",
        f"of the CrossNER table: {d['support']} support sentences as examples ({d['prefix_tokens']:,} prompt tokens before each text),",
        f"the first {d['queries']} query sentences x {len(d['labels'])} types in one `nlp.pipe` call (decoding batch {d['batch_size']},",
        f"max_new_tokens {d['max_new_tokens']}); {d['torch_threads']} torch thread, {d['machine']}, {d['date']}, load average",
        f"{d['load_before']:.2f} before and {d['load_after']:.2f} after (other jobs beside it). Source: {source_link('fewshot_decode_prefix.json', prefix)}.",
    )


@block("fewshot-workflow")
def fewshot_workflow(src: Sources, arg: str, prefix: str) -> str:
    rel = f"{RESULTS}/fewshot_workflow.md"
    pairs = src.find(rel, r"Per episode \(fewshot_ner / spaCy `ner`[^)]*\):\s*(.+?)\.\s", flags=re.S)
    episodes = [p.split(" / ") for p in pairs.split(", ")]
    rows = []
    for i, (name, pattern) in enumerate([("`fewshot_ner` (source stage, then the episodes)", r"fewshot_ner\s+micro-F1 over \d+ episodes: (.+)"),
                                         ("spaCy's CNN `ner`, same episodes", r"spaCy ner\s+micro-F1 over \d+ episodes: (.+)")]):
        rows.append([name] + [e[i] for e in episodes] + [src.find(rel, pattern)])
    header = ["pipeline"] + [f"episode {j + 1}" for j in range(len(episodes))] + ["micro-F1 mean ± std (min, max)"]
    date = src.find(rel, r"(\d{4}-\d\d-\d\d)")
    source = src.find(rel, r"fewshot_source\s+\((.+?)\)", flags=re.S)
    episodes_run = src.find(rel, r"fewshot_eval\s+\((.+?)\)", flags=re.S)
    machine = src.find(rel, r"Machine: ([^;]+);")
    wall = src.find(rel, r"wall=\d+s\s+\(([\d.]+ min)\)")
    return table(header, rows, "l" + "r" * (len(header) - 1)) + note(
        f"`spacy project run fewshot` with its defaults, {date}: source stage ({source}), then {episodes_run}.",
        f"Machine: {machine}; {wall} wall with SmolLM2 already fetched. Source: {source_link('fewshot_workflow.md', prefix)}.",
    )


#: The few-shot workflow's pipelines in its metrics files (fewshot-eval -o metrics/fewshot_<domain>*.json).
FEWSHOT_WORKFLOW_PIPELINES = (("", "`fewshot_ner` (source stage, then the episodes)"),
                              ("_spacy_ner", "spaCy's CNN `ner` on the support set alone"),
                              ("_spacy_ner_source", "spaCy's CNN `ner` trained on the source corpus first, then the support set"))


@block("fewshot-workflow-run")
def fewshot_workflow_run(src: Sources, arg: str, prefix: str) -> str:
    """`benchmarks/workflow_run.py --workflow fewshot`: step times and the three pipelines' episodes."""
    rel = f"{RESULTS}/workflow_fewshot.json"
    run = src.json(rel)
    out = _steps_table(run)
    few = run["fewshot"]
    domain = _options(run).get("--vars.fewshot_domain", srsly.read_yaml(src.root / "project.yml")["vars"]["fewshot_domain"])
    scored = []
    for suffix, name in FEWSHOT_WORKFLOW_PIPELINES:
        summary = few.get(f"fewshot_{domain}{suffix}")
        if summary is None:
            raise SourceError(f"{rel}: no fewshot_{domain}{suffix} summary")
        scored.append([name, f"{100 * summary['f_mean']:.2f} ± {100 * summary['f_std']:.2f}",
                       f"{100 * summary['f_min']:.2f}–{100 * summary['f_max']:.2f}", str(summary["episodes"])])
    out += "\n\n" + table([f"pipeline (CrossNER {domain})", "micro-F1 mean ± std", "min–max", "episodes"], scored, "lrrr")
    return out + note(
        f"`python benchmarks/workflow_run.py --workflow fewshot` ({run['date']}): `spacy project run` of each step of `fewshot`",
        f"in a fresh copy of the project with its defaults (overrides: {_overrides(run)}), SmolLM2's wheel already in the wheel cache;",
        _run_machine(run), f"Source: {source_link('workflow_fewshot.json', prefix)}.",
    )


#: The two recorded `fewshot` workflow runs that differ only in the source stage's FGM.
FEWSHOT_SOURCE_FGM_RUNS = (("workflow_fewshot_source_fgm.json", "on (epsilon 0.01, configs/fewshot.cfg)"),
                           ("workflow_fewshot.json", "off (`vars.fewshot_source_adversarial_epsilon` 0.0)"))


@block("fewshot-source-fgm")
def fewshot_source_fgm(src: Sources, arg: str, prefix: str) -> str:
    """The `fewshot` workflow with and without FGM in its source stage: wall time and politics F1."""
    rows, machines = [], []
    for name, label in FEWSHOT_SOURCE_FGM_RUNS:
        run = src.json(f"{RESULTS}/{name}")
        steps = {s["step"]: s for s in run["steps"]}
        if "fewshot-source" not in steps:
            raise SourceError(f"{RESULTS}/{name}: no fewshot-source step")
        summary = run["fewshot"]["fewshot_politics"]
        rows.append([label, f"{steps['fewshot-source']['seconds'] / 60:.1f}", f"{run['total_seconds'] / 60:.1f}",
                     f"{100 * summary['f_mean']:.2f} ± {100 * summary['f_std']:.2f}",
                     f"{100 * summary['f_min']:.2f}–{100 * summary['f_max']:.2f}", source_link(name, prefix)])
        machines.append(f"{name}: {run['date']}, {_run_machine(run)}")
    return table(["FGM in the source stage", "`fewshot-source` wall min", "workflow wall min",
                  "`fewshot_ner` politics micro-F1", "min–max", "source"], rows, "lrrrrl") + note(
        "`python benchmarks/workflow_run.py --workflow fewshot` twice, the same defaults but the source stage's FGM; 3 episodes, 50 query sentences, one run each.",
        *machines,
    )


@block("fewshot-prompt-format")
def fewshot_prompt_format(src: Sources, arg: str, prefix: str) -> str:
    rel = f"{RESULTS}/fewshot_probe.md"
    heading = "## Prompt format"
    header, *rows = table_after(src, rel, heading)
    keep = [i for i, h in enumerate(header) if not h.startswith("zero-shot")]
    text = src.text(rel)[src.text(rel).find(heading):]
    setting = src.find(rel, r"## Prompt format: [^(]*\((.+?)\)", text=text)
    same = src.find(rel, r"Same settings as `fewshot_crossner.md`, (.+?):", text=text)
    return table([header[i] for i in keep], [[r[i] for i in keep] for r in rows], "l" + "r" * (len(keep) - 1)) + note(
        f"`fewshot_ner`, {setting}; the settings of the CrossNER table with {same}.",
        f"Source: {source_link('fewshot_probe.md', prefix)}.",
    )


# annotate and the command line ----------------------------------------------------------------------
@block("annotate-scaling")
def annotate_scaling(src: Sources, arg: str, prefix: str) -> str:
    """`annotate-scaling:<label>`: benchmarks/annotate_scaling.py's rows for one pipeline."""
    name = f"annotate_scaling_{arg}.json"
    data = src.json(f"{RESULTS}/{name}")
    rows = [
        [f"`{r['setup']}`", f"{r['seconds']:.1f}", f"{r['docs_per_s']:.1f}", f"{r['x_plain']:.2f}", ", ".join(str(m) for m in r["peak_rss_mib"]) or "–"]
        for r in data["rows"]
    ]
    goals = data["goals"]
    startup = next((r["python_startup_s"] for r in data["rows"] if "python_startup_s" in r), None)
    return table(["setup", "seconds", "docs/s", "x plain nlp.pipe", "peak RSS per worker (MiB)"], rows, "lrrrr") + note(
        f"{data['n_docs']:,} PubMed abstracts (the 2,000 shared ones, then again under new ids) in {data['n_shards']} shards, "
        f"read in chunks of {data['chunk_size']}, batch size {data['batch_size']}. Pipeline: {data['pipeline']}.",
        f"Machine: the {data['cpus']}-core CPU workplace machine, no GPU, 1-min load average {data['load_before']} before and "
        f"{data['load_after']} after; one run; OMP_NUM_THREADS={data['omp_num_threads']} (one torch/BLAS thread a process or actor).",
        "Every row is end to end (pipeline load, reading, writing: Parquet for annotate, a DocBin for `spacy apply`) after one untimed load;",
        f"the Ray rows run on a Ray started beforehand (`ray.init` took {data['ray_init_s']} s, not in the rows);",
        f"`spacy apply` rows include its Python start-up ({startup} s alone)." if startup is not None else "",
        "Peak RSS is sampled twice a second per worker: the process itself in one-process rows, each worker process or Ray actor otherwise.",
        f"Same entities in every row: {'yes' if data['same_entities'] else 'NO'}.",
        f"Goals: ray 2 actors / 1 actor = **{goals['ray_2_over_1']:.2f}** (goal at least 1.6); annotate local 1 process / plain nlp.pipe = "
        f"**{goals['annotate_local_1_over_plain']:.2f}**, ray 1 actor / plain = **{goals['annotate_ray_1_over_plain']:.2f}** (goal at least 0.90).",
        f"Source: {source_link(name, prefix)} (`{data['command']}`).",
    )


@block("cli-startup")
def cli_startup(src: Sources, arg: str, prefix: str) -> str:
    data = src.json(f"{RESULTS}/cli_startup.json")
    goal = src.find("benchmarks/cli_startup.py", r"goal <= ([\d.]+)")
    rows = [[f"`python -m {name}`", f"{statistics.median(values):.2f}", f"{min(values):.2f}", f"{max(values):.2f}", len(values)]
            for name, values in data["seconds"].items()]
    return table(["command", "median s", "min s", "max s", "runs"], rows, "lrrrr") + note(
        f"Ratio of the medians, `spacy_msnr` / `spacy`: **{data['ratio']:.2f}** (goal: at most {goal}).",
        f"Runs alternate between the two commands after one warm-up each; Python {data['python']}, {data['machine']}.",
        f"Source: {source_link('cli_startup.json', prefix)} (`python benchmarks/cli_startup.py --output {RESULTS}/cli_startup.json`).",
    )


@block("cli")
def cli(src: Sources, arg: str, prefix: str) -> str:
    import typer

    from spacy_msnr.cli import app

    group = typer.main.get_command(app)
    rows = []
    for info in app.registered_commands:
        if info.hidden:
            continue
        command = group.commands[info.name]
        args = []
        for param in command.params:
            if param.param_type_name == "argument":
                name = param.name.upper() + ("..." if param.nargs == -1 else "")
                args.append(name if param.required else f"[{name}]")
        summary = " ".join((command.help or "").split("\n\n")[0].split())
        rows.append([f"`{info.name}`", f"`{' '.join(args)}`" if args else "", cell(summary)])
    return table(["command", "arguments", "what it does"], rows) + note(
        "`python -m spacy_msnr COMMAND --help` lists every option. Required outputs are positional (as spaCy's `OUTPUT_DIR`);",
        "optional extra outputs are `--output`/`-o`. A user's error prints `✘ message` without a traceback.",
    )


# project.yml ----------------------------------------------------------------------------------------
#: Meanings of the vars that project.yml gives no comment of their own (no figures here: those live in project.yml).
VAR_MEANINGS = {
    "dataset": "the BLURB NER set (`BC5CDR-IOB`, `BC5CDR-chem-IOB` or `BC5CDR-disease-IOB`: the `assets` step fetches its files); "
               "set `package_name` with it, or the wheel keeps the NCBI-disease name",
    "blurb_commit": "commit of `cambridgeltl/MTL-Bioinformatics-2016` the BLURB files are pinned to",
    "crossner_commit": "commit of `zliucr/CrossNER` the CrossNER files are pinned to",
    "pubmed_commit": "commit of `spyysalo/jnlpba` the PubMed abstracts are pinned to",
    "base_family": "model family of a locally built base (`base_model local`)",
    "base_max_steps": "pretraining steps of a locally built base",
    "base_max_seconds": "wall-clock budget of that pretraining",
    "mslm_lr": "peak learning rate of the MSLM adaptation",
    "train_steps": "when positive, a fixed number of transformer + `ner` updates instead of `train_epochs`",
    "train_max_seconds": "time cap of that training, in seconds (zero: none)",
    "learn_rate": "peak learning rate of transformer + `ner`",
    "gpu_id": "GPU for every step that trains or predicts (negative: the CPU)",
    "fewshot_domain": "CrossNER target domain of the `fewshot` workflow (`politics`, `science`, `ai`, …)",
    "fewshot_n_way": "entity types per episode",
    "fewshot_k_shot": "mentions per type in a support set",
    "fewshot_episodes": "episodes sampled",
    "fewshot_batch_size": "support sentences per update",
    "fewshot_query_limit": "test sentences scored per episode (a fixed seeded sample)",
    "fewshot_negative_rate": "share of the \"none\" instructions each episode update keeps (comment above `fewshot_lr`)",
    "fewshot_source_batch_size": "sentences per source-stage update",
    "fewshot_source_lr": "learning rate of the source stage",
    "fewshot_eval_base": "the model the episodes start from (`training/base_causal`: no source stage)",
    "fewshot_source_cnn_steps": "at most this many steps of spaCy's CNN `ner` on the CrossNER source corpus (`train-cnn-source`, the fair peer of the source stage)",
    "mslm_search_elm_rates": "ELM rates `mslm-search` tries (comma-separated)",
    "mslm_search_blm_rates": "BLM rates `mslm-search` tries",
    "mslm_search_weightings": "registered loss weightings `mslm-search` tries",
    "mslm_search_steps": "MSLM steps of each `mslm-search` grid point",
    "package_name": "the wheel is `en_<package_name>-<package_version>`",
    "package_version": "the wheel's version",
}


def _var_comments(src: Sources) -> Dict[str, str]:
    """Each var's comment: the comment lines directly above it in project.yml."""
    lines = src.text("project.yml").splitlines()
    start = lines.index("vars:")
    comments, pending = {}, []
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
        elif ":" in stripped:
            name = stripped.split(":", 1)[0]
            if pending:
                comments[name] = " ".join(pending)
            pending = []
        else:
            pending = []
    return comments


def _value(value: Any) -> str:
    return f'`"{value}"`' if isinstance(value, str) else f"`{json.dumps(value)}`"


@block("vars")
def project_vars(src: Sources, arg: str, prefix: str) -> str:
    variables = src.project()["vars"]
    comments = _var_comments(src)
    stale = sorted(set(VAR_MEANINGS) - set(variables))
    missing = sorted(v for v in variables if v not in comments and v not in VAR_MEANINGS)
    if stale or missing:
        raise SourceError(f"project.yml: vars without a meaning {missing}, meanings of vars it no longer has {stale} "
                          "(benchmarks/render_tables.py VAR_MEANINGS)")
    rows = [[f"`{name}`", _value(value), cell(comments.get(name) or VAR_MEANINGS[name])] for name, value in variables.items()]
    return table(["var", "default", "meaning (project.yml's comment above it, where it has one)"], rows) + note(
        "Override any of them after the project folder: `python -m spacy project run all . --vars.NAME VALUE`.",
    )


@block("workflows")
def workflows(src: Sources, arg: str, prefix: str) -> str:
    return "\n".join(f"- `{name}`: " + " → ".join(f"`{step}`" for step in steps) for name, steps in src.project()["workflows"].items())


def _paths(paths: Sequence[str]) -> str:
    return ", ".join(f"`{p}`" for p in paths) if paths else "–"


@block("steps")
def steps(src: Sources, arg: str, prefix: str) -> str:
    project = src.project()
    if arg not in project["workflows"]:
        raise SourceError(f"project.yml: no workflow {arg!r}")
    commands = {c["name"]: c for c in project["commands"]}
    rows = [[f"`{name}`", cell(commands[name].get("help", "")), _paths(commands[name].get("deps", [])), _paths(commands[name].get("outputs", []))]
            for name in project["workflows"][arg]]
    return table(["step", "what it does", "reads", "writes"], rows)


def _override(src: Sources, step: str, option: str) -> Optional[str]:
    """The value `step`'s script passes to `option`, its ${vars.X} replaced by the default (None: not passed)."""
    commands = {c["name"]: c for c in src.project()["commands"]}
    for line in commands[step]["script"]:
        match = re.search(rf"(?:^|\s){re.escape(option)} ('[^']*'|\S+)", line)
        if match:
            value = re.sub(r"\$\{vars\.(\w+)\}", lambda m: str(src.project()["vars"][m.group(1)]), match.group(1))
            return value.strip("'\"")
    return None


def _config(src: Sources, rel: str) -> Dict[str, Any]:
    from thinc.api import Config

    return Config().from_str(src.text(rel), interpolate=False)


def _lookup(config: Dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for key in dotted.split("."):
        value = value[key]
    if isinstance(value, dict):  # a registered function: its name; an inline dict: itself
        return next((v for k, v in value.items() if k.startswith("@")), value)
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "–"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


#: settings tables: (setting, factory default key, config key, {workflow step: option that sets it}).
SETTINGS = {
    "mslm": ("configs/mslm.cfg", None, [
        ("joint tagging head λ", None, "model.ner_weight", {"mslm": "--model.ner_weight"}),
        ("adaptation steps", None, "training.max_steps", {"mslm": "--training.max_steps"}),
        ("peak learning rate", None, "training.optimizer.learn_rate", {"mslm": "--training.optimizer.learn_rate"}),
        ("wordpieces per batch", None, "training.batch_size", {"mslm": "--training.batch_size"}),
        ("ELM rate (share of a sentence's DS-terms masked)", None, "model.masker.elm_rate", {"mslm": "--model.masker.elm_rate"}),
        ("BLM rate (other wordpieces)", None, "model.masker.blm_rate", {"mslm": "--model.masker.blm_rate"}),
        ("masker", None, "model.masker", {}),
        ("weighting", None, "model.weighting", {}),
        ("DS-terms", None, "terms", {}),
    ]),
    "fewshot": ("configs/fewshot.cfg", "fewshot_ner", [
        ("`negative_rate`", "negative_rate", "components.fewshot_ner.negative_rate",
         {"fewshot-source": "--components.fewshot_ner.negative_rate", "fewshot-eval": "--components.fewshot_ner.negative_rate"}),
        ("learning rate", None, "training.optimizer.learn_rate",
         {"fewshot-source": "--training.optimizer.learn_rate", "fewshot-eval": "--training.optimizer.learn_rate"}),
        ("updates (`fewshot-eval`: per episode)", None, "training.max_steps", {"fewshot-source": "--training.max_steps", "fewshot-eval": "--steps"}),
        ("sentences per update", None, "training.batcher.size", {"fewshot-source": "--training.batcher.size", "fewshot-eval": "--batch-size"}),
        ("`max_new_tokens`", "max_new_tokens", "components.fewshot_ner.max_new_tokens",
         {"fewshot-source": "--components.fewshot_ner.max_new_tokens", "fewshot-eval": "--components.fewshot_ner.max_new_tokens"}),
        ("`train_batch_size`", "train_batch_size", "components.fewshot_ner.train_batch_size", {}),
        ("`prompt_format`", "prompt_format", "components.fewshot_ner.prompt_format", {}),
        ("FGM (`model.adversarial`)", None, "components.fewshot_ner.model.adversarial",
         {"fewshot-eval": "--components.fewshot_ner.model.adversarial"}),
        ("base model", None, "paths.base_model", {"fewshot-source": "--paths.base_model", "fewshot-eval": "--paths.base_model"}),
    ]),
}


@block("settings")
def settings(src: Sources, arg: str, prefix: str) -> str:
    rel, factory, rows_spec = SETTINGS[arg]
    config = _config(src, rel)
    steps = sorted({step for *_, options in rows_spec for step in options}, key=[c["name"] for c in src.project()["commands"]].index)
    defaults: Dict[str, Any] = {}
    if factory:
        import spacy_msnr.fewshot.component  # noqa: F401  (registers the factory)
        from spacy.language import Language

        defaults = Language.get_factory_meta(factory).default_config
    header = ["setting"] + ([f"`{factory}` factory default"] if factory else []) + [f"`{rel}`"] + [f"workflow step `{s}`" for s in steps]
    rows = []
    for label, factory_key, key, options in rows_spec:
        row = [label] + ([_shown(defaults.get(factory_key)) if factory_key else "–"] if factory else [])
        row.append(_shown(_lookup(config, key)))
        for step in steps:
            value = _override(src, step, options[step]) if step in options else None
            row.append(f"`{value}`" if value is not None else "(config)")
        rows.append(row)
    sources = ("the factory, " if factory else "") + f"`{rel}` and project.yml's scripts"
    return table(header, rows) + note(
        f"Read from {sources} (their `${{vars.…}}` at their defaults); (config): the step does not override the config's value.",
    )


@block("workflow-time")
def workflow_time(src: Sources, arg: str, prefix: str) -> str:
    rows = []
    for workflow in ("all", "fewshot"):
        name = f"workflow_{workflow}.json"
        run = src.json(f"{RESULTS}/{name}")
        rows.append([f"`{workflow}`", f"{run['total_seconds'] / 60:.1f} min", f"{run['peak_rss_mib'] / 1024:.1f} GiB",
                     _run_machine(run), run["date"], source_link(name, prefix)])
    return table(["workflow", "wall", "peak RSS", "machine (the 24 GiB CPU workplace machine)", "date", "source"], rows) + note(
        "The latest recorded run of each with the defaults of its date (`benchmarks/workflow_run.py`, a fresh copy of the",
        "project, the base models already fetched). One run each.",
    )


@block("models")
def models(src: Sources, arg: str, prefix: str) -> str:
    from spacy_msnr.base.pypi import PYPI_MODELS

    variables = src.project()["vars"]
    rows = []
    for spec in PYPI_MODELS.values():
        users = [f"`vars.{name}`" for name, value in variables.items() if value == f"assets/models/{spec.name}"]
        rows.append([f"`{spec.name}`", f"`{spec.package}=={spec.version}` (sha256 `{spec.sha256[:8]}…{spec.sha256[-5:]}`)",
                     cell(spec.model), spec.license, ", ".join(users) or "–"])
    return table(["name", "wheel (pinned)", "model", "licence", "default of"], rows) + note(
        "From `spacy_msnr.base.pypi.PYPI_MODELS`.",
    )


# -- driver -----------------------------------------------------------------------------------------
def target_files(root: Path) -> List[Path]:
    files: List[Path] = []
    for pattern in TARGETS:
        files += sorted(root.glob(pattern))
    return files


def process(root: Path, check: bool) -> List[str]:
    """Render every block under `root`; write them (or, with `check`, only compare). The problems found."""
    src = Sources(root)
    problems = []
    for path in target_files(root):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf8")
        closed = {m.group("name") for m in BLOCK.finditer(text)}
        for name in OPENING.findall(text):
            if name not in closed:
                problems.append(f"{rel}: block '{name}' has no closing <!-- /table:{name} -->")

        def replace(match: "re.Match[str]") -> str:
            body = render(src, match.group("name"), rel)
            if body != match.group("body"):
                problems.append(f"{rel}: block '{match.group('name')}' differs from what benchmarks/render_tables.py renders")
            return f"<!-- table:{match.group('name')} -->\n{body}<!-- /table:{match.group('name')} -->"

        new = BLOCK.sub(replace, text)
        if not check and new != text:
            path.write_text(new, encoding="utf8")
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only compare; exit 1 if a committed block differs")
    parser.add_argument("--root", type=Path, default=ROOT, help="Repository root (default: this script's)")
    args = parser.parse_args(argv)
    try:
        problems = process(args.root.resolve(), args.check)
    except SourceError as err:
        print(f"✘ {err}", file=sys.stderr)
        return 1
    if args.check:
        for problem in problems:
            print(f"✘ {problem}", file=sys.stderr)
        if problems:
            print("Run `python benchmarks/render_tables.py` and commit the result.", file=sys.stderr)
            return 1
        print("✔ every generated block is up to date")
        return 0
    unclosed = [p for p in problems if "no closing" in p]
    for problem in unclosed:
        print(f"✘ {problem}", file=sys.stderr)
    changed = len(problems) - len(unclosed)
    print(f"rendered; {changed} block(s) rewritten")
    return 1 if unclosed else 0


if __name__ == "__main__":
    sys.exit(main())
