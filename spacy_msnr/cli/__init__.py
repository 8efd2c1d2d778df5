"""The command line: each module adds one command to the typer app."""
from . import annotate, assets, compare, convert, fetch_model, fewshot_episodes, fewshot_eval, fewshot_merge, init_base, model_card, mslm, mslm_search, review_export, review_import, train_budget, visualize  # noqa: F401  (register the commands)
from . import calibrate  # noqa: F401  (register the command)
from ._app import app

__all__ = ["app"]
