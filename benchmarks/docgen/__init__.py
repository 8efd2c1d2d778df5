"""Generate the tables of README.md, docs/*.md and ARCHITECTURE.md (run `benchmarks/render_tables.py`).

One module a page: `readme`, `workflow` (docs/benchmarks.md's workflow and precision tables), `mslm`,
`fewshot`, `annotate`, `project`; `sources`, `format` and `blocks` are what they share.
"""
from .blocks import RENDERERS, process, render
from .sources import Sources, SourceError
from . import annotate, fewshot, mslm, project, readme, workflow  # noqa: F401  (each registers its blocks)

__all__ = ["RENDERERS", "Sources", "SourceError", "process", "render"]
