"""benchmarks/mslm_search_validation.py: the search's choice judged against measured F1."""
import importlib.util
import json
from pathlib import Path

import pytest

from spacy_msnr.mslm.search import ablation_row_name

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mslm_search_validation.py"


@pytest.fixture(scope="module")
def validation():
    spec = importlib.util.spec_from_file_location("mslm_search_validation_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _point(elm, weighting, term_acc, seconds=10.0):
    return {"elm_rate": elm, "blm_rate": 0.15, "weighting": weighting, "metrics": {"term_acc": term_acc, "generic_acc": 0.2},
            "seconds": seconds}


def _row_name(elm, blm, weighting):
    return "mslm" if (elm, weighting) == (0.5, "spacy_msnr.softmax_share.v1") else f"mslm-elm{elm:g}-blm{blm:g}"


def test_spearman_hand_cases(validation):
    assert validation.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert validation.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # ranks x: 1, 2, 3, 4; y: 1, 3, 2, 4 -> 1 - 6 * 2 / (4 * 15) = 0.8
    assert validation.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert validation.spearman([1, 2], [1, 2]) is None


def test_chosen_point_gap_is_paired_by_seed(validation):
    soft = "spacy_msnr.softmax_share.v1"
    record = {"grid": ["a", "b", "c"], "chosen": "b", "scores": {"a": 0.05, "b": 0.09, "c": 0.07},
              "points": {"a": _point(0.5, soft, 0.05), "b": _point(1.0, soft, 0.09), "c": _point(2.0, soft, 0.07, 5.0)}}
    cells = {"D/mslm/0": {"ner": {"f1": 80.0}}, "D/mslm/1": {"ner": {"f1": 81.0}},
             "D/mslm-elm1-blm0.15/0": {"ner": {"f1": 82.0}}, "D/mslm-elm1-blm0.15/1": {"ner": {"f1": 84.0}},
             "D/mslm-elm2-blm0.15/0": {"ner": {"f1": 83.0}}, "D/mslm-elm2-blm0.15/1": {"ner": {"f1": 84.0}},
             "E/mslm/0": {"ner": {"f1": 10.0}}}
    out = validation.judge(record, cells, "D", _row_name)
    v = out["verdict"]
    assert v["best"] == "c" and v["chosen"] == "b"
    assert v["gap"] == pytest.approx(83.0 - 83.5)
    assert v["paired_gap_mean"] == pytest.approx(-0.5)  # seeds 0, 1: -1.0, 0.0
    assert v["paired_gap_std"] == pytest.approx(0.7071, abs=1e-4)
    assert v["spread"] == pytest.approx(1.4142, abs=1e-4)  # b's seeds 82, 84
    assert v["within_spread"] is True
    assert v["spearman"] == pytest.approx(0.5)  # signal ranks a < c < b, F1 ranks a < b < c
    assert v["search_seconds"] == pytest.approx(25.0)
    assert [p["f1_mean"] for p in out["points"]] == [80.5, 83.0, 83.5]


def test_unmeasured_choice_claims_nothing(validation):
    soft = "spacy_msnr.softmax_share.v1"
    record = {"grid": ["a", "b", "z"], "chosen": "b", "scores": {"a": 0.05, "b": 0.09},
              "points": {"a": _point(0.5, soft, 0.05), "b": _point(1.0, soft, 0.09)}}
    out = validation.judge(record, {"D/mslm/0": {"ner": {"f1": 80.0}}}, "D", _row_name)
    assert "gap" not in out["verdict"] and "not measured" in out["verdict"]["note"]
    assert out["points"][2] == {"point": "z", "tried": False}
    text = validation.render({"dataset": "D", "command": "x", "machine": "m", "signal": "term_acc",
                              "runs": [{"steps": 50, **out}]})
    assert "not measured" in text and "| z | not tried |" in text


def test_one_seed_points_claim_no_spread(validation):
    soft = "spacy_msnr.softmax_share.v1"
    record = {"grid": ["a", "b"], "chosen": "b", "scores": {"a": 0.05, "b": 0.09},
              "points": {"a": _point(0.5, soft, 0.05), "b": _point(1.0, soft, 0.09)}}
    cells = {"D/mslm/0": {"ner": {"f1": 83.0}}, "D/mslm-elm1-blm0.15/0": {"ner": {"f1": 82.5}}}
    out = validation.judge(record, cells, "D", _row_name)
    v = out["verdict"]
    assert v["gap"] == pytest.approx(-0.5) and v["paired_gap_mean"] == pytest.approx(-0.5)
    assert v["spread"] is None and v["within_spread"] is None and v["paired_gap_std"] is None
    text = validation.render({"dataset": "D", "label": "seed 0", "command": "x", "machine": "m", "signal": "term_acc",
                              "runs": [{"steps": 50, **out}]})
    assert "82.50 (one seed)" in text and "no seed spread" in text and "(seed 0)" in text and "±" not in text.split("|---")[1]


def test_rejudge_round_trips_the_search_record(validation):
    """A results file's run turns back into the record that judge read; judged again against new
    cells, the once unmeasured choice gets its F1 and its gap."""
    soft, inv = "spacy_msnr.softmax_share.v1", "spacy_msnr.inverse_frequency.v1"
    record = {"grid": ["a", "b", "z"], "chosen": "b", "scores": {"a": 0.05, "b": 0.09},
              "excluded": {"a": "generic top-1 below 80 % of the best point's"},
              "points": {"a": _point(0.5, soft, 0.05), "b": _point(1.0, inv, 0.09, 7.0)}}

    def row_name(elm, blm, weighting):
        return f"mslm-elm{elm:g}-blm{blm:g}" + ("-inverse_frequency" if weighting == inv else "")

    old_cells = {"D/mslm-elm0.5-blm0.15/0": {"ner": {"f1": 80.0}}, "D/mslm-elm0.5-blm0.15/1": {"ner": {"f1": 82.0}}}
    first = validation.judge(record, old_cells, "D", row_name)
    assert "gap" not in first["verdict"]
    again = validation.record_from_run({"steps": 50, **first})
    assert again == record
    new_cells = {**old_cells, "D/mslm-elm1-blm0.15-inverse_frequency/0": {"ner": {"f1": 81.0}},
                 "D/mslm-elm1-blm0.15-inverse_frequency/1": {"ner": {"f1": 82.0}}}
    v = validation.judge(again, new_cells, "D", row_name)["verdict"]
    assert v["best"] == "b" and v["chosen"] == "b"
    assert v["gap"] == pytest.approx(0.0) and v["within_spread"] is True
    assert v["search_seconds"] == pytest.approx(17.0)


def test_rejudge_cli_runs_no_search(validation, tmp_path, monkeypatch):
    soft = "spacy_msnr.softmax_share.v1"
    record = {"grid": ["a", "b"], "chosen": "b", "scores": {"a": 0.05, "b": 0.09},
              "points": {"a": _point(0.5, soft, 0.05), "b": _point(1.0, soft, 0.09)}}
    out = validation.judge(record, {}, "NCBI-disease-IOB", ablation_row_name)
    earlier = {"dataset": "NCBI-disease-IOB", "label": "", "signal": "term_acc", "machine": "m", "threads": "1",
               "command": "python benchmarks/mslm_search_validation.py --project P", "runs": [{"steps": 50, **out}]}
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    cells = {"NCBI-disease-IOB/mslm/0": {"ner": {"f1": 80.0}}, "NCBI-disease-IOB/mslm/1": {"ner": {"f1": 81.0}},
             "NCBI-disease-IOB/mslm-elm1-blm0.15/0": {"ner": {"f1": 82.0}},
             "NCBI-disease-IOB/mslm-elm1-blm0.15/1": {"ner": {"f1": 83.0}}}
    (tmp_path / "cells.json").write_text(json.dumps(cells))
    monkeypatch.setattr(validation, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(validation, "run_search", lambda *a: pytest.fail("--rejudge ran a search"))
    monkeypatch.setattr("sys.argv", ["x", "--rejudge", str(tmp_path / "earlier.json"), "--dataset", "NCBI-disease-IOB",
                                     "--ablation", str(tmp_path / "cells.json"), "--results-name", "r"])
    validation.main()
    res = json.loads((tmp_path / "results" / "r.json").read_text())
    assert res["search_command"] == earlier["command"] and "--rejudge" in res["command"]
    assert res["ablation"] == ["cells.json"]
    v = res["runs"][0]["verdict"]
    assert v["chosen"] == "b" and v["best"] == "b" and v["gap"] == pytest.approx(0.0)
    text = (tmp_path / "results" / "r.md").read_text()
    assert "judged again by" in text and "82.50 ± 0.71" in text
    monkeypatch.setattr("sys.argv", ["x", "--dataset", "D", "--ablation", "c.json", "--results-name", "r"])
    with pytest.raises(SystemExit):
        validation.main()
