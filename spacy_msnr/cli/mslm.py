"""`python -m spacy_msnr mslm CONFIG OUTPUT_DIR`: mask-specific LM adaptation (MSLM)."""
import logging
from pathlib import Path

import typer
from wasabi import msg

from ._app import GPU_ID_OPTION, OVERRIDES_CONTEXT, app, show_log, user_errors


def run_mslm(ctx: typer.Context, config_path: Path, output: Path, gpu_id: int, resume: bool) -> None:
    """Load the MSLM config with the command line's overrides and train."""
    from spacy.cli._util import parse_config_overrides

    from ..mslm.train import load_config, train

    overrides = parse_config_overrides(ctx.args)
    show_log(logging.getLogger("spacy_msnr.mslm"))
    with user_errors():
        train(load_config(config_path, overrides), output, gpu_id=gpu_id, resume=resume)


@app.command("mslm", context_settings=OVERRIDES_CONTEXT)
def mslm_cli(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="MSLM config file (see configs/mslm.cfg)", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="Folder for the adapted Hugging Face model"),
    gpu_id: int = GPU_ID_OPTION,
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTPUT/checkpoint"),
) -> None:
    """Adapt a masked LM to the DS-terms of a training corpus (MSLM); config overrides as
    `--paths.train X`. Not `spacy pretrain`: its output is a Hugging Face model folder for the
    `transformer` component."""
    run_mslm(ctx, config_path, output, gpu_id, resume)


@app.command("pretrain", hidden=True, context_settings=OVERRIDES_CONTEXT)
def pretrain_alias(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., exists=True, dir_okay=False),
    output: Path = typer.Option(..., "--output", "-o"),
    gpu_id: int = GPU_ID_OPTION,
    resume: bool = typer.Option(False, "--resume"),
) -> None:
    """Deprecated name of `mslm` (with --output instead of a positional OUTPUT_DIR)."""
    msg.warn("`pretrain` is deprecated: use `python -m spacy_msnr mslm CONFIG OUTPUT_DIR`")
    run_mslm(ctx, config_path, output, gpu_id, resume)
