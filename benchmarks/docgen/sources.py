"""Reading the sources of the generated tables: results files, project.yml, configs."""
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional
from functools import lru_cache

import srsly

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = "benchmarks/results"


class SourceError(RuntimeError):
    """A source lacks what a block reads from it."""




class Record(dict):
    """A JSON object of a source file: a missing key names the file."""

    def __init__(self, rel: str, items: Dict[str, Any]):
        super().__init__(items)
        self.rel = rel

    def __missing__(self, key: str) -> Any:
        raise SourceError(f"{self.rel}: no {key!r} (in an object with {', '.join(map(repr, self)) or 'no keys'})")


# -- reading sources ------------------------------------------------------------------------------
class Sources:
    """The repository's files, read once."""

    def __init__(self, root: Path):
        self.root = root

    @lru_cache(maxsize=None)
    def text(self, rel: str) -> str:
        path = self.root / rel
        if not path.exists():
            raise SourceError(f"{rel}: not found")
        return path.read_text(encoding="utf8")

    @lru_cache(maxsize=None)
    def json(self, rel: str) -> Any:
        """The JSON file `rel`; a key it lacks raises SourceError naming the file and the key."""
        return json.loads(self.text(rel), object_hook=lambda obj: Record(rel, obj))

    @lru_cache(maxsize=None)
    def project(self) -> Dict[str, Any]:
        return srsly.yaml_loads(self.text("project.yml"))

    def result(self, name: str) -> str:
        return self.text(f"{RESULTS}/{name}")

    def find(self, rel: str, pattern: str, group: int = 1, flags: int = 0, text: Optional[str] = None, flat: bool = False) -> str:
        """Group `group` of the first match of `pattern` in `rel` (or in `text`, a part of it), its
        whitespace runs collapsed; `flat`: match the text with its line breaks as spaces."""
        text = self.text(rel) if text is None else text
        match = re.search(pattern, " ".join(text.split()) if flat else text, flags)
        if not match:
            raise SourceError(f"{rel}: no match for {pattern!r}")
        return " ".join(match.group(group).split())


def md_tables(text: str) -> List[List[List[str]]]:
    """Every Markdown table of `text` as rows of cells (header first, the --- row left out)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def table_after(src: Sources, rel: str, heading: str) -> List[List[str]]:
    """The first Markdown table after the first line that starts with `heading`."""
    text = src.text(rel)
    at = text.find(heading)
    if at < 0:
        raise SourceError(f"{rel}: no {heading!r}")
    tables = md_tables(text[at:])
    if not tables:
        raise SourceError(f"{rel}: no table after {heading!r}")
    return tables[0]


def fixed_width_block(src: Sources, rel: str, first_word: str = "adaptation") -> List[List[str]]:
    """Rows of the first fixed-width table (columns 2+ spaces apart, a ---- rule) starting with `first_word`."""
    for block in re.findall(r"```\n(.*?)```", src.text(rel), re.S):
        lines = [line.rstrip() for line in block.strip("\n").splitlines()]
        if lines and lines[0].startswith(first_word):
            rows = []
            for line in lines:
                if not line.strip():
                    break
                if not set(line.replace(" ", "")) <= {"-"}:
                    rows.append(re.split(r"\s{2,}", line.strip()))
            return rows
    raise SourceError(f"{rel}: no fixed-width table starting with {first_word!r}")


