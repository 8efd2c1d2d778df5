"""Every ```ini block of README.md is a valid piece of a thinc config for this package."""
import re
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest
from spacy.util import registry
from thinc.api import Config

import spacy_msnr  # noqa: F401  (registers the package's functions)

README = Path(__file__).resolve().parent.parent / "README.md"


def ini_blocks(text: str) -> List[str]:
    return re.findall(r"^```ini\n(.*?)^```", text, flags=re.S | re.M)


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


def test_readme_has_ini_blocks():
    assert ini_blocks(README.read_text(encoding="utf8"))


@pytest.mark.parametrize("index", range(len(ini_blocks(README.read_text(encoding="utf8")))))
def test_readme_ini_block_parses_without_comments_in_values(index):
    block = ini_blocks(README.read_text(encoding="utf8"))[index]
    config = as_config(block)
    assert config, f"README ini block {index} parsed to nothing"
    # thinc configs have no inline comments: "x = 'a'  # note" makes the comment part of a value
    for path, value in strings(config):
        assert "#" not in value, f"README ini block {index}: {path} = {value!r} holds a '#' comment"
    # every registered function it names exists and takes the arguments it is given
    registry.fill(config, validate=True)


def test_an_inline_comment_ends_up_in_the_value():
    """Why the check above is needed: the parser keeps an inline comment as part of the value."""
    assert dict(strings(as_config('[a.b]\nname = "x"  # a comment\n'))) == {"a.b.name": '"x"  # a comment'}
