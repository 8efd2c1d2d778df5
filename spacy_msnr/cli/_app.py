"""The typer app that every command module adds itself to, and what the commands share.

Command modules import only typer, wasabi and the standard library at load time: torch,
transformers and peft are imported inside the command that needs them, so `--help` stays fast.
"""
import functools
import logging
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import typer
from wasabi import msg

app = typer.Typer(
    name="spacy-msnr",
    help="Mask-specific LM adaptation (MSLM) and few-shot NER for spaCy pipelines.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # click wraps docstring paragraphs (rich would keep their line breaks)
)

#: Context settings for commands that take spaCy-style config overrides (--section.key value).
OVERRIDES_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}

#: The errors a user can cause (a bad path, a malformed file, a missing extra): shown by
#: `msg.fail` without a traceback; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, ImportError, KeyError, OSError)

GPU_ID_OPTION = typer.Option(-1, "--gpu-id", "-g", help="GPU id, or -1 for the CPU")


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user's error into `msg.fail` (exit code 1, no traceback)."""
    try:
        yield
    except USER_ERRORS as err:
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        msg.fail(text or type(err).__name__, exits=1)


class _MessageHandler(logging.Handler):
    """Log records of the library printed as the command's own plain messages."""

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno >= logging.WARNING:
            msg.warn(text)
        else:
            msg.text(text)


def show_log(logger: logging.Logger) -> None:
    """Print a library logger's INFO records while the running command lasts: the handler and the
    level are taken back when the command's context closes, so nothing prints after it."""
    import click

    if any(isinstance(h, _MessageHandler) for h in logger.handlers):
        return
    handler, level = _MessageHandler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    context = click.get_current_context(silent=True)
    if context is not None:  # a command called as a plain function keeps the handler
        context.call_on_close(restore)


def use_gpu(gpu_id: int) -> None:
    """Select GPU `gpu_id` for spaCy/thinc and torch (nothing for -1)."""
    if gpu_id >= 0:
        from spacy.cli._util import setup_gpu

        setup_gpu(gpu_id)


def deprecated_alias(old: str, new: str, command: Callable, note: Optional[str] = None, **settings) -> None:
    """Register `command` also as the hidden command `old`, which warns that it is now `new`."""

    @functools.wraps(command)
    def alias(*args, **kwargs):
        msg.warn(f"`{old}` is deprecated: use `python -m spacy_msnr {new}`" + (f" ({note})" if note else ""))
        return command(*args, **kwargs)

    app.command(old, hidden=True, **settings)(alias)
