"""Tables of docs/fewshot.md: CrossNER episodes, fair peers, margins, source stages, the `fewshot` workflow."""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly

from .sources import result, Sources, SourceError
from .format import mean_std, note, signed, source_link, table
from .blocks import block
from .workflow import run_machine, run_options, run_overrides, steps_table


def crossner_cells(src: Sources) -> Dict[str, Any]:
    data = src.json(result("fewshot_crossner.json"))
    cells = {(r["target"], r["k"], r["row"]): r for r in data["rows"]}
    ours = next((c for c in data["rows"] if c["row"] == "source_full"), None)
    # Rows run later on the same episodes (benchmarks/fewshot_crossner.py --results-name fewshot_peers /
    # fewshot_losses / ...): taken when their episode settings agree, and a cell both have must agree.
    for peers_rel in (result("fewshot_peers.json"), result("fewshot_losses.json"), result("fewshot_episodic.json"),
                      result("fewshot_trf_peer.json"), result("fewshot_k10_source.json"),
                      result("fewshot_contrastive_span.json"), result("fewshot_in_context.json"),
                      result("fewshot_source_in_context.json"), result("fewshot_k10_losses.json")):
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
            if "source" in r and ours and _source_settings(ours) != _source_settings(r):
                raise SourceError(f"{peers_rel}: {key} had another source stage than fewshot_crossner.json's")
            if "target_stage" in r and ours and r["target_stage"] != ours["target_stage"]:
                raise SourceError(f"{peers_rel}: {key} had another target stage than fewshot_crossner.json's")
    return {
        "settings": data["settings"],
        "cells": cells,
        "domains": sorted({r["target"] for r in data["rows"]}, key=["politics", "science", "ai"].index),
        "machine": data["machine"],
        "threads": data["threads"],
        "source": source_stage_text(ours["source"]) if ours else "–",
        "source_settings": _source_settings(ours) if ours else None,
        "target": f"lr {ours['target_stage']['lr']}, negative_rate {ours['target_stage']['negative_rate']}" if ours else "–",
    }


def source_stage_text(source: Dict[str, Any]) -> str:
    """What a plain source stage was: corpus, types, sentences, updates, time (as fewshot_crossner.md says it)."""
    cfg = _source_settings({"source": source})
    method = "without FGM" if cfg["source_without_fgm"] else "full method"
    return (f"{cfg['source']} ({', '.join(source['labels'])}), {source['sentences']} sentences, {cfg['source_steps']} updates of "
            f"{cfg['source_batch_size']} at lr {cfg['source_lr']}, negative_rate {cfg['source_negative_rate']} ({method}), "
            f"{source['train_s']:.0f} s ({source['s_per_update']:.1f} s/update)")


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


def f_cell(row: Optional[Dict[str, Any]], of: Optional[int] = None) -> str:
    """'mean ± std' of a row's episodes, '(n = k)' added when it has fewer than `of`."""
    if row is None:
        return "–"
    if of is not None and row["episodes"] < of:
        spread = f" ± {row['f_std']:.2f}" if row["episodes"] > 1 else ""
        return f"{row['f_mean']:.2f}{spread} (n = {row['episodes']})"
    return f"{row['f_mean']:.2f} ± {row['f_std']:.2f}"


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
    few = crossner_cells(src)
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
                rows.append([label, k] + [f_cell(few["cells"].get((d, k, row)), episodes) for d in few["domains"]])
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
    few = crossner_cells(src)
    rows = [[m["k"], m["domain"], f_cell(m["ours"]), FAIR_PEERS[m["peer"]], f_cell(m["best"]), signed(m["margin"]), f"{m['spread']:.2f}",
             margin_reading(m["margin"], m["spread"])] for m in fewshot_margins(few)]
    header = ["K", "domain", "`fewshot_ner`, source stage + full method", "best fair peer", "its F1", "margin",
              "larger episode std", "reading"]
    short = sorted({(d, k, p) for d, k, p in few["cells"] if p in FAIR_PEERS
                    and (d, k, OUR_FEWSHOT_ROW) in few["cells"] and few["cells"][(d, k, p)]["episodes"] < few["cells"][(d, k, OUR_FEWSHOT_ROW)]["episodes"]})
    return table(header, rows, "rlrlrrrl") + note(
        "Fair peers: " + "; ".join(FAIR_PEERS.values()) + " (rows of the CrossNER table in docs/benchmarks-fewshot.md), each on the same episodes;",
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
    few = crossner_cells(src)
    rows, shown = [], []
    for name, model in BASE_MODEL_RESULTS:
        if not (src.root / result(name)).exists():
            continue
        data = src.json(result(f"{name}"))
        for key in ("n_way", "query_limit", "seed", "max_new_tokens", "steps", "batch_size", "lr"):
            if data["settings"][key] != few["settings"][key]:
                raise SourceError(result(f"{name}: {key} {data['settings'][key]} differs from fewshot_crossner.json's {few['settings'][key]}"))
        cells = {(r["target"], r["k"], r["row"]): r for r in data["rows"]}
        shown.append(name)
        for row in ("zero_shot", "full"):
            hits = [cells.get((d, 5, row)) for d in few["domains"]]
            if not any(hits):
                continue
            timed = next(h for h in hits if h)
            rate = f"{timed['s_per_update']:.1f}" if row == "full" else "–"
            rows.append([model, {"zero_shot": "zero-shot, no update", "full": "support set alone, full method"}[row]] + [f_cell(h, 4) for h in hits]
                        + [rate, f"{timed['sents_per_s']:.2f}", f"{max(h['peak_mib'] for h in hits if h):.0f}"])
    return table(["base model", "row"] + [f"{d} F1" for d in few["domains"]] + ["s/update", "query sents/s", "peak RSS MiB"],
                 rows, "ll" + "r" * (len(few["domains"]) + 3)) + note(
        f"{few['settings']['n_way']}-way 5-shot CrossNER, the episodes and the {few['settings']['query_limit']} seeded query",
        "sentences of the CrossNER table (docs/benchmarks-fewshot.md); micro-F1 mean ± std over n episodes; support-only rows: the same updates, batch,",
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


LONGER_SOURCE = result("fewshot_source_steps.json")


def longer_source(src: Sources, few: Dict[str, Any]) -> Optional[Dict[str, Any]]:
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
    few = crossner_cells(src)
    longer = longer_source(src, few)
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
                    rows.append([k, name, CROSSNER_ROWS[row]] + [f_cell(where.get((d, k, row)), 3) for d in few["domains"]])
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


EPISODIC_NEGATIVES = result("fewshot_episodic_negatives.json")


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
    few = crossner_cells(src)
    cells = dict(few["cells"])
    if (src.root / EPISODIC_NEGATIVES).exists():  # the episodic stage at another negative_rate (rows of the same name)
        other = _later_run(src, EPISODIC_NEGATIVES, few)
        cells.update({(r["target"], r["k"], r["row"], r["source"]["settings"]["source_negative_rate"]): r for r in other["rows"]})
    stages = source_stage_cells(cells)
    episodic_ks = sorted({k for (kind, _), where in stages.items() if kind == "episodic" for _, k, _ in where})
    if not episodic_ks:
        raise SourceError(result("fewshot_episodic.json: no episodic rows"))
    names = {"zero": "source stage only, no episode update", "no_fgm": "source stage + episodes without FGM"}
    rows = []
    for k in episodic_ks:
        for kind, rate in sorted(stages, key=lambda s: (s[0] != "source", -s[1])):
            stage = ("plain: conll2003, " if kind == "source" else "episodic: leave-one-domain-out, ") + f"negative_rate {rate:g}"
            for row, label in names.items():
                where = stages[(kind, rate)]
                if any((d, k, row) in where for d in few["domains"]):
                    rows.append([k, stage, label] + [f_cell(where.get((d, k, row)), 3) for d in few["domains"]])
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
    d = src.json(result("fewshot_decode_prefix.json"))
    if not d["identical_entities"]:
        raise SourceError(result("fewshot_decode_prefix.json: the two ways found different entities"))
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
    run = src.json(result("fewshot_workflow.json"))
    rows = [[p["name"], *p["per_episode"], p["summary"]] for p in run["pipelines"]]
    episodes = len(run["pipelines"][0]["per_episode"])
    header = ["pipeline"] + [f"episode {j + 1}" for j in range(episodes)] + ["micro-F1 mean ± std (min, max)"]
    return table(header, rows, "l" + "r" * (len(header) - 1)) + note(
        f"`spacy project run fewshot` with its defaults, {run['date']}: source stage ({run['source_stage']}), then {run['episodes_run']}.",
        f"Machine: {run['machine']}; {run['wall']} wall with SmolLM2 already fetched.",
        f"Source: {source_link('fewshot_workflow.json', prefix)} (the run's record: {source_link('fewshot_workflow.md', prefix)}).",
    )


#: The few-shot workflow's pipelines in its metrics files (fewshot-eval -o metrics/fewshot_<domain>*.json).
FEWSHOT_WORKFLOW_PIPELINES = (("", "`fewshot_ner` (source stage, then the episodes)"),
                              ("_spacy_ner", "spaCy's CNN `ner` on the support set alone"),
                              ("_spacy_ner_source", "spaCy's CNN `ner` trained on the source corpus first, then the support set"))


@block("fewshot-workflow-run")
def fewshot_workflow_run(src: Sources, arg: str, prefix: str) -> str:
    """`benchmarks/workflow_run.py --workflow fewshot`: step times and the three pipelines' episodes."""
    rel = result("workflow_fewshot.json")
    run = src.json(rel)
    out = steps_table(run)
    few = run["fewshot"]
    domain = run_options(run).get("--vars.fewshot_domain", srsly.read_yaml(src.root / "project.yml")["vars"]["fewshot_domain"])
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
        f"in a fresh copy of the project with its defaults (overrides: {run_overrides(run)}), SmolLM2's wheel already in the wheel cache;",
        run_machine(run), f"Source: {source_link('workflow_fewshot.json', prefix)}.",
    )


#: The two recorded `fewshot` workflow runs that differ only in the source stage's FGM.
FEWSHOT_SOURCE_FGM_RUNS = (("workflow_fewshot_source_fgm.json", "on (epsilon 0.01, configs/fewshot.cfg)"),
                           ("workflow_fewshot.json", "off (`vars.fewshot_source_adversarial_epsilon` 0.0)"))


@block("fewshot-source-fgm")
def fewshot_source_fgm(src: Sources, arg: str, prefix: str) -> str:
    """The `fewshot` workflow with and without FGM in its source stage: wall time and politics F1."""
    rows, machines = [], []
    for name, label in FEWSHOT_SOURCE_FGM_RUNS:
        run = src.json(result(f"{name}"))
        steps = {s["step"]: s for s in run["steps"]}
        if "fewshot-source" not in steps:
            raise SourceError(result(f"{name}: no fewshot-source step"))
        summary = run["fewshot"]["fewshot_politics"]
        rows.append([label, f"{steps['fewshot-source']['seconds'] / 60:.1f}", f"{run['total_seconds'] / 60:.1f}",
                     f"{100 * summary['f_mean']:.2f} ± {100 * summary['f_std']:.2f}",
                     f"{100 * summary['f_min']:.2f}–{100 * summary['f_max']:.2f}", source_link(name, prefix)])
        machines.append(f"{name}: {run['date']}, {run_machine(run)}")
    return table(["FGM in the source stage", "`fewshot-source` wall min", "workflow wall min",
                  "`fewshot_ner` politics micro-F1", "min–max", "source"], rows, "lrrrrl") + note(
        "`python benchmarks/workflow_run.py --workflow fewshot` twice, the same defaults but the source stage's FGM; 3 episodes, 50 query sentences, one run each.",
        *machines,
    )


@block("fewshot-prompt-format")
def fewshot_prompt_format(src: Sources, arg: str, prefix: str) -> str:
    probe = src.json(result("fewshot_probe.json"))["prompt_format"]
    header, rows = probe["columns"], probe["rows"]
    keep = [i for i, h in enumerate(header) if not h.startswith("zero-shot")]
    return table([header[i] for i in keep], [[r[i] for i in keep] for r in rows], "l" + "r" * (len(keep) - 1)) + note(
        f"`fewshot_ner`, {probe['setting']}; the settings of the CrossNER table with {probe['same_as_crossner_but']}.",
        f"Source: {source_link('fewshot_probe.json', prefix)} (the probes' record: {source_link('fewshot_probe.md', prefix)}).",
    )


#: fewshot_ner's rows measured in bf16 (fewshot_crossner.py --precision bf16), and the fp32 results files
#: that hold the same rows' per-episode F1 on the same episodes.
PRECISION_FEWSHOT = "fewshot_bf16.json"
PRECISION_FEWSHOT_FP32 = ("fewshot_peers.json", "fewshot_source_in_context.json")


@block("precision-fewshot")
def precision_fewshot(src: Sources, arg: str, prefix: str) -> str:
    bf16 = src.json(result(f"{PRECISION_FEWSHOT}"))
    fp32 = {}
    for name in PRECISION_FEWSHOT_FP32:
        for r in src.json(result(f"{name}"))["rows"]:
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
    table_settings = src.json(result("fewshot_crossner.json"))["settings"]
    differ = sorted(k for k in bf16["settings"].keys() & table_settings.keys()
                    if k != "base_model" and bf16["settings"][k] != table_settings[k])
    if differ:
        raise SourceError(result(f"{PRECISION_FEWSHOT}: settings {differ} differ from fewshot_crossner.json's"))
    return table(["episodes", "row", "F1 per episode, fp32", "F1 per episode, bf16", "bf16 − fp32, paired", "query sentences/s fp32",
                  "bf16"], rows, "llllrrr") + note(
        "`python benchmarks/fewshot_crossner.py --precision bf16` with the CrossNER table's settings and episodes (its own",
        "source stage, run in bf16), against the same rows of the fp32 table on the same episodes; micro-F1 per episode, the",
        "paired difference as mean ± std over the episodes. Query sentences/s: one thread, other jobs beside it, so only",
        f"roughly comparable. Sources: {source_link(PRECISION_FEWSHOT, prefix)}, "
        + ", ".join(source_link(name, prefix) for name in sorted(names)) + ".",
    )
