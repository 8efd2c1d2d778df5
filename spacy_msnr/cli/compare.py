"""`compare`: the pipeline's test scores beside its peer's (e.g. spaCy's CNN `ner`), from `spacy evaluate` outputs."""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer
from wasabi import msg

from ..util import atomic_write_bytes
from ._app import app


def load_scores(path: Path) -> Dict[str, Any]:
    """P/R/F1 (in %), words/s and per-type P/R/F1 (in %) from a `spacy evaluate --output` JSON file."""
    try:
        scores = json.loads(path.read_text(encoding="utf8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a `spacy evaluate --output` file ({err})") from None
    missing = [key for key in ("ents_p", "ents_r", "ents_f") if key not in scores]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} (was the pipeline evaluated on entities?)")
    per_type = {label: {"P": 100 * s["p"], "R": 100 * s["r"], "F1": 100 * s["f"]}
                for label, s in sorted((scores.get("ents_per_type") or {}).items())}
    return {"P": 100 * scores["ents_p"], "R": 100 * scores["ents_r"], "F1": 100 * scores["ents_f"],
            "words/s": scores.get("speed", float("nan")), "per_type": per_type}


def comparison_table(rows: Dict[str, Dict[str, Any]]) -> List[str]:
    """Markdown: one row per pipeline, the F1 difference of the first minus each other one, then
    per-type P/R/F1 of each pipeline (for the types any of them was scored on)."""
    lines = ["| pipeline | P | R | F1 | words/s |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {s['P']:.2f} | {s['R']:.2f} | {s['F1']:.2f} | {s['words/s']:,.0f} |" for name, s in rows.items()]
    first, *others = rows
    lines += [f"| F1 {first} − {other} | | | {rows[first]['F1'] - rows[other]['F1']:+.2f} | |" for other in others]
    labels = sorted({label for s in rows.values() for label in s.get("per_type", {})})
    if labels:
        lines += ["", "| type | pipeline | P | R | F1 |", "|---|---|---|---|---|"]
        for label in labels:
            for name, s in rows.items():
                t = s.get("per_type", {}).get(label)
                lines.append(f"| {label} | {name} | " + (" | ".join(f"{t[k]:.2f}" for k in ("P", "R", "F1")) if t else "– | – | –") + " |")
    return lines


def plot_per_type(rows: Dict[str, Dict[str, Any]], path: Path) -> None:
    """A grouped bar chart of per-type (and overall) F1, one bar a pipeline (SVG or PNG by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({label for s in rows.values() for label in s.get("per_type", {})}) + ["overall"]
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(labels) + 1), 3.2))
    for i, (name, s) in enumerate(rows.items()):
        values = [s.get("per_type", {}).get(label, {}).get("F1", 0.0) for label in labels[:-1]] + [s["F1"]]
        bars = ax.bar([x + (i - (len(rows) - 1) / 2) * width for x in range(len(labels))], values, width, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("test F1")
    ax.set_ylim(0, 105)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Per-type test F1")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial" + path.suffix)
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


@app.command("compare")
def compare_cli(
    metrics: List[Path] = typer.Argument(..., help="`spacy evaluate --output` files, the pipeline first, then its peers"),
    names: str = typer.Option("", "--names", help="Comma-separated row names (default: the file names)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Also write the table here (Markdown)"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw per-type F1 of each pipeline here (.svg or .png)"),
) -> None:
    """Print test P/R/F1 and words/s side by side (overall and per type), and the first pipeline's F1 lead over each peer."""
    labels = names.split(",") if names else [path.stem for path in metrics]
    if len(labels) != len(metrics):
        msg.fail(f"--names gives {len(labels)} names for {len(metrics)} files", exits=1)
    try:
        rows = {label: load_scores(path) for label, path in zip(labels, metrics)}
    except ValueError as err:
        msg.fail(str(err), exits=1)
    lines = comparison_table(rows)
    print("\n".join(lines))
    if output is not None:
        atomic_write_bytes(output, ("\n".join(lines) + "\n").encode("utf8"))
    if plot is not None:
        plot_per_type(rows, plot)
        msg.good(f"Wrote {plot}")
