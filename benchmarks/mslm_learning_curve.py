"""Plot MSLM's learning curve: test F1 against the labelled fraction, one panel per dataset.

    python benchmarks/mslm_learning_curve.py [--out benchmarks/results/mslm/mslm_learning_curve.png]

Reads the committed `mslm_ablation.py` results that `docgen/mslm.py` renders as the
`mslm-learning-curve` table (its CURVE_FILES below 100 % labelled, ABLATION_FILES at 100 %), so
the plot and the table show the same cells: per dataset and labelled fraction, mean ± std over
the seeds of no adaptation, uniform MLM, MSLM (ELM rate 1) and spaCy's CNN `ner`, each where it
ran. Prints the points it drew.
"""
import argparse
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docgen import Sources  # noqa: E402  (benchmarks/docgen: the tables of the docs)
from docgen.mslm import CURVE_MSLM, DATASETS, curve_cells  # noqa: E402
from docgen.sources import ROOT, result  # noqa: E402

#: (result key, legend label, colour) of the curves, in drawing order.
ROWS = (("none", "no adaptation", "#8172b3"), ("uniform", "uniform MLM", "#55a868"),
        (CURVE_MSLM, "MSLM (ELM rate 1)", "#4c72b0"), ("spacy_cnn", "spaCy CNN ner", "#8c8c8c"))


def curve_points(src: Sources) -> Dict[str, Dict[str, List[Tuple[float, float, float, int]]]]:
    """dataset -> row -> [(fraction, mean F1, std, seeds)] over the fractions where the row ran."""
    points = curve_cells(src)
    out: Dict[str, Dict[str, List[Tuple[float, float, float, int]]]] = {}
    for dataset in DATASETS:
        for row, _, _ in ROWS:
            for fraction, cells in points:
                f1 = [c["ner"]["f1"] for (d, m, _), c in sorted(cells.items()) if d == dataset and m == row]
                if f1:
                    std = statistics.stdev(f1) if len(f1) > 1 else 0.0
                    out.setdefault(dataset, {}).setdefault(row, []).append((fraction, statistics.mean(f1), std, len(f1)))
    return out


def plot(points, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(points), figsize=(5.2 * len(points), 4.0), squeeze=False)
    for ax, (dataset, rows) in zip(axes[0], points.items()):
        for i, (row, label, colour) in enumerate(ROWS):
            if row not in rows:
                continue
            xs, ys, es, ns = zip(*rows[row])
            shift = 1 + 0.025 * (i - 1.5)  # side by side at each fraction, so error bars do not hide each other
            ax.errorbar([100 * x * shift for x in xs], ys, yerr=es, marker="o", capsize=4, color=colour, label=label)
        ax.set_xscale("log")
        ticks = sorted({100 * p[0] for r in rows.values() for p in r})
        ax.set_xticks(ticks, [f"{t:g} %" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("training sentences labelled")
        ax.set_ylabel("test entity F1 (%)")
        ax.set_title(f"{DATASETS[dataset]}: mean ± std over seeds")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / result("mslm_learning_curve.png"))
    args = parser.parse_args()
    points = curve_points(Sources(ROOT))
    for dataset, rows in points.items():
        for row, values in rows.items():
            print(DATASETS[dataset], row, ", ".join(f"{100 * f:g} %: {m:.2f} ± {s:.2f} (n={n})" for f, m, s, n in values))
    plot(points, args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    main()
