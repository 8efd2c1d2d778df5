"""benchmarks/mslm_learning_curve.py: the points it plots are the committed cells' mean ± std."""
import importlib.util
import json
import statistics
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports benchmarks/docgen beside it
    spec = importlib.util.spec_from_file_location("mslm_learning_curve_under_test", BENCHMARKS / "mslm_learning_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_points_are_mean_and_std_per_fraction(tmp_path):
    curve = _module()
    from docgen.mslm import ABLATION_FILES, CURVE_FILES
    results = tmp_path / "benchmarks" / "results" / "mslm"
    results.mkdir(parents=True)
    cell = lambda f1: {"ner": {"f1": f1}, "sens": {}}  # noqa: E731
    fraction, name = CURVE_FILES[0]
    (results / name).write_text(json.dumps({
        "NCBI-disease-IOB/none/0": cell(70.0), "NCBI-disease-IOB/none/1": cell(72.0),
        "NCBI-disease-IOB/mslm-elm1-blm0.15/0": cell(71.0),
        "NCBI-disease-IOB/span/0": cell(99.0),  # not a curve row: not drawn
    }))
    for other in ABLATION_FILES:  # 100 %: one file holds the cells, the others are empty
        (results / other).write_text("{}")
    (results / ABLATION_FILES[0]).write_text(json.dumps({"NCBI-disease-IOB/none/0": cell(80.0),
                                                               "BC5CDR-IOB/uniform/2": cell(81.5)}))
    points = curve.curve_points(curve.Sources(tmp_path))
    ncbi = points["NCBI-disease-IOB"]
    assert ncbi["none"] == [(fraction, 71.0, statistics.stdev([70.0, 72.0]), 2), (1.0, 80.0, 0.0, 1)]
    assert ncbi["mslm-elm1-blm0.15"] == [(fraction, 71.0, 0.0, 1)]
    assert set(ncbi) == {"none", "mslm-elm1-blm0.15"}
    assert points["BC5CDR-IOB"] == {"uniform": [(1.0, 81.5, 0.0, 1)]}
    curve.plot(points, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_table_pairs_mslm_with_uniform_on_the_seeds_both_ran(tmp_path):
    curve = _module()
    from docgen import mslm as render_tables

    results = tmp_path / "benchmarks" / "results" / "mslm"
    results.mkdir(parents=True)
    cell = lambda f1: {"ner": {"f1": f1}, "sens": {}}  # noqa: E731
    fraction, name = render_tables.CURVE_FILES[0]
    mslm = render_tables.CURVE_MSLM
    (results / name).write_text(json.dumps({
        "NCBI-disease-IOB/none/0": cell(70.0), "NCBI-disease-IOB/none/1": cell(72.0),
        f"NCBI-disease-IOB/{mslm}/0": cell(71.0), f"NCBI-disease-IOB/{mslm}/1": cell(74.0),
        "NCBI-disease-IOB/uniform/1": cell(73.5),  # seed 1 only
    }))
    for other in render_tables.ABLATION_FILES:
        (results / other).write_text("{}")
    text = render_tables.mslm_learning_curve(curve.Sources(tmp_path), "", "")
    row = next(line for line in text.splitlines() if line.startswith(f"| NCBI-disease | {100 * fraction:g} %"))
    cols = [c.strip() for c in row.strip("|").split("|")]
    # none, uniform (its seed named), MSLM, MSLM − none paired (+1, +2), MSLM − uniform (74.0 − 73.5), CNN, seeds
    assert cols[2:] == ["71.00 ± 1.41", "73.50 (seed 1)", "72.50 ± 2.12", "+1.50 ± 0.71", "+0.50", "–", "0, 1"]
