"""`python -m spacy_msnr pretrain CONFIG --output DIR`: mask-specific LM adaptation (MSLM)."""
from pathlib import Path

import typer
from spacy.cli._util import parse_config_overrides
from wasabi import msg

from ._app import OVERRIDES_CONTEXT, app


@app.command("pretrain", context_settings=OVERRIDES_CONTEXT)
def pretrain_cli(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="MSLM config file (see configs/mslm.cfg)", exists=True, dir_okay=False),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for the adapted Hugging Face model"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, or -1 for CPU"),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTPUT/checkpoint"),
) -> None:
    """Adapt a masked LM to DS-terms of the training corpus; overrides as `--paths.train X`."""
    from ..mslm.train import load_config, train

    overrides = parse_config_overrides(ctx.args)
    try:
        train(load_config(config_path, overrides), output, gpu_id=gpu_id, resume=resume)
    except (ValueError, FileExistsError, FileNotFoundError) as err:
        msg.fail(str(err), exits=1)
