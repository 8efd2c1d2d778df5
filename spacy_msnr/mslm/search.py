"""Mask-rate search: short MSLM runs over ELM rate x BLM rate x weighting, the best written as a config.

The MSLM paper finds that the best masking rates depend on the model, the data and the sequence
length. `search(config, output, points)` runs the same `train()` as the `mslm` command for every
grid point (a short run of `steps` optimizer steps, everything else as in `config`), reads the
held-out DS-term sensitivity that training logs on `paths.dev` at its last step, and writes

- `output/search.json`: every point's dev metrics and seconds, rewritten atomically after each
  point, so a rerun skips the finished points (they are keyed by name and reused only while the
  config and `steps` are the same);
- `output/mslm.cfg`: `config` with the chosen point's `[model.masker]` rates and `[model.weighting]`,
  a complete config for `python -m spacy_msnr mslm`;
- `output/runs/<point>/mslm_log.json`: each short run's log (its weights only with `keep_models`).

Every point is scored on the same held-out masks (`metrics.ds_term_sensitivity`: all DS-terms and
15 % of the other wordpieces masked, from the config's seed), whatever rates it trained with.
The default signal is dev DS-term top-1 (`term_acc`). In the MiniLM ablations of docs/mslm.md
(benchmarks/results/mslm/mslm_ablation_minilm_*.json: 500 adaptation steps, 3 seeds, sensitivity on
the test text) the variants' mean term top-1 orders their mean NER F1 exactly on BC5CDR (none,
uniform MLM, MSLM, MSLM with ELM rate 1; Spearman 1.0) and nearly on NCBI-disease (uniform MLM and
three MSLM settings; 0.8, the top two 0.03 F1 apart); term top-1 + generic top-1 orders them worse
(0.4 on both), as generic top-1 falls while term top-1 rises. That is evidence from few variants
and long runs, not proof that a short run ranks points the same way. Generic words still guard
the choice: a point whose dev generic top-1 is below `min_generic_share` of the best point's is
not chosen.
"""
import hashlib
import json
import logging
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from thinc.api import Config
from wasabi import table

from ..registry import weightings
from ..util import atomic_write_bytes
from . import loss as _loss  # noqa: F401  (registers the weightings)
from .train import LOG_NAME, train

logger = logging.getLogger(__name__)

SEARCH_NAME = "search.json"
CONFIG_NAME = "mslm.cfg"
RUNS = "runs"
MASKER = "spacy_msnr.mask_specific.v1"

#: The signals a point can be chosen by: a description and the score from its dev metrics
#: (`term_acc`, `term_prob`, `generic_acc`, `generic_prob`, `tag_acc` as training logs them).
SIGNALS: Dict[str, Tuple[str, Callable[[Dict[str, float]], float]]] = {
    "term_acc": ("dev DS-term top-1", lambda m: m["term_acc"]),
    "term_prob": ("dev DS-term gold-wordpiece probability", lambda m: m["term_prob"]),
    "term_generic_acc": ("dev DS-term top-1 + dev generic top-1", lambda m: m["term_acc"] + m["generic_acc"]),
    "tag_acc": ("dev token accuracy of the joint tagging head (model.ner_weight > 0)", lambda m: m["tag_acc"]),
}


@dataclass(frozen=True)
class GridPoint:
    """One setting tried: the masker's ELM and BLM rates and the loss weighting's registered name."""

    elm_rate: float
    blm_rate: float
    weighting: str

    @property
    def name(self) -> str:
        """A folder-safe name, e.g. elm0.5-blm0.15-softmax_share.v1."""
        short = re.sub(r"[^\w.-]", "_", self.weighting.removeprefix("spacy_msnr."))
        return f"elm{self.elm_rate:g}-blm{self.blm_rate:g}-{short}"

    def describe(self) -> str:
        return f"ELM rate {self.elm_rate:g}, BLM rate {self.blm_rate:g}, weighting {self.weighting}"


#: The MSLM paper's setting (ELM rate 0.5, BLM rate 0.15, softmax-share weighting): the "mslm" row
#: of benchmarks/mslm_ablation.py; `ablation_row_name` names the rows of other settings.
PAPER_SETTING = GridPoint(0.5, 0.15, "spacy_msnr.softmax_share.v1")


def ablation_row_name(elm_rate: float, blm_rate: float, weighting: str) -> str:
    """The row name (and the key of its results-JSON cells, dataset/row/seed) of an MSLM setting in
    benchmarks/mslm_ablation.py: "mslm" for PAPER_SETTING, else e.g. "mslm-elm1-blm0.15", with the
    weighting's short name appended when it is not the paper's ("mslm-elm0.5-blm0.15-inverse_frequency").
    Unlike `GridPoint.name` (a search's folder name), it omits the paper's weighting and the version."""
    if (elm_rate, blm_rate, weighting) == (PAPER_SETTING.elm_rate, PAPER_SETTING.blm_rate, PAPER_SETTING.weighting):
        return "mslm"
    name = f"mslm-elm{elm_rate:g}-blm{blm_rate:g}"
    if weighting != PAPER_SETTING.weighting:
        name += "-" + weighting.replace("spacy_msnr.", "").rsplit(".v", 1)[0]
    return name


@dataclass
class Selection:
    """The chosen point's name (None when no point has a usable score), every point's score, and
    why a point was passed over."""

    chosen: Optional[str]
    scores: Dict[str, Optional[float]]
    excluded: Dict[str, str] = field(default_factory=dict)


def parse_values(text: str, option: str) -> List[float]:
    """Comma-separated numbers, e.g. "0.5,1.0"; a ValueError naming `option` otherwise."""
    values = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            values.append(float(item))
        except ValueError:
            raise ValueError(f"{option}: {item!r} is not a number (give comma-separated rates, e.g. 0.5,1.0)") from None
    return values


def parse_names(text: str) -> List[str]:
    """Comma-separated names, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def expand_grid(elm_rates: Sequence[float], blm_rates: Sequence[float], weighting_names: Sequence[str]) -> List[GridPoint]:
    """Every ELM rate x BLM rate x weighting, in that nesting order (the weighting varies fastest),
    repeats dropped; a ValueError for an empty axis, a rate outside [0, 1] or an unknown weighting."""
    for axis, values in (("ELM rates", elm_rates), ("BLM rates", blm_rates), ("weightings", weighting_names)):
        if not len(values):
            raise ValueError(f"The grid is empty: give at least one of its {axis}")
    for option, values in (("--elm-rates", elm_rates), ("--blm-rates", blm_rates)):
        for value in values:
            if math.isnan(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{option}: every rate must be within [0, 1], got {value:g}")
    known = sorted(weightings.get_all())
    unknown = [name for name in weighting_names if name not in known]
    if unknown:
        raise ValueError(f"Unknown weighting {', '.join(unknown)}; registered in @msnr_weightings: {', '.join(known)}")
    points: Dict[str, GridPoint] = {}
    for point in (GridPoint(float(e), float(b), w) for e in elm_rates for b in blm_rates for w in weighting_names):
        points.setdefault(point.name, point)
    return list(points.values())


def point_config(config: Config, point: GridPoint, steps: Optional[int] = None) -> Config:
    """`config` with the point's rates and weighting; with `steps`, also a short run of that many
    steps that evaluates on paths.dev only at its end and writes no checkpoint."""
    _check_masker(config)
    config = config.copy()
    masker = config["model"]["masker"]
    masker["elm_rate"], masker["blm_rate"] = point.elm_rate, point.blm_rate
    config["model"]["weighting"] = {"@msnr_weightings": point.weighting}
    if steps is not None:
        config["training"].update(max_steps=steps, max_epochs=0, eval_frequency=steps, checkpoint_every=0, keep_checkpoint=False)
    return config


def check_config(config: Config, signal: str) -> None:
    """Raise a ValueError for a config or signal the search cannot score."""
    if signal not in SIGNALS:
        raise ValueError(f"Unknown signal {signal!r}; choose one of: " + "; ".join(f"{k} ({d})" for k, (d, _) in SIGNALS.items()))
    resolved = config.interpolate()
    if not resolved["paths"].get("dev"):
        raise ValueError("The search scores every point on held-out text: set paths.dev (e.g. --paths.dev corpus/dev.spacy)")
    if signal == "tag_acc" and not resolved["model"].get("ner_weight"):
        raise ValueError("--signal tag_acc needs the joint tagging head: set model.ner_weight > 0 (e.g. --model.ner_weight 1.0)")
    _check_masker(config)


def _check_masker(config: Config) -> None:
    name = config.get("model", {}).get("masker", {}).get("@msnr_maskers")
    if name != MASKER:
        raise ValueError(f'mslm-search tunes the rates of @msnr_maskers = "{MASKER}"; [model.masker] of the config names {name!r}')


def score(metrics: Dict[str, Any], signal: str) -> Optional[float]:
    """The point's score under `signal`, or None when a metric it needs is missing or undefined."""
    try:
        value = float(SIGNALS[signal][1](metrics))
    except (KeyError, TypeError):
        return None
    return None if math.isnan(value) else value


def select(points: Dict[str, Dict[str, Any]], signal: str = "term_acc", min_generic_share: float = 0.8) -> Selection:
    """Choose the highest-scoring point (the first in `points`' order on a tie) among those whose
    dev generic top-1 is at least `min_generic_share` times the best point's. `points` maps a
    name to its record in search.json (its "metrics" as training logs them, without "dev_")."""
    scores = {name: score(record.get("metrics", {}), signal) for name, record in points.items()}
    generic = {name: _number(record.get("metrics", {}).get("generic_acc")) for name, record in points.items()}
    excluded = {name: f"no {signal}" for name, value in scores.items() if value is None}
    best_generic = max((g for g in generic.values() if g is not None), default=None)
    if best_generic is not None:
        for name, g in generic.items():
            if name not in excluded and (g is None or g < min_generic_share * best_generic):
                excluded[name] = f"generic top-1 {_fmt(g)} < {min_generic_share:g} x the best ({best_generic:.4f})"
    eligible = [(value, -i, name) for i, (name, value) in enumerate(scores.items()) if name not in excluded]
    return Selection(max(eligible)[2] if eligible else None, scores, excluded)


def search(
    config: Config,
    output: Union[str, Path],
    points: Sequence[GridPoint],
    *,
    steps: int = 100,
    max_seconds: float = 0.0,
    signal: str = "term_acc",
    min_generic_share: float = 0.8,
    gpu_id: int = -1,
    keep_models: bool = False,
    source: str = "the config",
) -> Dict[str, Any]:
    """Run the grid (resuming `output/search.json`), choose a point, write `output/mslm.cfg`.

    A point starts only while less than `max_seconds` (0: no limit) have passed since this call
    began, or while no point of the grid has a result yet; a started point always finishes.
    Returns the search record (also in search.json). `source` names the config in the header.
    """
    output = Path(output)
    if not points:
        raise ValueError("The grid is empty: give at least one ELM rate, BLM rate and weighting")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"--steps must be an integer >= 1, got {steps!r}")
    if not 0.0 <= min_generic_share <= 1.0:
        raise ValueError(f"--min-generic-share must be within [0, 1], got {min_generic_share:g}")
    if max_seconds < 0:
        raise ValueError(f"--max-seconds must be >= 0 (0: no limit), got {max_seconds:g}")
    check_config(config, signal)
    settings = {"config_sha256": hashlib.sha256(config.to_str().encode("utf8")).hexdigest(), "steps": steps}
    record = _read_record(output, settings)
    names = [p.name for p in points]
    logger.info(f"Grid of {len(points)} points, {steps} steps each; budget "
                + (f"{max_seconds:g} s" if max_seconds else "none") + f"; signal {signal} ({SIGNALS[signal][0]})")
    for point in points:
        logger.info(f"  {point.name}: {point.describe()}" + (" (finished before)" if point.name in record["points"] else ""))
    start = time.perf_counter()
    not_tried: List[str] = []
    for index, point in enumerate(points, 1):
        prefix = f"[{index}/{len(points)}] {point.name}"
        if point.name in record["points"]:
            logger.info(f"{prefix}: finished before, skipped")
            continue
        elapsed = time.perf_counter() - start
        if max_seconds and elapsed >= max_seconds and any(n in record["points"] for n in names):
            not_tried.append(point.name)
            continue
        result = _run_point(config, point, output / RUNS / point.name, steps, gpu_id, keep_models)
        record["points"][point.name] = result
        _write_record(output, record)
        value = score(result["metrics"], signal)
        logger.info(f"{prefix}: {signal} {_fmt(value)}, generic top-1 {_fmt(result['metrics'].get('generic_acc'))}, "
                    f"{result['seconds']:.1f} s (elapsed {time.perf_counter() - start:.0f} s)")
    if not_tried:
        logger.warning(f"Budget of {max_seconds:g} s spent: {len(not_tried)} point(s) not tried: {', '.join(not_tried)} "
                       "(rerun with a larger --max-seconds to try them; finished points are kept)")
    selection = select({n: record["points"][n] for n in names if n in record["points"]}, signal, min_generic_share)
    record.update(grid=names, not_tried=not_tried, signal=signal, min_generic_share=min_generic_share,
                  scores=selection.scores, excluded=selection.excluded, chosen=selection.chosen)
    _write_record(output, record)
    log_table(points, record)
    if selection.chosen is None:
        raise ValueError(f"No point of the grid has a usable {signal} ({'; '.join(sorted(set(selection.excluded.values())))}); "
                         "check that paths.dev holds DS-terms, or choose another --signal")
    chosen = next(p for p in points if p.name == selection.chosen)
    write_config(config, chosen, output / CONFIG_NAME, _header(chosen, points, record, source))
    logger.info(f"Chose {chosen.describe()}; wrote {output / CONFIG_NAME} (run: python -m spacy_msnr mslm {output / CONFIG_NAME} OUTPUT_DIR)")
    return record


def write_config(config: Config, point: GridPoint, path: Union[str, Path], header: Iterable[str] = ()) -> None:
    """Write `config` with the point's settings to `path` (atomically), `header` as comment lines on top."""
    text = "".join(f"# {line}\n" for line in header) + point_config(config, point).to_str() + "\n"
    atomic_write_bytes(path, text.encode("utf8"))


def log_table(points: Sequence[GridPoint], record: Dict[str, Any]) -> None:
    """Log the grid as a table: rates, weighting, the dev metrics, seconds, the score; the chosen point marked."""
    rows = []
    for point in points:
        result = record["points"].get(point.name)
        metrics = result["metrics"] if result else {}
        mark = "*" if point.name == record.get("chosen") else ("not tried" if result is None else ("excluded" if point.name in record.get("excluded", {}) else ""))
        rows.append((mark, f"{point.elm_rate:g}", f"{point.blm_rate:g}", point.weighting,
                     *(_fmt(metrics.get(k)) for k in ("term_acc", "term_prob", "generic_acc", "generic_prob")),
                     _fmt(record.get("scores", {}).get(point.name)), f"{result['seconds']:.1f}" if result else "–"))
    header = ("", "ELM", "BLM", "weighting", "term top-1", "term prob", "generic top-1", "generic prob", f"score ({record.get('signal')})", "seconds")
    logger.info("\n" + table(rows, header=header, divider=True, aligns=("l", "r", "r", "l", "r", "r", "r", "r", "r", "r")))


def _run_point(config: Config, point: GridPoint, run_dir: Path, steps: int, gpu_id: int, keep_models: bool) -> Dict[str, Any]:
    """One short MSLM run of the point into `run_dir`; its record for search.json."""
    shutil.rmtree(run_dir, ignore_errors=True)  # what an interrupted attempt left
    run_dir.mkdir(parents=True)
    begin = time.perf_counter()
    log = train(point_config(config, point, steps), run_dir / "model", gpu_id=gpu_id, show_progress=False)
    seconds = time.perf_counter() - begin
    shutil.copyfile(run_dir / "model" / LOG_NAME, run_dir / LOG_NAME)
    if not keep_models:
        shutil.rmtree(run_dir / "model")
    last = log["history"][-1] if log["history"] else {}
    metrics = {k[len("dev_"):]: v if isinstance(v, int) else _number(v) for k, v in last.items() if k.startswith("dev_")}
    return {"elm_rate": point.elm_rate, "blm_rate": point.blm_rate, "weighting": point.weighting, "metrics": metrics,
            "steps": log["steps"], "seconds": round(seconds, 3), "train_seconds": log["seconds"], "loss": _number(last.get("loss"))}


def _read_record(output: Path, settings: Dict[str, Any]) -> Dict[str, Any]:
    path = output / SEARCH_NAME
    if not path.exists():
        return {"settings": settings, "points": {}}
    record = json.loads(path.read_text(encoding="utf8"))
    if record.get("settings") != settings:
        raise ValueError(f"{path} holds a search with another config or --steps; choose another OUTPUT_DIR "
                         "or delete it to start over")
    return record


def _write_record(output: Path, record: Dict[str, Any]) -> None:
    atomic_write_bytes(output / SEARCH_NAME, (json.dumps(record, indent=2) + "\n").encode("utf8"))


def _header(chosen: GridPoint, points: Sequence[GridPoint], record: Dict[str, Any], source: str) -> List[str]:
    axes = [sorted({getattr(p, a) for p in points}, key=lambda v: (isinstance(v, str), v)) for a in ("elm_rate", "blm_rate", "weighting")]
    scores = ", ".join(f"{n} {_fmt(record['scores'].get(n))}" + (" (chosen)" if n == chosen.name else "")
                       for n in record["grid"] if n in record["points"])
    lines = [
        f"Written by `python -m spacy_msnr mslm-search` from {source}: {chosen.describe()}.",
        f"Grid: ELM rate {', '.join(f'{v:g}' for v in axes[0])} x BLM rate {', '.join(f'{v:g}' for v in axes[1])} "
        f"x weighting {', '.join(axes[2])}; {record['settings']['steps']} steps a point.",
        f"Signal {record['signal']} ({SIGNALS[record['signal']][0]}), generic floor {record['min_generic_share']:g}: {scores}.",
    ]
    if record["not_tried"]:
        lines.append(f"Not tried (time budget): {', '.join(record['not_tried'])}.")
    lines.append(f"Every point's metrics: {SEARCH_NAME} beside this file.")
    return lines


def _number(value: Any) -> Optional[float]:
    """A finite float, or None (JSON has no NaN)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _fmt(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.4f}"


__all__ = ["GridPoint", "PAPER_SETTING", "Selection", "SIGNALS", "ablation_row_name", "expand_grid", "point_config", "select",
           "search", "write_config"]
