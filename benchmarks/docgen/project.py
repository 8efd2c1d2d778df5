"""Tables of docs/project.md and ARCHITECTURE.md, read from the code they describe: the CLI, project.yml's vars, workflows and steps, config settings, pinned models."""
import json
import re
from typing import Any, Dict, Optional, Sequence

from .sources import result, Sources, SourceError
from .format import cell, note, source_link, table
from .blocks import block
from .workflow import run_machine


@block("cli")
def cli(src: Sources, arg: str, prefix: str) -> str:
    import typer

    from spacy_msnr.cli import app

    group = typer.main.get_command(app)
    rows = []
    for info in app.registered_commands:
        if info.hidden:
            continue
        command = group.commands[info.name]
        args = []
        for param in command.params:
            if param.param_type_name == "argument":
                name = param.name.upper() + ("..." if param.nargs == -1 else "")
                args.append(name if param.required else f"[{name}]")
        summary = " ".join((command.help or "").split("\n\n")[0].split())
        rows.append([f"`{info.name}`", f"`{' '.join(args)}`" if args else "", cell(summary)])
    return table(["command", "arguments", "what it does"], rows) + note(
        "`python -m spacy_msnr COMMAND --help` lists every option. Required outputs are positional (as spaCy's `OUTPUT_DIR`);",
        "optional extra outputs are `--output`/`-o`. A user's error prints `✘ message` without a traceback.",
    )


# project.yml ----------------------------------------------------------------------------------------
#: Meanings of the vars that project.yml gives no comment of their own (no figures here: those live in project.yml).
VAR_MEANINGS = {
    "dataset": "the BLURB NER set (`BC5CDR-IOB`, `BC5CDR-chem-IOB` or `BC5CDR-disease-IOB`: the `assets` step fetches its files); "
               "set `package_name` with it, or the wheel keeps the NCBI-disease name",
    "blurb_commit": "commit of `cambridgeltl/MTL-Bioinformatics-2016` the BLURB files are pinned to",
    "crossner_commit": "commit of `zliucr/CrossNER` the CrossNER files are pinned to",
    "pubmed_commit": "commit of `spyysalo/jnlpba` the PubMed abstracts are pinned to",
    "base_family": "model family of a locally built base (`base_model local`)",
    "base_max_steps": "pretraining steps of a locally built base",
    "base_max_seconds": "wall-clock budget of that pretraining",
    "mslm_lr": "peak learning rate of the MSLM adaptation",
    "train_steps": "when positive, a fixed number of transformer + `ner` updates instead of `train_epochs`",
    "train_max_seconds": "time cap of that training, in seconds (zero: none)",
    "learn_rate": "peak learning rate of transformer + `ner`",
    "gpu_id": "GPU for every step that trains or predicts (negative: the CPU)",
    "fewshot_domain": "CrossNER target domain of the `fewshot` workflow (`politics`, `science`, `ai`, …)",
    "fewshot_n_way": "entity types per episode",
    "fewshot_k_shot": "mentions per type in a support set",
    "fewshot_episodes": "episodes sampled",
    "fewshot_batch_size": "support sentences per update",
    "fewshot_query_limit": "test sentences scored per episode (a fixed seeded sample)",
    "fewshot_negative_rate": "share of the \"none\" instructions each episode update keeps (comment above `fewshot_lr`)",
    "fewshot_source_batch_size": "sentences per source-stage update",
    "fewshot_source_lr": "learning rate of the source stage",
    "fewshot_eval_base": "the model the episodes start from (`training/base_causal`: no source stage)",
    "fewshot_source_cnn_steps": "at most this many steps of spaCy's CNN `ner` on the CrossNER source corpus (`train-cnn-source`, the fair peer of the source stage)",
    "mslm_search_elm_rates": "ELM rates `mslm-search` tries (comma-separated)",
    "mslm_search_blm_rates": "BLM rates `mslm-search` tries",
    "mslm_search_weightings": "registered loss weightings `mslm-search` tries",
    "mslm_search_steps": "MSLM steps of each `mslm-search` grid point",
    "package_name": "the wheel is `en_<package_name>-<package_version>`",
    "package_version": "the wheel's version",
}


def _var_comments(src: Sources) -> Dict[str, str]:
    """Each var's comment: the comment lines directly above it in project.yml."""
    lines = src.text("project.yml").splitlines()
    start = lines.index("vars:")
    comments, pending = {}, []
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
        elif ":" in stripped:
            name = stripped.split(":", 1)[0]
            if pending:
                comments[name] = " ".join(pending)
            pending = []
        else:
            pending = []
    return comments


def _value(value: Any) -> str:
    return f'`"{value}"`' if isinstance(value, str) else f"`{json.dumps(value)}`"


@block("vars")
def project_vars(src: Sources, arg: str, prefix: str) -> str:
    variables = src.project()["vars"]
    comments = _var_comments(src)
    stale = sorted(set(VAR_MEANINGS) - set(variables))
    missing = sorted(v for v in variables if v not in comments and v not in VAR_MEANINGS)
    if stale or missing:
        raise SourceError(f"project.yml: vars without a meaning {missing}, meanings of vars it no longer has {stale} "
                          "(benchmarks/render_tables.py VAR_MEANINGS)")
    rows = [[f"`{name}`", _value(value), cell(comments.get(name) or VAR_MEANINGS[name])] for name, value in variables.items()]
    return table(["var", "default", "meaning (project.yml's comment above it, where it has one)"], rows) + note(
        "Override any of them after the project folder: `python -m spacy project run all . --vars.NAME VALUE`.",
    )


@block("workflows")
def workflows(src: Sources, arg: str, prefix: str) -> str:
    return "\n".join(f"- `{name}`: " + " → ".join(f"`{step}`" for step in steps) for name, steps in src.project()["workflows"].items())


def _paths(paths: Sequence[str]) -> str:
    return ", ".join(f"`{p}`" for p in paths) if paths else "–"


@block("steps")
def steps(src: Sources, arg: str, prefix: str) -> str:
    project = src.project()
    if arg not in project["workflows"]:
        raise SourceError(f"project.yml: no workflow {arg!r}")
    commands = {c["name"]: c for c in project["commands"]}
    rows = [[f"`{name}`", cell(commands[name].get("help", "")), _paths(commands[name].get("deps", [])), _paths(commands[name].get("outputs", []))]
            for name in project["workflows"][arg]]
    return table(["step", "what it does", "reads", "writes"], rows)


def _override(src: Sources, step: str, option: str) -> Optional[str]:
    """The value `step`'s script passes to `option`, its ${vars.X} replaced by the default (None: not passed)."""
    commands = {c["name"]: c for c in src.project()["commands"]}
    for line in commands[step]["script"]:
        match = re.search(rf"(?:^|\s){re.escape(option)} ('[^']*'|\S+)", line)
        if match:
            value = re.sub(r"\$\{vars\.(\w+)\}", lambda m: str(src.project()["vars"][m.group(1)]), match.group(1))
            return value.strip("'\"")
    return None


def read_config(src: Sources, rel: str) -> Dict[str, Any]:
    from thinc.api import Config

    return Config().from_str(src.text(rel), interpolate=False)


def _lookup(config: Dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for key in dotted.split("."):
        value = value[key]
    if isinstance(value, dict):  # a registered function: its name; an inline dict: itself
        return next((v for k, v in value.items() if k.startswith("@")), value)
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "–"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


#: settings tables: (setting, factory default key, config key, {workflow step: option that sets it}).
SETTINGS = {
    "mslm": ("configs/mslm.cfg", None, [
        ("joint tagging head λ", None, "model.ner_weight", {"mslm": "--model.ner_weight"}),
        ("adaptation steps", None, "training.max_steps", {"mslm": "--training.max_steps"}),
        ("peak learning rate", None, "training.optimizer.learn_rate", {"mslm": "--training.optimizer.learn_rate"}),
        ("wordpieces per batch", None, "training.batch_size", {"mslm": "--training.batch_size"}),
        ("ELM rate (share of a sentence's DS-terms masked)", None, "model.masker.elm_rate", {"mslm": "--model.masker.elm_rate"}),
        ("BLM rate (other wordpieces)", None, "model.masker.blm_rate", {"mslm": "--model.masker.blm_rate"}),
        ("masker", None, "model.masker", {}),
        ("weighting", None, "model.weighting", {}),
        ("DS-terms", None, "terms", {}),
    ]),
    "fewshot": ("configs/fewshot.cfg", "fewshot_ner", [
        ("`negative_rate`", "negative_rate", "components.fewshot_ner.negative_rate",
         {"fewshot-source": "--components.fewshot_ner.negative_rate", "fewshot-eval": "--components.fewshot_ner.negative_rate"}),
        ("learning rate", None, "training.optimizer.learn_rate",
         {"fewshot-source": "--training.optimizer.learn_rate", "fewshot-eval": "--training.optimizer.learn_rate"}),
        ("updates (`fewshot-eval`: per episode)", None, "training.max_steps", {"fewshot-source": "--training.max_steps", "fewshot-eval": "--steps"}),
        ("sentences per update", None, "training.batcher.size", {"fewshot-source": "--training.batcher.size", "fewshot-eval": "--batch-size"}),
        ("`max_new_tokens`", "max_new_tokens", "components.fewshot_ner.max_new_tokens",
         {"fewshot-source": "--components.fewshot_ner.max_new_tokens", "fewshot-eval": "--components.fewshot_ner.max_new_tokens"}),
        ("`train_batch_size`", "train_batch_size", "components.fewshot_ner.train_batch_size", {}),
        ("`prompt_format`", "prompt_format", "components.fewshot_ner.prompt_format", {}),
        ("FGM (`model.adversarial`)", None, "components.fewshot_ner.model.adversarial",
         {"fewshot-source": "--components.fewshot_ner.model.adversarial", "fewshot-eval": "--components.fewshot_ner.model.adversarial"}),
        ("base model's dtype (`model.dtype`)", None, "components.fewshot_ner.model.dtype",
         {"fewshot-source": "--components.fewshot_ner.model.dtype", "fewshot-eval": "--components.fewshot_ner.model.dtype"}),
        ("base model", None, "paths.base_model", {"fewshot-source": "--paths.base_model", "fewshot-eval": "--paths.base_model"}),
    ]),
}


@block("settings")
def settings(src: Sources, arg: str, prefix: str) -> str:
    rel, factory, rows_spec = SETTINGS[arg]
    config = read_config(src, rel)
    steps = sorted({step for *_, options in rows_spec for step in options}, key=[c["name"] for c in src.project()["commands"]].index)
    defaults: Dict[str, Any] = {}
    if factory:
        import spacy_msnr.fewshot.component  # noqa: F401  (registers the factory)
        from spacy.language import Language

        defaults = Language.get_factory_meta(factory).default_config
    header = ["setting"] + ([f"`{factory}` factory default"] if factory else []) + [f"`{rel}`"] + [f"workflow step `{s}`" for s in steps]
    rows = []
    for label, factory_key, key, options in rows_spec:
        row = [label] + ([_shown(defaults.get(factory_key)) if factory_key else "–"] if factory else [])
        row.append(_shown(_lookup(config, key)))
        for step in steps:
            value = _override(src, step, options[step]) if step in options else None
            row.append(f"`{value}`" if value is not None else "(config)")
        rows.append(row)
    sources = ("the factory, " if factory else "") + f"`{rel}` and project.yml's scripts"
    return table(header, rows) + note(
        f"Read from {sources} (their `${{vars.…}}` at their defaults); (config): the step does not override the config's value.",
    )


@block("workflow-time")
def workflow_time(src: Sources, arg: str, prefix: str) -> str:
    rows = []
    for workflow in ("all", "fewshot"):
        name = f"workflow_{workflow}.json"
        run = src.json(result(f"{name}"))
        rows.append([f"`{workflow}`", f"{run['total_seconds'] / 60:.1f} min", f"{run['peak_rss_mib'] / 1024:.1f} GiB",
                     run_machine(run), run["date"], source_link(name, prefix)])
    return table(["workflow", "wall", "peak RSS", "machine (the 24 GiB CPU workplace machine)", "date", "source"], rows) + note(
        "The latest recorded run of each with the defaults of its date (`benchmarks/workflow_run.py`, a fresh copy of the",
        "project, the base models already fetched). One run each.",
    )


@block("models")
def models(src: Sources, arg: str, prefix: str) -> str:
    from spacy_msnr.base.pypi import PYPI_MODELS

    variables = src.project()["vars"]
    rows = []
    for spec in PYPI_MODELS.values():
        users = [f"`vars.{name}`" for name, value in variables.items() if value == f"assets/models/{spec.name}"]
        rows.append([f"`{spec.name}`", f"`{spec.package}=={spec.version}` (sha256 `{spec.sha256[:8]}…{spec.sha256[-5:]}`)",
                     cell(spec.model), spec.license, ", ".join(users) or "–"])
    return table(["name", "wheel (pinned)", "model", "licence", "default of"], rows) + note(
        "From `spacy_msnr.base.pypi.PYPI_MODELS`.",
    )




@block("versions")
def versions(src: Sources, arg: str, prefix: str) -> str:
    """The Python and dependency ranges of pyproject.toml, and its extras."""
    import tomllib

    project = tomllib.loads(src.text("pyproject.toml"))["project"]
    split = lambda spec: re.match(r"([A-Za-z0-9_.\[\]-]+)\s*(.*)", spec).groups()  # noqa: E731
    rows = [["Python", f"`{project['requires-python']}`", "–"]]
    rows += [[f"`{name}`", f"`{rng}`" if rng else "any", "–"] for name, rng in map(split, project["dependencies"])]
    rows += [[f"`{name}`", f"`{rng}`" if rng else "any", f"`[{extra}]`"]
             for extra, specs in project.get("optional-dependencies", {}).items() for name, rng in map(split, specs)]
    return table(["package", "versions", "extra"], rows) + note(
        "From pyproject.toml. CI (`.ci/run`) installs `torch==2.13.0` first, then what pip resolves within these ranges.",
    )
