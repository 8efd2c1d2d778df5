"""`python -m spacy_msnr review-import`: a review tool's export (Label Studio JSON, Prodigy JSONL)
added to a DocBin of gold entities, each task once."""
from pathlib import Path

import typer
from wasabi import msg

from ._app import app, user_errors
from .review_export import Format

#: Skipped tasks listed by name (the rest are counted).
SHOWN = 20


@app.command("review-import")
def review_import_cli(
    export: Path = typer.Argument(..., help="Label Studio JSON export, or Prodigy JSONL (db-out)", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="DocBin (.spacy) to add the reviewed documents to (created if missing)"),
    format: Format = typer.Option(Format.label_studio, "--format", "-f", help="label-studio or prodigy"),
    labels: str = typer.Option("", "--labels", "-l", help="Comma-separated allowed labels (default: any)"),
    lang: str = typer.Option("en", "--lang", help="Language of the blank pipeline whose tokenizer makes the Docs"),
) -> None:
    """Import reviewed tasks as gold `doc.ents`: Label Studio's latest annotation that was not
    cancelled, Prodigy's accepted answers. Tasks already in OUTPUT are not added again."""
    import spacy

    from ..review import import_review

    allowed = [x.strip() for x in labels.split(",") if x.strip()] or None
    with user_errors():
        summary = import_review(export, output, format.value, labels=allowed, nlp=spacy.blank(lang))
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(summary.skipped.counts.items())) or "none"
    msg.good(f"{summary.imported} of {summary.tasks} tasks imported, {summary.present} already present, skipped: {skipped} -> {output} ({summary.total} docs)")
    for where in summary.skipped.tasks[:SHOWN]:
        msg.text(f"  skipped {where}")
    if len(summary.skipped.tasks) > SHOWN:
        msg.text(f"  ... and {len(summary.skipped.tasks) - SHOWN} more")
