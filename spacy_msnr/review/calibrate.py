"""Calibration: entity scores turned into the precision they stand for, and a threshold that means what it says.

A pipeline's entity score (`doc.spans[...].attrs["scores"]`, as `annotate.records.entity_records`
reads it) is not necessarily a probability that the entity is right. On gold Docs:

- `match_predictions` pairs each scored predicted entity with whether it is a gold entity (same
  start_char, end_char and label: an exact match, as spaCy's `ents_p` counts);
- `fit_isotonic` fits, per label, a non-decreasing map score -> precision by pool-adjacent-violators
  (a `Calibrator`, JSON-able, e.g. for a pipeline's meta);
- `expected_calibration_error` measures how far scores are from the precision they claim;
- `threshold_for_precision` finds the lowest raw score whose predictions at or above it reach a
  target precision, `precision_coverage` what a threshold keeps;
- `calibrate` does all of it per label, `apply` adds `calibrated` to entity records.
"""
import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from spacy.tokens import Doc

from ..annotate.records import entity_records

#: (raw score, whether the entity is a gold entity)
Pair = Tuple[float, bool]


class Matches(Dict[str, List[Pair]]):
    """label -> [(score, correct)] of the scored predicted entities; `skipped` counts the predicted
    entities without a score by label, `gold` the gold entities by label."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: Dict[str, int] = {}
        self.gold: Dict[str, int] = {}


def match_predictions(pred_docs: Iterable[Doc], gold_docs: Iterable[Doc]) -> Matches:
    """Every scored predicted entity with whether (start_char, end_char, label) is a gold entity.

    Docs are paired by order and must have the same text (ValueError naming the index otherwise);
    entities without a score are skipped and counted in `Matches.skipped`."""
    matches = Matches()
    preds, golds = list(pred_docs), list(gold_docs)
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predicted docs but {len(golds)} gold docs")
    for i, (pred, gold) in enumerate(zip(preds, golds)):
        if pred.text != gold.text:
            raise ValueError(f"doc {i}: the predicted and the gold doc have different texts ({pred.text[:40]!r} vs {gold.text[:40]!r})")
        truth = {(e.start_char, e.end_char, e.label_) for e in gold.ents}
        for _, _, label in truth:
            matches.gold[label] = matches.gold.get(label, 0) + 1
        for ent in entity_records(pred):
            label = ent["label"]
            if ent["score"] is None:
                matches.skipped[label] = matches.skipped.get(label, 0) + 1
                continue
            matches.setdefault(label, []).append((float(ent["score"]), (ent["start_char"], ent["end_char"], label) in truth))
    return matches


@dataclass
class Calibrator:
    """A non-decreasing map raw score -> calibrated precision: linear between the points
    (`thresholds[i]`, `values[i]`), constant outside them, clipped to [0, 1]."""

    thresholds: List[float] = field(default_factory=list)
    values: List[float] = field(default_factory=list)

    def __call__(self, score: float) -> float:
        """The calibrated precision of a raw score."""
        if not self.thresholds:
            raise ValueError("an empty Calibrator (fitted on no data)")
        return float(np.clip(np.interp(float(score), self.thresholds, self.values), 0.0, 1.0))

    def many(self, scores: Sequence[float]) -> np.ndarray:
        """`self(score)` for each score, as an array."""
        if not self.thresholds:
            raise ValueError("an empty Calibrator (fitted on no data)")
        return np.clip(np.interp(np.asarray(scores, dtype=float), self.thresholds, self.values), 0.0, 1.0)

    def to_dict(self) -> Dict[str, List[float]]:
        """A JSON-able dict (`from_dict` reads it back)."""
        return {"thresholds": [float(x) for x in self.thresholds], "values": [float(y) for y in self.values]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> "Calibrator":
        """The Calibrator of a `to_dict` dict."""
        thresholds, values = [float(x) for x in data["thresholds"]], [float(y) for y in data["values"]]
        if len(thresholds) != len(values):
            raise ValueError(f"a Calibrator needs as many thresholds as values ({len(thresholds)} vs {len(values)})")
        return cls(thresholds, values)


def pav_blocks(scores: Sequence[float], correct: Sequence[Union[bool, float]]) -> List[Tuple[float, float, float, int]]:
    """The pooled blocks of pool-adjacent-violators, in score order: (lowest score, highest score,
    mean of `correct`, count). Equal scores are pooled first, so they always share a value."""
    x, y = np.asarray(scores, dtype=float), np.asarray(correct, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"scores and correct must be two lists of the same length ({x.shape} vs {y.shape})")
    if not len(x):
        raise ValueError("no scores to fit")
    order = np.argsort(x, kind="mergesort")
    x, y = x[order], y[order]
    # blocks as [low, high, sum, count]; ties pooled first
    blocks: List[List[float]] = []
    for xi, yi in zip(x, y):
        if blocks and blocks[-1][1] == xi:
            blocks[-1][2] += yi
            blocks[-1][3] += 1
        else:
            blocks.append([xi, xi, yi, 1])
        while len(blocks) > 1 and blocks[-2][2] / blocks[-2][3] > blocks[-1][2] / blocks[-1][3]:
            low, _, total, n = blocks.pop(-2)
            last = blocks[-1]
            last[0], last[2], last[3] = low, last[2] + total, last[3] + n
    return [(float(lo), float(hi), float(s / n), int(n)) for lo, hi, s, n in blocks]


def fit_isotonic(scores: Sequence[float], correct: Sequence[Union[bool, float]]) -> Calibrator:
    """Isotonic regression of `correct` on `scores` (pool-adjacent-violators): each block's
    mean held from its lowest to its highest score, linear between blocks. Points inside a run of
    equal values are dropped (they change nothing)."""
    points: List[Tuple[float, float]] = []
    for low, high, mean, _ in pav_blocks(scores, correct):
        points.append((low, mean))
        if high > low:
            points.append((high, mean))
    kept = [p for i, p in enumerate(points) if not (0 < i < len(points) - 1 and points[i - 1][1] == p[1] == points[i + 1][1])]
    return Calibrator([p[0] for p in kept], [p[1] for p in kept])


def expected_calibration_error(probs: Sequence[float], correct: Sequence[Union[bool, float]], bins: int = 10) -> float:
    """ECE: over `bins` equal-width bins of [0, 1], |mean prob - share correct| weighted by the
    bin's share of the predictions (a prob of 1.0 goes in the last bin). 0.0 for no predictions."""
    p, y = np.asarray(probs, dtype=float), np.asarray(correct, dtype=float)
    if p.shape != y.shape:
        raise ValueError(f"probs and correct must have the same length ({p.shape} vs {y.shape})")
    if not len(p):
        return 0.0
    index = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in np.unique(index):
        inside = index == b
        total += inside.sum() / len(p) * abs(p[inside].mean() - y[inside].mean())
    return float(total)


def precision_coverage(scores: Sequence[float], correct: Sequence[Union[bool, float]], threshold: float) -> Tuple[Optional[float], float]:
    """(precision, coverage) of the predictions with score >= `threshold`: the share of them that
    are correct (None when there are none) and their share of all predictions."""
    x, y = np.asarray(scores, dtype=float), np.asarray(correct, dtype=float)
    kept = x >= threshold
    n = int(kept.sum())
    coverage = n / len(x) if len(x) else 0.0
    return (float(y[kept].mean()) if n else None), float(coverage)


def threshold_for_precision(scores: Sequence[float], correct: Sequence[Union[bool, float]], target: float) -> Optional[float]:
    """The lowest raw score t (one of `scores`) such that the predictions with score >= t have a
    precision >= `target` on this data; None when no t reaches it."""
    x, y = np.asarray(scores, dtype=float), np.asarray(correct, dtype=float)
    if not len(x):
        return None
    order = np.argsort(-x, kind="mergesort")
    x, y = x[order], y[order]
    hits, n = np.cumsum(y), np.arange(1, len(x) + 1)
    last = np.r_[x[1:] != x[:-1], True]  # the last of each run of equal scores: all of them are kept
    ok = last & (hits >= target * n - 1e-12)
    return float(x[ok].min()) if ok.any() else None


def calibrate(pred_docs: Iterable[Doc], gold_docs: Iterable[Doc], target_precision: float = 0.95, bins: int = 10) -> Dict[str, Any]:
    """Per label on gold Docs: the isotonic calibrator, ECE before (raw) and after (calibrated),
    the lowest raw threshold reaching `target_precision` with its precision and coverage, counts.

    Returns `{"target_precision", "bins", "labels": {label: {"calibrator", "ece_raw",
    "ece_calibrated", "threshold", "precision", "coverage", "predictions", "correct", "gold",
    "unscored"}}}` (JSON-able; `threshold`/`precision` None where the target is not reached).
    The ECEs are measured on the data the calibrator was fitted on (an optimistic `ece_calibrated`)."""
    matches = match_predictions(pred_docs, gold_docs)
    labels: Dict[str, Dict[str, Any]] = {}
    for label in sorted(set(matches) | set(matches.skipped) | set(matches.gold)):
        pairs = matches.get(label, [])
        row: Dict[str, Any] = {
            "calibrator": None, "ece_raw": None, "ece_calibrated": None, "threshold": None, "precision": None, "coverage": 0.0,
            "predictions": len(pairs), "correct": sum(c for _, c in pairs), "gold": matches.gold.get(label, 0), "unscored": matches.skipped.get(label, 0),
        }
        if pairs:
            scores, correct = [s for s, _ in pairs], [float(c) for _, c in pairs]
            calibrator = fit_isotonic(scores, correct)
            threshold = threshold_for_precision(scores, correct, target_precision)
            row.update(
                calibrator=calibrator.to_dict(),
                ece_raw=expected_calibration_error(scores, correct, bins),
                ece_calibrated=expected_calibration_error(calibrator.many(scores), correct, bins),
                threshold=threshold,
            )
            if threshold is not None:
                row["precision"], row["coverage"] = precision_coverage(scores, correct, threshold)
        labels[label] = row
    return {"target_precision": float(target_precision), "bins": bins, "labels": labels}


def calibrators(calibration: Mapping[str, Any]) -> Dict[str, Calibrator]:
    """label -> Calibrator from a `calibrate` result, or from {label: Calibrator or its dict}."""
    source = calibration["labels"] if "labels" in calibration and isinstance(calibration["labels"], Mapping) else calibration
    out: Dict[str, Calibrator] = {}
    for label, value in source.items():
        if isinstance(value, Calibrator):
            out[label] = value
        elif isinstance(value, Mapping) and "calibrator" in value:
            if value["calibrator"] is not None:
                out[label] = Calibrator.from_dict(value["calibrator"])
        elif isinstance(value, Mapping):
            out[label] = Calibrator.from_dict(value)
    return out


def apply(item: Union[Mapping[str, Any], Sequence[Mapping[str, Any]], Doc], calibration: Mapping[str, Any]) -> Any:
    """Entity records with `calibrated` added (`score` kept; None without a score or a calibrator
    for the label). A record (`{"entities": [...]}`, a JSON string of them too) gives a new
    record, a list of entity dicts a new list, a Doc the list of its `entity_records`."""
    maps = calibrators(calibration)

    def one(entity: Mapping[str, Any]) -> Dict[str, Any]:
        score, fn = entity.get("score"), maps.get(entity.get("label", ""))
        return {**entity, "calibrated": None if score is None or fn is None else fn(float(score))}

    if isinstance(item, Doc):
        return [one(e) for e in entity_records(item)]
    if isinstance(item, Mapping):
        entities = item.get("entities") or []
        if isinstance(entities, str):
            entities = json.loads(entities)
        return {**item, "entities": [one(e) for e in entities]}
    return [one(e) for e in item]
