"""Reading the sources of the generated tables: results files (JSON), project.yml, configs."""
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict

import srsly

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = "benchmarks/results"


class SourceError(RuntimeError):
    """A source lacks what a block reads from it."""


#: The results folder of each topic, by the file name's prefix (first match wins).
TOPICS = (("precision_", "precision"), ("fewshot_bf16", "precision"), ("fewshot_", "fewshot"), ("mslm_", "mslm"),
          ("annotate_", "annotate"), ("cli_", "cli"), ("workflow_", "workflows"), ("all_workflow", "workflows"), ("ner_", "workflows"))


def result(name: str) -> str:
    """The path of the results file `name` (relative to the root): benchmarks/results/<topic>/<name>."""
    folder = next((topic for prefix, topic in TOPICS if name.startswith(prefix)), None)
    if folder is None:
        raise SourceError(f"{RESULTS}/{name}: no topic folder for this name (docgen/sources.py TOPICS)")
    return f"{RESULTS}/{folder}/{name}"


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
