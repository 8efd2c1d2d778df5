"""`python -m spacy_msnr train-budget CONFIG OUTPUT`: a `spacy train` config whose budget follows the data."""
from pathlib import Path

import typer
from wasabi import msg

from ._app import OVERRIDES_CONTEXT, app, user_errors


@app.command("train-budget", context_settings=OVERRIDES_CONTEXT)
def train_budget_cli(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="A `spacy train` config (e.g. configs/ner_trf.cfg)", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="Where to write the budgeted config (then: spacy train OUTPUT ...)"),
    epochs: float = typer.Option(3.0, "--epochs", help="Passes over the train corpus (in the config's own batches)"),
    max_steps: int = typer.Option(0, "--max-steps", help="A fixed number of updates instead, evaluated as the config says (0: from --epochs)"),
    max_seconds: float = typer.Option(0.0, "--max-seconds", help="End training at the first evaluation after this many seconds (0: no cap)"),
) -> None:
    """Count the batches one epoch of the config's train corpus makes with its batcher, and write
    the config with training.max_steps = epochs x that count (the learning-rate schedule decays over
    it), evaluations spread so the last step is evaluated, and a time cap on the batcher (training
    ends at the first evaluation after it). Config overrides as `--paths.train corpus/train.spacy`
    (they are written into OUTPUT)."""
    from spacy.cli._util import parse_config_overrides
    from spacy.util import load_config

    from ..budget import budget_config
    from ..util import atomic_write_bytes

    overrides = parse_config_overrides(ctx.args)
    with user_errors():
        config = load_config(config_path, overrides=overrides, interpolate=False)
        budget = budget_config(config, epochs, max_seconds=max_seconds, max_steps=max_steps)
        atomic_write_bytes(output, budget["config"].to_str().encode("utf8"))
    training = budget["config"]["training"]
    cap = f", time cap {max_seconds:,.0f} s" if max_seconds else ""
    msg.good(f"{output}: {budget['batches_per_epoch']} batches an epoch -> max_steps {budget['max_steps']} "
             f"(eval every {training['eval_frequency']}{cap})")
