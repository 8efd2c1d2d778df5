"""Every function the package registers has its entry point in pyproject.toml, and every entry point
names a registered function: a config that names one resolves without importing the module first."""
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

import spacy_msnr

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
#: entry-point group -> the registry it fills (spaCy's registries live in thinc's namespace).
GROUPS = {
    "spacy_factories": "factories", "spacy_architectures": "architectures", "spacy_batchers": "batchers",
    "thinc_optimizers": "optimizers", "thinc_msnr_terms": "msnr_terms", "thinc_msnr_maskers": "msnr_maskers",
    "thinc_msnr_weightings": "msnr_weightings", "thinc_msnr_optimizers": "msnr_optimizers",
}


def entry_points():
    groups = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]
    assert set(groups) == set(GROUPS), "a new entry-point group needs its registry in GROUPS"
    return {(group, name): target for group, names in groups.items() for name, target in names.items()}


def registered():
    """(group, name) -> "module:function" of everything the package's modules register."""
    from spacy.util import registry

    for info in pkgutil.walk_packages(spacy_msnr.__path__, "spacy_msnr."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    found = {}
    for group, reg in GROUPS.items():
        table = getattr(registry, reg)
        for name in table.get_all():
            func = table.get(name)
            module = getattr(func, "__module__", "") or ""
            if module.startswith("spacy_msnr"):
                found[(group, name)] = f"{module}:{func.__name__}"
    return found


def test_registered_names_and_entry_points_agree():
    declared, actual = entry_points(), registered()
    assert sorted(set(actual) - set(declared)) == [], "registered without an entry point"
    assert sorted(set(declared) - set(actual)) == [], "entry point without a registered function"
    for key, target in declared.items():  # each entry point names the function that is registered
        assert target == actual[key], key
