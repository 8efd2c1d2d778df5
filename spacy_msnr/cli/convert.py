"""`convert`: IOB2/CoNLL token<TAB>tag files to .spacy DocBins, validated."""
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ..util import atomic_write_bytes
from ._app import app


@app.command("convert")
def convert_cli(
    input_path: Path = typer.Argument(..., help="IOB2 file: token<TAB>tag a line, blank line between sentences", exists=True, dir_okay=False),
    output_path: Path = typer.Argument(..., help="The .spacy file to write"),
    n_sents: int = typer.Option(1, "--n-sents", "-n", help="Sentences per Doc"),
    labels: Optional[List[str]] = typer.Option(None, "--label", "-l", help="Allowed entity label (repeat); others are an error"),
) -> None:
    """Convert an IOB2 file to a DocBin with gold entities. Malformed input stops with file:line."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    from ..corpus.iob import IOBFormatError, iob_to_docs

    try:
        docs = iob_to_docs(input_path, Vocab(), n_sents=n_sents, labels=labels or None)
    except IOBFormatError as err:
        msg.fail(str(err), exits=1)
    atomic_write_bytes(output_path, DocBin(docs=docs, store_user_data=False).to_bytes())
    n_ents = sum(len(doc.ents) for doc in docs)
    msg.good(f"Wrote {len(docs)} docs ({sum(len(d) for d in docs)} tokens, {n_ents} entities) to {output_path}")
