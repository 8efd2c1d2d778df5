"""Every command the README, ARCHITECTURE.md and docs/ show parses: its program, subcommand,
flags, positional arguments, config overrides and project steps exist. A --help-level check:
nothing is run but the benchmark scripts' `--help`."""
import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest
import srsly
import typer
from thinc.api import Config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")"}
#: Code blocks in these languages (or none) hold commands, a line each.
SHELL = ("bash", "sh", "shell", "console", "")
#: Inline code spans that start with a command this test knows.
INLINE = re.compile(r"`((?:[A-Z_]+=\S+ )*(?:python -m |python benchmarks/|spacy-msnr )[^`]+)`")


def shown(page: Path) -> Iterator[Tuple[str, str]]:
    """(where, command line) of every command on `page`: code-block lines and inline spans."""
    text = page.read_text(encoding="utf8")
    fence: Optional[str] = None  # the language of the open code block
    pending = ""
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            continue
        if fence in SHELL:
            pending += line[:-1] + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                if pending.strip() and not pending.lstrip().startswith("#"):
                    yield f"{page.name}:{number}", pending
                pending = ""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for span in INLINE.finditer(" ".join(prose.split("\n"))):
        yield f"{page.name} (`{span.group(1)[:40]}…`)", span.group(1) + INLINE_MARK


#: Appended to an inline span: a span that names a command without arguments is a mention of it.
INLINE_MARK = " #inline"


def commands(line: str) -> List[List[str]]:
    """`line` split into commands at &&, ;, | and the like, each without its VAR=value prefix."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    out: List[List[str]] = [[]]
    try:
        tokens = list(lexer)
    except ValueError as err:  # an unbalanced quote: the page's problem, named
        raise AssertionError(f"{line!r}: {err}") from None
    for token in tokens:
        if token in SEPARATORS:
            out.append([])
        else:
            out[-1].append(token)
    return [[t for t in cmd if not re.fullmatch(r"[A-Z_]+=\S*", t) or cmd.index(t) > 0] for cmd in out if cmd]


def words(args: List[str]) -> List[str]:
    """Usage-line brackets and ellipses taken off: `[--seeds 0 1 2]` reads as `--seeds 0 1 2`."""
    return [w.strip("[]") for w in args if w.strip("[]") not in ("", "...", "…")]


@lru_cache(maxsize=None)
def msnr_commands():
    from spacy_msnr.cli import app

    return typer.main.get_command(app).commands


@lru_cache(maxsize=None)
def project() -> Dict:
    return srsly.read_yaml(ROOT / "project.yml")


@lru_cache(maxsize=None)
def config(rel: str) -> Optional[Config]:
    path = ROOT / rel
    return Config().from_disk(path, interpolate=False) if path.suffix == ".cfg" and path.exists() else None


def check_override(where: str, name: str, cfg: Optional[Config]) -> None:
    """`--section.key` must name a key of `cfg` (when the config is one of the repository's)."""
    if cfg is None:
        return
    node = cfg
    for part in name[2:].split("."):
        assert isinstance(node, dict) and part in node, f"{where}: {name} is not a setting of the config"
        node = node[part]


def check_click(where: str, command, args: List[str], overrides: bool) -> None:
    """Flags known to the click `command`, positional arguments within its arity, and (where the
    command takes config overrides) each `--a.b` a key of its config."""
    options = {}
    for param in command.params:
        if param.param_type_name == "option":
            for opt in [*param.opts, *param.secondary_opts]:
                options[opt] = 0 if param.is_flag or param.count else param.nargs
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    positional, i = [], 0
    while i < len(args):
        word = args[i]
        name = word.split("=", 1)[0]
        if word.startswith("-") and len(word) > 1 and not re.fullmatch(r"-\d[\d.]*", word):
            if name in options:
                i += 1 + (options[name] if "=" not in word else 0)
                continue
            assert overrides and name.startswith("--") and "." in name, f"{where}: {command.name} has no option {name}"
            check_override(where, name, config(positional[0]) if positional else None)
            i += 1 if "=" in word else 2
            continue
        positional.append(word)
        i += 1
    required = [a for a in arguments if a.required]
    assert len(positional) >= len(required), f"{where}: {command.name} needs {[a.name for a in required]}, got {positional}"
    if not any(a.nargs == -1 for a in arguments):
        assert len(positional) <= len(arguments), f"{where}: {command.name} takes {len(arguments)} arguments, got {positional}"


def check_msnr(where: str, args: List[str], mention: bool = False) -> None:
    if not args or args[0] in ("--help", "-h") or args[0].isupper():  # `COMMAND --help`: a placeholder
        return
    name, rest = args[0], words(args[1:])
    assert name in msnr_commands(), f"{where}: `spacy_msnr {name}` is not a command"
    command = msnr_commands()[name]
    if mention and not rest:  # `python -m spacy_msnr annotate` named in a sentence
        return
    check_click(where, command, rest, overrides=bool((command.context_settings or {}).get("allow_extra_args")))


def check_project_run(where: str, args: List[str]) -> None:
    proj = project()
    steps = {c["name"] for c in proj["commands"]} | set(proj.get("workflows", {}))
    assert args, f"{where}: `spacy project run` without a step"
    assert args[0] in steps or args[0].isupper(), f"{where}: project.yml has no step or workflow {args[0]!r}"
    for word in args[1:]:
        if word.startswith("--vars."):
            var = word[len("--vars."):].split("=", 1)[0]
            assert var in proj["vars"] or var.isupper(), f"{where}: project.yml has no var {var!r}"


def check_spacy(where: str, args: List[str]) -> None:
    if not args or args[0].startswith("-"):
        return
    if args[0] == "project" and args[1:2] == ["run"]:
        check_project_run(where, words(args[2:]))
    elif args[0] in ("train", "pretrain"):
        rest = words(args[1:])
        cfg = config(rest[0]) if rest else None
        i = 1
        while i < len(rest):
            if rest[i].startswith("--") and "." in rest[i]:
                check_override(where, rest[i].split("=", 1)[0], cfg)
            i += 1


@lru_cache(maxsize=None)
def script_options(script: str) -> Tuple[str, ...]:
    """The options `python benchmarks/SCRIPT --help` lists."""
    result = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, cwd=ROOT,
                            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(Path.home())})
    assert result.returncode == 0, f"{script} --help failed: {result.stderr[-500:]}"
    return tuple(sorted(set(re.findall(r"(?<![\w-])(--[a-z][\w.-]*)", result.stdout))))


def check_script(where: str, script: str, args: List[str]) -> None:
    assert (ROOT / script).exists(), f"{where}: no {script}"
    known = script_options(script)
    for word in words(args):
        name = word.split("=", 1)[0]
        if name.startswith("--") and not (name.startswith("--vars.") and script.endswith("workflow_run.py")):
            assert name in known, f"{where}: {script} has no option {name} (it has {', '.join(known)})"
        elif name.startswith("--vars."):  # workflow_run.py passes them to `spacy project run`
            check_project_run(where, ["all", name])


def check(where: str, cmd: List[str], mention: bool = False) -> bool:
    """Check one command; False when it is not one this test knows (pip, bash, ...). `mention`: an
    inline span, where a command without arguments is only named."""
    if cmd[:1] == ["spacy-msnr"]:
        check_msnr(where, cmd[1:], mention)
    elif cmd[:3] == ["python", "-m", "spacy_msnr"]:
        check_msnr(where, cmd[3:], mention)
    elif cmd[:3] == ["python", "-m", "spacy"]:
        check_spacy(where, cmd[3:])
    elif len(cmd) > 1 and cmd[0] == "python" and cmd[1].startswith("benchmarks/") and cmd[1].endswith(".py"):
        check_script(where, cmd[1], cmd[2:])
    else:
        return False
    return True


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_command_shown_parses(page):
    checked = 0
    for where, line in shown(page):
        mention = line.endswith(INLINE_MARK)
        for cmd in commands(line.removesuffix(INLINE_MARK)):
            checked += check(where, cmd, mention)
    if page.name in ("README.md", "project.md", "benchmarks.md", "mslm.md", "fewshot.md", "annotate.md"):
        assert checked, f"{page.name}: no command found (the extraction broke)"


# -- the checker itself catches what it should ---------------------------------------------------------
@pytest.mark.parametrize("line,problem", [
    ("python -m spacy_msnr annotaet en_ncbi_ner in.jsonl out/", "not a command"),
    ("python -m spacy_msnr annotate en_ncbi_ner in.jsonl out/ --engin ray", "has no option --engin"),
    ("python -m spacy_msnr annotate en_ncbi_ner", "needs"),
    ("python -m spacy_msnr mslm configs/mslm.cfg out --training.max_stepz 3", "not a setting"),
    ("python -m spacy project run al .", "no step or workflow"),
    ("python -m spacy project run all . --vars.datset X", "no var"),
    ("python -m spacy train configs/fewshot.cfg --paths.trian x", "not a setting"),
])
def test_a_wrong_command_is_caught(line, problem):
    with pytest.raises(AssertionError, match=problem):
        for cmd in commands(line):
            check("example", cmd)


def test_right_commands_pass_and_separators_split():
    line = ("OMP_NUM_THREADS=1 python -m spacy_msnr mslm configs/mslm.cfg training/mslm --paths.train corpus/train.spacy "
            "--training.max_steps 5 && python -m spacy project run all . --vars.precision fp32  # a comment")
    cmds = commands(line)
    assert cmds == [["python", "-m", "spacy_msnr", "mslm", "configs/mslm.cfg", "training/mslm", "--paths.train",
                     "corpus/train.spacy", "--training.max_steps", "5"],
                    ["python", "-m", "spacy", "project", "run", "all", ".", "--vars.precision", "fp32"]]
    assert all(check("example", cmd) for cmd in cmds)
    assert not check("example", ["python", "-m", "pip", "install", "torch"])
