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
COMPUTE = re.compile(r"spacy (train|evaluate)\b|spacy_msnr (base|pretrain|fewshot-eval|annotate)\b")
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
