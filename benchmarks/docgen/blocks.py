"""The block registry and the driver: find every `<!-- table:NAME -->` block and render it."""
import re
from pathlib import Path
from typing import Callable, Dict, List

from .sources import Sources, SourceError

#: The files whose blocks are rendered (globs, relative to the root).
TARGETS = ("README.md", "ARCHITECTURE.md", "docs/*.md")
BLOCK = re.compile(r"<!-- table:(?P<name>[\w:.-]+) -->\n(?P<body>.*?)<!-- /table:(?P=name) -->", re.S)
OPENING = re.compile(r"<!-- table:([\w:.-]+) -->")


# -- the blocks -------------------------------------------------------------------------------------
Renderer = Callable[[Sources, str, str], str]
RENDERERS: Dict[str, Renderer] = {}


def block(name: str) -> Callable[[Renderer], Renderer]:
    def register(func: Renderer) -> Renderer:
        RENDERERS[name] = func
        return func

    return register


def render(src: Sources, name: str, rel_file: str) -> str:
    """The body of block `name` in the file `rel_file` (links are relative to that file)."""
    base, _, arg = name.partition(":")
    if base not in RENDERERS:
        raise SourceError(f"{rel_file}: unknown generated block {name!r} (known: {', '.join(sorted(RENDERERS))})")
    prefix = "../" * rel_file.count("/")
    return RENDERERS[base](src, arg, prefix).rstrip("\n") + "\n"


# -- driver -----------------------------------------------------------------------------------------
def target_files(root: Path) -> List[Path]:
    files: List[Path] = []
    for pattern in TARGETS:
        files += sorted(root.glob(pattern))
    return files


def process(root: Path, check: bool) -> List[str]:
    """Render every block under `root`; write them (or, with `check`, only compare). The problems found."""
    src = Sources(root)
    problems = []
    for path in target_files(root):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf8")
        closed = {m.group("name") for m in BLOCK.finditer(text)}
        for name in OPENING.findall(text):
            if name not in closed:
                problems.append(f"{rel}: block '{name}' has no closing <!-- /table:{name} -->")

        def replace(match: "re.Match[str]") -> str:
            body = render(src, match.group("name"), rel)
            if body != match.group("body"):
                problems.append(f"{rel}: block '{match.group('name')}' differs from what benchmarks/render_tables.py renders")
            return f"<!-- table:{match.group('name')} -->\n{body}<!-- /table:{match.group('name')} -->"

        new = BLOCK.sub(replace, text)
        if not check and new != text:
            path.write_text(new, encoding="utf8")
    return problems
