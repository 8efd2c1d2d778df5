"""The command line: each module adds one command to the typer app."""
from . import assets, base, convert, visualize  # noqa: F401  (register the commands)
from ._app import app

__all__ = ["app"]
