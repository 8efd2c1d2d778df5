"""`visualize`: render documents' entities with displaCy to a standalone HTML file."""
from pathlib import Path

import typer
from wasabi import msg

from ..util import atomic_write_bytes
from ._app import GPU_ID_OPTION, app, use_gpu, user_errors


@app.command("visualize")
def visualize_cli(
    model: str = typer.Argument(..., help="Pipeline to load: an installed package name or a folder"),
    docs_path: Path = typer.Argument(..., help=".spacy file whose texts are tagged", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="HTML file to write"),
    limit: int = typer.Option(25, "--limit", help="Number of documents to render"),
    gpu_id: int = GPU_ID_OPTION,
) -> None:
    """Tag the texts of a DocBin with a pipeline and write displaCy's entity view as HTML."""
    import spacy
    from spacy import displacy
    from spacy.tokens import DocBin

    use_gpu(gpu_id)
    with user_errors():
        nlp = spacy.load(model)
        texts = [doc.text for _, doc in zip(range(limit), DocBin().from_disk(docs_path).get_docs(nlp.vocab))]
    docs = list(nlp.pipe(texts))
    html = displacy.render(docs, style="ent", page=True, jupyter=False)
    atomic_write_bytes(output, html.encode("utf8"))
    msg.good(f"Rendered {len(docs)} docs with {sum(len(d.ents) for d in docs)} entities to {output}")
