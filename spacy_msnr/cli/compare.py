"""`compare`: the pipeline's test scores beside its peer's (e.g. spaCy's CNN `ner`), from `spacy evaluate` outputs."""
import json
from pathlib import Path
from typing import Dict, List

import typer
from wasabi import msg

from ._app import app


def load_scores(path: Path) -> Dict[str, float]:
    """P/R/F1 (in %) and words/s from a `spacy evaluate --output` JSON file."""
    try:
        scores = json.loads(path.read_text(encoding="utf8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a `spacy evaluate --output` file ({err})") from None
    missing = [key for key in ("ents_p", "ents_r", "ents_f") if key not in scores]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} (was the pipeline evaluated on entities?)")
    return {"P": 100 * scores["ents_p"], "R": 100 * scores["ents_r"], "F1": 100 * scores["ents_f"],
            "words/s": scores.get("speed", float("nan"))}


def comparison_table(rows: Dict[str, Dict[str, float]]) -> List[str]:
    """Markdown rows: one per pipeline, then the F1 difference of the first minus each other one."""
    lines = ["| pipeline | P | R | F1 | words/s |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {s['P']:.2f} | {s['R']:.2f} | {s['F1']:.2f} | {s['words/s']:,.0f} |" for name, s in rows.items()]
    first, *others = rows
    lines += [f"| F1 {first} − {other} | | | {rows[first]['F1'] - rows[other]['F1']:+.2f} | |" for other in others]
    return lines


@app.command("compare")
def compare_cli(
    metrics: List[Path] = typer.Argument(..., help="`spacy evaluate --output` files, the pipeline first, then its peers"),
    names: str = typer.Option("", "--names", help="Comma-separated row names (default: the file names)"),
    output: Path = typer.Option(None, "--output", "-o", help="Also write the table here (Markdown)"),
) -> None:
    """Print test P/R/F1 and words/s side by side, and the first pipeline's F1 lead over each peer."""
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
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("\n".join(lines) + "\n", encoding="utf8")
