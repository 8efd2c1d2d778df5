"""Render the generated tables of README.md, docs/*.md and ARCHITECTURE.md from their sources.

Every table of figures in the documentation sits between `<!-- table:NAME -->` and
`<!-- /table:NAME -->`. This script renders each NAME from the benchmarks' committed outputs in
`benchmarks/results/`, from `project.yml` and from the package itself (pinned models, factory
defaults, commands), and writes it in place; the renderers are in `benchmarks/docgen/`, one module a
page. Nothing between the markers is typed by hand; edit the source and re-run.

    python benchmarks/render_tables.py            # rewrite every generated block
    python benchmarks/render_tables.py --check    # exit 1, naming file and block, if one differs
    python benchmarks/render_tables.py --root DIR # another copy of the repository

A source that no longer holds what a block reads (a renamed file, a reworded results note) stops
the script with the file and the pattern it looked for.
"""
import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/docgen, when loaded by path

from docgen import RENDERERS, Sources, SourceError, process, render  # noqa: E402
from docgen.sources import ROOT  # noqa: E402

__all__ = ["RENDERERS", "Sources", "SourceError", "process", "render", "main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only compare; exit 1 if a committed block differs")
    parser.add_argument("--root", type=Path, default=ROOT, help="Repository root (default: this script's)")
    args = parser.parse_args(argv)
    try:
        problems = process(args.root.resolve(), args.check)
    except SourceError as err:
        print(f"✘ {err}", file=sys.stderr)
        return 1
    if args.check:
        for problem in problems:
            print(f"✘ {problem}", file=sys.stderr)
        if problems:
            print("Run `python benchmarks/render_tables.py` and commit the result.", file=sys.stderr)
            return 1
        print("✔ every generated block is up to date")
        return 0
    unclosed = [p for p in problems if "no closing" in p]
    for problem in unclosed:
        print(f"✘ {problem}", file=sys.stderr)
    changed = len(problems) - len(unclosed)
    print(f"rendered; {changed} block(s) rewritten")
    return 1 if unclosed else 0


if __name__ == "__main__":
    sys.exit(main())
