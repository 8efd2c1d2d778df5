"""`python -m spacy_msnr mslm-search CONFIG OUTPUT_DIR`: choose MSLM's mask rates and weighting by short runs."""
import logging
from pathlib import Path

import typer

from ._app import GPU_ID_OPTION, OVERRIDES_CONTEXT, app, show_log, user_errors


@app.command("mslm-search", context_settings=OVERRIDES_CONTEXT)
def mslm_search_cli(
    ctx: typer.Context,
    config_path: Path = typer.Argument(..., help="MSLM config file (see configs/mslm.cfg)", exists=True, dir_okay=False),
    output: Path = typer.Argument(..., help="Folder for search.json, runs/ and the chosen mslm.cfg"),
    elm_rates: str = typer.Option("0.5,1.0", "--elm-rates", help="ELM rates to try, comma-separated"),
    blm_rates: str = typer.Option("0.15", "--blm-rates", help="BLM rates to try, comma-separated"),
    weighting_names: str = typer.Option("spacy_msnr.softmax_share.v1,spacy_msnr.inverse_frequency.v1", "--weightings",
                                        help="Loss weightings to try (names in @msnr_weightings), comma-separated"),
    steps: int = typer.Option(100, "--steps", help="Adaptation steps per grid point"),
    max_seconds: float = typer.Option(0, "--max-seconds", help="Start no new point after this many seconds (0: no limit)"),
    signal: str = typer.Option("term_acc", "--signal", help="What picks the point: term_acc, term_prob, term_generic_acc or tag_acc"),
    min_generic_share: float = typer.Option(0.8, "--min-generic-share",
                                            help="Never choose a point whose dev generic top-1 is below this share of the best point's"),
    keep_models: bool = typer.Option(False, "--keep-models", help="Keep every point's adapted model in OUTPUT_DIR/runs/"),
    gpu_id: int = GPU_ID_OPTION,
) -> None:
    """Try a grid of ELM rate x BLM rate x loss weighting with short MSLM runs on the config's
    base model and corpus, score each on paths.dev, and write the best as OUTPUT_DIR/mslm.cfg for
    `python -m spacy_msnr mslm`. Config overrides as `--paths.train X`. A rerun skips the points
    OUTPUT_DIR/search.json already holds."""
    from spacy.cli._util import parse_config_overrides

    from ..mslm.search import expand_grid, parse_names, parse_values, search
    from ..mslm.train import load_config

    overrides = parse_config_overrides(ctx.args)
    show_log(logging.getLogger("spacy_msnr.mslm"))
    with user_errors():
        points = expand_grid(parse_values(elm_rates, "--elm-rates"), parse_values(blm_rates, "--blm-rates"), parse_names(weighting_names))
        search(load_config(config_path, overrides), output, points, steps=steps, max_seconds=max_seconds, signal=signal,
               min_generic_share=min_generic_share, gpu_id=gpu_id, keep_models=keep_models, source=str(config_path))
