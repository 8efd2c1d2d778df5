"""review.calibrate: matching predictions to gold, isotonic calibration, ECE, thresholds by precision."""
import json

import numpy as np
import pytest
import spacy
from spacy.tokens import Span, SpanGroup

from spacy_msnr.review.calibrate import (
    Calibrator, apply, calibrate, expected_calibration_error, fit_isotonic, match_predictions, pav_blocks,
    precision_coverage, threshold_for_precision,
)


def test_pav_on_a_hand_case():
    # correct 0 | 1 0 0 | 1 | 1: (1, 0) violates -> 0.5, then (0.5 over 2, 0) -> 1/3 over 0.2..0.4
    blocks = pav_blocks([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0, 1, 0, 0, 1, 1])
    assert [(lo, hi, n) for lo, hi, _, n in blocks] == [(0.1, 0.1, 1), (0.2, 0.4, 3), (0.5, 0.5, 1), (0.6, 0.6, 1)]
    assert [m for _, _, m, _ in blocks] == pytest.approx([0.0, 1 / 3, 1.0, 1.0])
    cal = fit_isotonic([0.6, 0.3, 0.1, 0.5, 0.2, 0.4], [1, 0, 0, 1, 1, 0])  # order does not matter
    assert cal.thresholds == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.6])
    assert cal.values == pytest.approx([0.0, 1 / 3, 1 / 3, 1.0, 1.0])
    assert cal(0.05) == 0.0 and cal(0.3) == pytest.approx(1 / 3) and cal(0.9) == 1.0
    assert cal(0.15) == pytest.approx(1 / 6)  # halfway between 0 and 1/3
    assert cal(0.45) == pytest.approx(2 / 3)  # halfway between 1/3 and 1


def test_pav_pools_ties_in_score():
    # 0.5 twice (1, 0) -> one value 0.5; then 0.7 -> 1
    cal = fit_isotonic([0.5, 0.5, 0.7], [1, 0, 1])
    assert cal.thresholds == [0.5, 0.7] and cal.values == pytest.approx([0.5, 1.0])
    # a tie that violates the order with its left neighbour is pooled with it: (1) | (0, 0) -> 1/3
    assert [b[2] for b in pav_blocks([0.1, 0.2, 0.2], [1, 0, 0])] == pytest.approx([1 / 3])


def test_isotonic_is_monotone_and_in_range_on_random_data():
    rng = np.random.default_rng(3)
    scores = rng.random(400)
    correct = rng.random(400) < 0.3 + 0.4 * np.sin(6 * scores) ** 2
    cal = fit_isotonic(scores, correct)
    assert all(a <= b for a, b in zip(cal.thresholds, cal.thresholds[1:]))
    grid = cal.many(np.linspace(-0.5, 1.5, 1001))
    assert np.all(np.diff(grid) >= -1e-12) and grid.min() >= 0.0 and grid.max() <= 1.0
    assert sum(b[2] * b[3] for b in pav_blocks(scores, correct)) == pytest.approx(correct.sum())  # PAV keeps the total


def test_calibrator_round_trips_through_json():
    cal = fit_isotonic([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0, 1, 0, 0, 1, 1])
    back = Calibrator.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal and back(0.45) == cal(0.45)
    with pytest.raises(ValueError):
        Calibrator.from_dict({"thresholds": [0.1], "values": []})


def test_expected_calibration_error():
    # perfectly calibrated: 0.25 right 1 of 4 times, 0.75 right 3 of 4 times
    assert expected_calibration_error([0.25] * 4 + [0.75] * 4, [1, 0, 0, 0, 1, 1, 1, 0]) == pytest.approx(0.0)
    # bin 9: mean 0.9, 2 of 4 right -> gap 0.4, weight 4/6; bin 2: mean 0.2, 0 of 2 -> gap 0.2, weight 2/6
    # ECE = 4/6 * 0.4 + 2/6 * 0.2 = 1/3
    assert expected_calibration_error([0.9, 0.9, 0.9, 0.9, 0.2, 0.2], [1, 0, 0, 1, 0, 0]) == pytest.approx(1 / 3)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == 0.0  # 1.0 goes in the last bin
    assert expected_calibration_error([], []) == 0.0


def test_threshold_for_precision_and_coverage():
    scores, correct = [0.9, 0.8, 0.7, 0.6, 0.5], [1, 1, 0, 1, 0]
    # precision at >= t: 0.9 -> 1/1, 0.8 -> 2/2, 0.7 -> 2/3, 0.6 -> 3/4, 0.5 -> 3/5
    assert threshold_for_precision(scores, correct, 0.75) == 0.6
    assert threshold_for_precision(scores, correct, 0.8) == 0.8
    assert threshold_for_precision(scores, correct, 1.0) == 0.8
    assert threshold_for_precision(scores, correct, 0.6) == 0.5
    assert threshold_for_precision(scores, [0, 0, 0, 0, 0], 0.5) is None
    assert threshold_for_precision([], [], 0.5) is None
    assert precision_coverage(scores, correct, 0.6) == (0.75, 0.8)
    assert precision_coverage(scores, correct, 0.95) == (None, 0.0)
    # tied scores go in together: at 0.7 both 0.7s count (1 of 2 right after 0.9)
    assert threshold_for_precision([0.9, 0.7, 0.7], [1, 1, 0], 0.7) == 0.9


def docs():
    nlp = spacy.blank("en")
    gold1, pred1 = nlp("Ann Lee flew to Paris."), nlp("Ann Lee flew to Paris.")
    gold2, pred2 = nlp("Bob met Carl in Rome."), nlp("Bob met Carl in Rome.")
    gold1.ents = [Span(gold1, 0, 2, "PER"), Span(gold1, 4, 5, "LOC")]
    gold2.ents = [Span(gold2, 0, 1, "PER"), Span(gold2, 2, 3, "PER"), Span(gold2, 4, 5, "LOC")]
    # doc 1: "Ann" (wrong span) 0.6, "Paris" LOC 0.9 right; doc 2: "Bob" PER 0.8 right, "Carl" LOC (wrong label) 0.3, "Rome" unscored
    pred1.ents = [Span(pred1, 0, 1, "PER"), Span(pred1, 4, 5, "LOC")]
    pred1.spans["fewshot_ner"] = SpanGroup(pred1, spans=list(pred1.ents), attrs={"scores": [0.6, 0.9]})
    pred2.ents = [Span(pred2, 0, 1, "PER"), Span(pred2, 2, 3, "LOC"), Span(pred2, 4, 5, "LOC")]
    pred2.spans["fewshot_ner"] = SpanGroup(pred2, spans=[pred2.ents[0], pred2.ents[1]], attrs={"scores": [0.8, 0.3]})
    return nlp, [pred1, pred2], [gold1, gold2]


def test_match_predictions_on_two_docs():
    nlp, preds, golds = docs()
    matches = match_predictions(preds, golds)
    assert dict(matches) == {"PER": [(0.6, False), (0.8, True)], "LOC": [(0.9, True), (0.3, False)]}
    assert matches.skipped == {"LOC": 1} and matches.gold == {"PER": 3, "LOC": 2}
    with pytest.raises(ValueError, match="doc 1"):
        match_predictions(preds, [golds[0], nlp("Something else.")])
    with pytest.raises(ValueError, match="2 predicted docs but 1 gold"):
        match_predictions(preds, golds[:1])


def test_calibrate_and_apply():
    _, preds, golds = docs()
    result = json.loads(json.dumps(calibrate(preds, golds, target_precision=0.95)))
    per = result["labels"]["PER"]
    assert (per["predictions"], per["correct"], per["gold"], per["unscored"]) == (2, 1, 3, 0)
    assert per["calibrator"] == {"thresholds": [0.6, 0.8], "values": [0.0, 1.0]}
    assert per["threshold"] == 0.8 and per["precision"] == 1.0 and per["coverage"] == 0.5
    # raw: bin 6 gap 0.6, bin 8 gap 0.2 -> (0.6 + 0.2) / 2 = 0.4; calibrated: 0 and 1 exactly -> 0
    assert per["ece_raw"] == pytest.approx(0.4) and per["ece_calibrated"] == pytest.approx(0.0)
    assert result["labels"]["LOC"]["unscored"] == 1 and result["labels"]["LOC"]["threshold"] == 0.9
    record = {"id": "x", "entities": [{"label": "PER", "score": 0.7}, {"label": "PER", "score": None}, {"label": "ORG", "score": 0.5}]}
    out = apply(record, result)
    assert [e["calibrated"] for e in out["entities"]] == [pytest.approx(0.5), None, None]
    assert out["entities"][0]["score"] == 0.7 and "calibrated" not in record["entities"][0]
    assert [e["calibrated"] for e in apply(preds[1], result)] == [1.0, 0.0, None]
    assert apply({"entities": json.dumps(record["entities"][:1])}, {"PER": Calibrator([0.0, 1.0], [0.0, 1.0])})["entities"][0]["calibrated"] == 0.7


def test_calibration_fixes_a_miscalibrated_source_on_held_out_data():
    rng = np.random.default_rng(0)
    scores = rng.random(10_000)
    correct = rng.random(10_000) < scores**2  # the true precision is score ** 2
    fit, held = slice(0, 5_000), slice(5_000, None)
    cal = fit_isotonic(scores[fit], correct[fit])
    assert expected_calibration_error(scores[held], correct[held]) > 0.1  # about 1/6
    assert expected_calibration_error(cal.many(scores[held]), correct[held]) < 0.03
