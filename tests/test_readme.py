"""Every ```ini block of README.md and docs/*.md is a valid piece of a thinc config for this package."""
import re
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
from spacy.util import registry
from thinc.api import Config

import spacy_msnr  # noqa: F401  (registers the package's functions)

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def ini_blocks(text: str) -> List[str]:
    return re.findall(r"^```ini\n(.*?)^```", text, flags=re.S | re.M)


def all_ini_blocks() -> List[Tuple[str, str]]:
    """(page, block) of every ```ini block of the README and the docs."""
    return [(page.relative_to(ROOT).as_posix(), block) for page in PAGES for block in ini_blocks(page.read_text(encoding="utf8"))]


def as_config(block: str) -> Config:
    """Parse a README snippet; it may be a fragment, so parent sections it leaves out are added."""
    sections = re.findall(r"^\[([^\]]+)\]", block, flags=re.M)
    parents = {".".join(name.split(".")[:i]) for name in sections for i in range(1, name.count(".") + 1)}
    missing = sorted(parents - set(sections), key=lambda name: name.count("."))
    return Config().from_str("".join(f"[{name}]\n" for name in missing) + block, interpolate=False)


def strings(value: Any, path: str = "") -> Iterator[Tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from strings(item, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def test_docs_have_ini_blocks():
    assert all_ini_blocks()


@pytest.mark.parametrize("index", range(len(all_ini_blocks())))
def test_ini_block_parses_without_comments_in_values(index):
    page, block = all_ini_blocks()[index]
    config = as_config(block)
    assert config, f"{page}: ini block parsed to nothing"
    # thinc configs have no inline comments: "x = 'a'  # note" makes the comment part of a value
    for path, value in strings(config):
        assert "#" not in value, f"{page}: ini block: {path} = {value!r} holds a '#' comment"
    # every registered function it names exists and takes the arguments it is given
    registry.fill(config, validate=True)


def test_an_inline_comment_ends_up_in_the_value():
    """Why the check above is needed: the parser keeps an inline comment as part of the value."""
    assert dict(strings(as_config('[a.b]\nname = "x"  # a comment\n'))) == {"a.b.name": '"x"  # a comment'}
