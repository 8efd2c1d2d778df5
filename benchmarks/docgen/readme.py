"""The README's blocks: the headline table and the MSLM and few-shot verdicts."""
from typing import Sequence

from .sources import result, Sources, SourceError
from .format import mean_std, note, signed, table
from .blocks import block
from .fewshot import FAIR_PEERS, crossner_cells, f_cell, fewshot_margins, longer_source, margin_reading, source_stage_name
from .mslm import CURVE_MSLM, DATASETS, curve_differences, default_mslm_method, method_label
from .workflow import first_all_run, latest_all_run, other_set_runs


@block("headline")
def headline(src: Sources, arg: str, prefix: str) -> str:
    run = first_all_run(src)
    names = {r[0]: r for r in run["rows"][1:]}
    package = next(r for name, r in names.items() if name.startswith("en_"))
    cnn = names["spacy_cnn_ner"]
    recorded = latest_all_run(src)  # the newest run of the current defaults, when recorded
    if recorded is not None:
        package = [package[0], "", "", f"{recorded['package']['f']:.2f}"]
        cnn = ["spacy_cnn_ner", "", "", f"{recorded['cnn']['f']:.2f}"]
        m = recorded["machine"]
        shared = m["load_after"][0] > m["cpus"]  # other jobs ran beside it: its wall time is an upper bound
        run = {**run, "date": recorded["date"],
               "machine": f"{m['cpus']}-core, 24 GiB CPU workplace machine (load average {m['load_before'][0]} at the start, "
                          f"{m['load_after'][0]} at the end{', other jobs beside it' if shared else ''})"}
    few = crossner_cells(src)
    s = few["settings"]
    k = min(k for _, k, _ in few["cells"])

    def per_domain(row: str) -> str:
        return " / ".join(f_cell(few["cells"].get((d, k, row))) for d in few["domains"])

    domains = " / ".join(few["domains"])
    baselines = src.json(result("ner_baselines.json"))
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
    other_sets = other_set_runs(src)
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
    source = few["source_settings"]
    if source is None:
        raise SourceError(result("fewshot_crossner.json: no source_full row (its source stage is named here)"))
    return out + note(
        f"NCBI-disease: one run (no spread measured) of `spacy project run all` with its defaults, {run['date']},"
        + ("" if recorded is None or "ner_budget" in recorded else " before the transformer + `ner` budget followed the data (`train-budget`; a fixed step count then),"),
        "the other BLURB sets: one run each (table `workflow-per-set` in docs/benchmarks.md for dates, budgets and load);" if other_sets else "",
        f"on the {run['machine']}, no GPU; entity-level F1 of `spacy evaluate` on the test split. Bold: the best NCBI-disease row; on the other sets, a package ahead of the CNN.",
        "MSLM stays on in the workflow as what this package demonstrates, not for a win at full labels (below);",
        "`--vars.trf_model training/base` switches it off.",
        f"CrossNER: micro-F1 mean ± std over {next(iter(few['cells'].values()))['episodes']} episodes a domain, the same support sets",
        f"and {s['query_limit']} seeded test sentences for every row; source stage: {source['source']}, {source['source_steps']} updates of {source['source_batch_size']} at lr {source['source_lr']}; {few['machine']}.",
        f"Budgets, repeated runs and every other row: [docs/benchmarks.md]({prefix}docs/benchmarks.md).",
    )


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
    few = crossner_cells(src)
    margins = fewshot_margins(few)
    k = min(m["k"] for m in margins)
    shown = [m for m in margins if m["k"] == k]
    wins = [m for m in shown if m["margin"] > m["spread"]]
    losses = [m for m in shown if m["margin"] < 0]
    lead = ("**Few-shot beats its best fair peer**" if len(wins) >= 2 and len(losses) == 0
            else "**Few-shot does not yet beat its best fair peer**")
    per = "; ".join(f"{m['domain']} {signed(m['margin'])} ({margin_reading(m['margin'], m['spread'])}; the best peer: {FAIR_PEERS[m['peer']]})"
                    for m in shown)
    longer = longer_source(src, few)
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


