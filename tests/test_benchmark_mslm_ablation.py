"""benchmarks/mslm_ablation.py: MSLM variant rows and their paired differences."""
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mslm_ablation.py"


@pytest.fixture
def ablation():
    """A fresh copy of the script's module (add_mslm_variant changes its METHODS)."""
    spec = importlib.util.spec_from_file_location("mslm_ablation_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(f1: float, term_acc: float) -> dict:
    return {"ner": {"f1": f1}, "sens": {"term_prob": 0.01, "term_acc": term_acc, "generic_acc": 0.2}}


def test_default_setting_is_the_mslm_row(ablation):
    before = dict(ablation.METHODS)
    assert ablation.add_mslm_variant(0.5, 0.15, "spacy_msnr.softmax_share.v1") == "mslm"
    assert ablation.METHODS == before


def test_variant_names_its_setting(ablation):
    name = ablation.add_mslm_variant(1.0, 0.15, "spacy_msnr.softmax_share.v1")
    assert name == "mslm-elm1-blm0.15"
    masker, weighting = ablation.METHODS[name]
    assert (masker["elm_rate"], masker["blm_rate"], weighting) == (1.0, 0.15, "spacy_msnr.softmax_share.v1")
    assert ablation.METHODS["mslm"][0]["elm_rate"] == 0.5  # the default row and the test masks are untouched
    assert ablation.SENSITIVITY_MASKER["elm_rate"] == 0.5
    other = ablation.add_mslm_variant(0.5, 0.15, "spacy_msnr.inverse_frequency.v1")
    assert other == "mslm-elm0.5-blm0.15-inverse_frequency"
    assert ablation.METHODS[other][1] == "spacy_msnr.inverse_frequency.v1"


def test_variant_differences_are_paired_by_seed(ablation):
    name = ablation.add_mslm_variant(1.0, 0.15, "spacy_msnr.softmax_share.v1")
    d = "NCBI"
    results = {f"{d}/uniform/0": _cell(80.0, 0.01), f"{d}/uniform/1": _cell(82.0, 0.02), f"{d}/uniform/2": _cell(90.0, 0.0),
               f"{d}/mslm/0": _cell(81.0, 0.08), f"{d}/mslm/1": _cell(82.5, 0.08),
               f"{d}/{name}/0": _cell(81.5, 0.10), f"{d}/{name}/1": _cell(83.5, 0.12)}
    rows = {row[0]: row[1:] for row in ablation.summarise(results, [d], [0, 1, 2])}
    # seed 2 has no variant cell: the pairs are seeds 0 and 1 only (+1.5 and +1.5)
    assert rows[f"{name} - uniform"][0] == "+1.50 ± 0.00 (n=2)"
    assert rows[f"{name} - uniform"][2] == "+9.50 ± 0.71 (n=2)"  # term top-1 in points: +9, +10
    assert rows[f"{name} - mslm"][0] == "+0.75 ± 0.35 (n=2)"  # +0.5, +1.0
    assert rows["mslm - uniform"][0] == "+0.75 ± 0.35 (n=2)"  # +1.0, +0.5
    assert f"{name} - span" not in rows  # never ran: left out
    assert rows["mslm - span"] == ["-"] * 4  # the default row keeps its full set of differences
    assert rows[name][0] == "82.50 ± 1.41 (n=2)"
