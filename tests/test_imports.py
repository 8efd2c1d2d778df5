"""A bare install works: no module needs an optional extra at load time, every command's --help
runs without one, a command that needs an extra names it, and every package a module imports
at load time is a declared dependency."""
import ast
import importlib.util
import json
import pkgutil
import subprocess
import sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

import pytest

import spacy_msnr
from spacy_msnr.cli import app

ROOT = Path(__file__).resolve().parent.parent
#: The optional extras and the top-level modules each brings.
EXTRAS = {"ray": ["ray"]}
MODULES = sorted(m.name for m in pkgutil.walk_packages(spacy_msnr.__path__, "spacy_msnr."))
COMMANDS = sorted(c.name for c in app.registered_commands if not c.hidden)

#: Runs in a fresh interpreter: makes the extra's modules unimportable, imports every module,
#: runs every command's --help, and prints what happened as JSON.
PROBE = r"""
import importlib, importlib.util, json, sys
from importlib.abc import MetaPathFinder

BLOCKED = set(sys.argv[1].split(","))

class Block(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, Block())
_find_spec = importlib.util.find_spec
# what importlib.util.find_spec says of an absent package (libraries probe with it)
importlib.util.find_spec = lambda name, package=None: None if name.split(".")[0] in BLOCKED else _find_spec(name, package)
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]
out = {"import_errors": {}, "help_failures": {}}
for module in json.loads(sys.argv[2]):
    try:
        importlib.import_module(module)
    except Exception as err:
        out["import_errors"][module] = repr(err)
from typer.testing import CliRunner
from spacy_msnr.cli import app
for command in json.loads(sys.argv[3]):
    result = CliRunner().invoke(app, [command, "--help"])
    if result.exit_code != 0:
        out["help_failures"][command] = result.output[-500:]
result = CliRunner().invoke(app, ["annotate", "no_such_pipeline", "in.jsonl", "out", "--engine", "ray"])
out["annotate_ray"] = {"exit_code": result.exit_code, "output": result.output, "traceback": result.exc_info is not None and not isinstance(result.exception, SystemExit)}
print("PROBE" + json.dumps(out))
"""


def probe(blocked):
    proc = subprocess.run([sys.executable, "-c", PROBE, ",".join(blocked), json.dumps(MODULES), json.dumps(COMMANDS)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.split("PROBE", 1)[1])


def test_every_module_and_command_is_found():
    assert "spacy_msnr.annotate.ray_engine" in MODULES and len(MODULES) > 40
    assert {"annotate", "mslm", "init-base", "fewshot-eval", "fetch-model"} <= set(COMMANDS)


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_modules_and_help_work_without_the_extra(extra):
    out = probe(EXTRAS[extra])
    assert out["import_errors"] == {}
    assert out["help_failures"] == {}
    ray = out["annotate_ray"]
    if extra == "ray":  # the one command that needs it fails with a message naming it, no traceback
        assert ray["exit_code"] == 1 and 'spacy-msnr[ray]' in ray["output"] and not ray["traceback"], ray


def test_the_probe_would_see_a_missing_core_dependency():
    """The blocker works: with pyarrow (core) blocked, the annotate writer fails to import."""
    out = probe(["pyarrow"])
    assert "spacy_msnr.annotate.writer" in out["import_errors"]


def _top_level_imports(path: Path):
    """Modules imported when `path` is imported (module level, not inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf8"))
    for node in tree.body:
        nodes = [node]
        if isinstance(node, (ast.If, ast.Try)):  # e.g. TYPE_CHECKING or try/except ImportError blocks
            nodes = list(ast.walk(node))
        for sub in nodes:
            if isinstance(sub, ast.Import):
                yield from (alias.name.split(".")[0] for alias in sub.names)
            elif isinstance(sub, ast.ImportFrom) and sub.level == 0 and sub.module:
                yield sub.module.split(".")[0]


def test_every_load_time_import_is_declared():
    declared = {req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip().lower()
                for req in requires("spacy-msnr") if "extra ==" not in req}
    providers = packages_distributions()
    undeclared = {}
    for module_path in (ROOT / "spacy_msnr").rglob("*.py"):
        for name in _top_level_imports(module_path):
            if name == "spacy_msnr" or name in sys.stdlib_module_names:
                continue
            dists = {d.lower().replace("_", "-") for d in providers.get(name, [])}
            if not dists & declared:
                undeclared.setdefault(name, []).append(str(module_path.relative_to(ROOT)))
    assert undeclared == {}, f"imported at load time but not in pyproject.toml's dependencies: {undeclared}"


def test_help_imports_neither_transformers_nor_peft():
    """`--help` stays about as fast as `spacy --help` (benchmarks/cli_startup.py): the heavy
    libraries load only inside the command that runs."""
    code = ("import runpy, sys\nsys.argv = ['spacy_msnr', '--help']\ntry:\n    runpy.run_module('spacy_msnr', run_name='__main__')\n"
            "except SystemExit:\n    pass\nprint('LOADED', sorted(m for m in ('transformers', 'peft', 'ray', 'matplotlib', 'pyarrow') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Commands:" in proc.stdout and "mslm" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "LOADED []"
