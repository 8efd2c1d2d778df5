"""benchmarks/mslm_learning_curve.py: the points it plots are the committed cells' mean ± std."""
import importlib.util
import json
import statistics
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports render_tables beside it
    spec = importlib.util.spec_from_file_location("mslm_learning_curve_under_test", BENCHMARKS / "mslm_learning_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_points_are_mean_and_std_per_fraction(tmp_path):
    curve = _module()
    results = tmp_path / curve.RESULTS
    results.mkdir(parents=True)
    cell = lambda f1: {"ner": {"f1": f1}, "sens": {}}  # noqa: E731
    fraction, name = curve.CURVE_FILES[0]
    (results / name).write_text(json.dumps({
        "NCBI-disease-IOB/none/0": cell(70.0), "NCBI-disease-IOB/none/1": cell(72.0),
        "NCBI-disease-IOB/mslm-elm1-blm0.15/0": cell(71.0),
        "NCBI-disease-IOB/span/0": cell(99.0),  # not a curve row: not drawn
    }))
    for other in curve.ABLATION_FILES:  # 100 %: one file holds the cells, the others are empty
        (results / other).write_text("{}")
    (results / curve.ABLATION_FILES[0]).write_text(json.dumps({"NCBI-disease-IOB/none/0": cell(80.0),
                                                               "BC5CDR-IOB/uniform/2": cell(81.5)}))
    points = curve.curve_points(curve.Sources(tmp_path))
    ncbi = points["NCBI-disease-IOB"]
    assert ncbi["none"] == [(fraction, 71.0, statistics.stdev([70.0, 72.0]), 2), (1.0, 80.0, 0.0, 1)]
    assert ncbi["mslm-elm1-blm0.15"] == [(fraction, 71.0, 0.0, 1)]
    assert set(ncbi) == {"none", "mslm-elm1-blm0.15"}
    assert points["BC5CDR-IOB"] == {"uniform": [(1.0, 81.5, 0.0, 1)]}
    curve.plot(points, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000
