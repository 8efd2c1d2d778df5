"""benchmarks/fewshot_crossner.py: --merge-into puts a run's rows into an existing results file."""
import importlib.util
import json
import statistics
import sys
import types
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(monkeypatch, results: Path):
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("fewshot_crossner_under_test", BENCHMARKS / "fewshot_crossner.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", results)
    plotted = []
    monkeypatch.setattr(module, "plot", lambda rows, path: plotted.append(([r["row"] for r in rows], path)))
    return module, plotted


def _cell(f: float, **extra) -> dict:
    return {"f": f, "s_per_update": 1.0, "sents_per_s": 2.0, "train_s": 3.0, "score_s": 4.0, "peak_mib": 5.0, **extra}


def _old_row(target: str, k: int, row: str, f: float) -> dict:
    return {"target": target, "k": k, "row": row, "episodes": 1, "f_mean": f, "f_std": 0.0, "f_min": f, "f_max": f,
            "f_episodes": [f], "s_per_update": 0.0, "cpu_s_per_update": 0.0, "sents_per_s": 1.0,
            "cpu_sents_per_s": 1.0, "episode_s": 1.0, "peak_mib": 1.0}


SETTINGS = {"n_way": 5, "query_limit": 100, "seed": 0}


def test_merge_replaces_its_rows_and_keeps_the_others(tmp_path, monkeypatch):
    crossner, plotted = _module(monkeypatch, tmp_path / "results")
    crossner.RESULTS.mkdir()
    kept = _old_row("politics", 5, "spacy_trf_source", 29.3)
    (crossner.RESULTS / "peer.json").write_text(json.dumps(
        {"settings": SETTINGS, "rows": [kept, _old_row("science", 10, "spacy_trf_source", 1.0)]}))
    cells = tmp_path / "cells"
    cells.mkdir()
    (cells / "settings.json").write_text(json.dumps({**SETTINGS, "steps": 10}))  # a key the file lacks: no conflict
    trf = {"base": "minilm", "sentences": 3, "source": "conll2003", "labels": ["person"], "epochs": 3, "steps": 9,
           "train_s": 60.0, "dev_f": 0.9, "dev_sentences": 2}
    for episode, f in enumerate((0.2, 0.3, 0.4)):
        (cells / f"science-k10-ep{episode}-spacy_trf_source.json").write_text(json.dumps(_cell(f, trf_source=trf)))
    (cells / "ai-k10-ep0-spacy_trf_source.json").write_text(json.dumps(_cell(0.9)))  # not a --targets domain
    (cells / "science-k10-ep0-source_zero.json").write_text(json.dumps(_cell(0.9)))  # not a --rows row

    args = types.SimpleNamespace(merge_into="peer", targets=["science"], shots=[10], rows=["spacy_trf_source"])
    crossner.merge_rows(args, cells)

    merged = json.loads((crossner.RESULTS / "peer.json").read_text())
    assert merged["settings"] == SETTINGS
    assert [(r["target"], r["k"], r["row"]) for r in merged["rows"]] == [
        ("politics", 5, "spacy_trf_source"), ("science", 10, "spacy_trf_source")]
    assert merged["rows"][0] == kept
    new = merged["rows"][1]
    assert new["episodes"] == 3 and new["f_episodes"] == [20.0, 30.0, 40.0]
    assert new["f_mean"] == pytest.approx(30.0) and new["f_std"] == pytest.approx(statistics.stdev([20.0, 30.0, 40.0]))
    md = (crossner.RESULTS / "peer.md").read_text()
    assert "| science | 10 | spacy_trf_source | 3 | 30.00 ± 10.00 |" in md
    assert "Source training of the spacy_trf_source row (science K=10)" in md
    assert plotted == [(["spacy_trf_source", "spacy_trf_source"], crossner.RESULTS / "peer.png")]


def test_merge_refuses_a_file_measured_with_other_settings(tmp_path, monkeypatch):
    crossner, _ = _module(monkeypatch, tmp_path / "results")
    crossner.RESULTS.mkdir()
    before = json.dumps({"settings": {**SETTINGS, "query_limit": 50}, "rows": []})
    (crossner.RESULTS / "peer.json").write_text(before)
    cells = tmp_path / "cells"
    cells.mkdir()
    (cells / "settings.json").write_text(json.dumps(SETTINGS))
    (cells / "science-k10-ep0-spacy_trf_source.json").write_text(json.dumps(_cell(0.5)))
    args = types.SimpleNamespace(merge_into="peer", targets=["science"], shots=[10], rows=["spacy_trf_source"])
    with pytest.raises(SystemExit, match=r"peer\.json: its settings differ .*'query_limit': \(50, 100\)"):
        crossner.merge_rows(args, cells)
    assert (crossner.RESULTS / "peer.json").read_text() == before
