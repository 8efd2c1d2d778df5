"""`python -m spacy_msnr review-export`: the documents a person should review first, with the
pipeline's entities as pre-annotations, as Label Studio tasks or Prodigy JSONL."""
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ._app import app, user_errors


class Format(str, Enum):
    label_studio = "label-studio"
    prodigy = "prodigy"


class Strategy(str, Enum):
    least_confident = "least_confident"
    margin = "margin"
    entropy = "entropy"
    random = "random"


@app.command("review-export")
def review_export_cli(
    input: Path = typer.Argument(..., help="An annotate output folder, or a JSONL file of records (id, text, entities)", exists=True),
    output: Path = typer.Argument(..., help="Tasks file to write (.json for Label Studio, .jsonl for Prodigy)"),
    format: Format = typer.Option(Format.label_studio, "--format", "-f", help="label-studio (also writes <output stem>.labelling.xml) or prodigy"),
    strategy: Strategy = typer.Option(Strategy.least_confident, "--strategy", "-s", help="Which documents first: least_confident, margin, entropy, or random (seeded)"),
    limit: int = typer.Option(100, "--limit", "-n", help="Tasks to write (0: every document)"),
    threshold: float = typer.Option(0.9, "--threshold", "-t", help="Entities scored at or above this are marked auto-accepted"),
    seed: int = typer.Option(0, "--seed", help="Seed of the random strategy"),
    empty: float = typer.Option(0.5, "--empty", help="Score of a document without entities (0.5: uncertain)"),
    labels: str = typer.Option("", "--labels", "-l", help="Comma-separated labels the reviewer may add (Label Studio config), besides those predicted"),
    model_version: Optional[str] = typer.Option(None, "--model-version", help="Label Studio model_version (default: the annotate run's pipeline)"),
    text_key: str = typer.Option("text", "--text-key", "-tk", help="Annotate folder: the text field its sources were read with"),
    id_key: str = typer.Option("id", "--id-key", "-ik", help="Annotate folder: the id field its sources were read with"),
) -> None:
    """Rank the documents of INPUT by a selection strategy and write the first ones as review
    tasks, the pipeline's entities as pre-annotations, confident ones marked auto-accepted."""
    from ..review import export_queue

    with user_errors():
        summary = export_queue(
            input, output, format=format.value, strategy=strategy.value, limit=limit or None, threshold=threshold, seed=seed, empty=empty,
            labels=[x.strip() for x in labels.split(",") if x.strip()], model_version=model_version, text_key=text_key, id_key=id_key,
        )
    config = f"; labelling config {summary.config}" if summary.config else ""
    msg.good(f"{summary.tasks} of {summary.documents} documents written as tasks ({strategy.value}), entities auto-accepted: {summary.auto_accepted} -> {output}{config}")
