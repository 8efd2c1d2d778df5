"""The README and docs/: generated tables up to date, links that resolve, commands that exist,
the README's commands the ones CI runs, and its few-shot example runnable."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, ROOT / "ARCHITECTURE.md", *DOCS]
RENDER = ROOT / "benchmarks" / "render_tables.py"


def load_render():
    """benchmarks/render_tables.py (it puts benchmarks/ on sys.path, so `docgen` imports after it)."""
    spec = importlib.util.spec_from_file_location("render_tables", RENDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_render()
import docgen  # noqa: E402  (benchmarks/docgen: one module a page)


def code_blocks(text: str, lang: str) -> List[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


# -- generated tables ---------------------------------------------------------------------------------
def test_committed_tables_match_what_the_script_renders():
    result = subprocess.run([sys.executable, str(RENDER), "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout


def test_every_page_with_figures_has_generated_blocks():
    for page in [README, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "project.md"]:
        assert "<!-- table:" in page.read_text(encoding="utf8"), page


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> Path:
    """The files the script reads and writes, copied so they can be tampered with."""
    root = tmp_path_factory.mktemp("repo")
    for name in ("README.md", "ARCHITECTURE.md", "project.yml", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    for folder in ("docs", "configs", "benchmarks"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("*.png", "__pycache__", "work"))
    return root


def test_a_tampered_table_is_detected(repo_copy):
    page = repo_copy / "docs" / "benchmarks-fewshot.md"
    original = page.read_text(encoding="utf8")
    block = re.search(r"<!-- table:fewshot-crossner -->\n(.*?)<!-- /table:fewshot-crossner -->", original, re.S)
    assert block, "docs/benchmarks-fewshot.md has no fewshot-crossner block"
    figure = re.search(r"\d+\.\d\d", block.group(1))
    tampered = original[: block.start(1) + figure.start()] + "99.99" + original[block.start(1) + figure.end():]
    page.write_text(tampered, encoding="utf8")
    try:
        problems = render.process(repo_copy, check=True)
        assert problems == ["docs/benchmarks-fewshot.md: block 'fewshot-crossner' differs from what benchmarks/render_tables.py renders"]
        assert render.main(["--check", "--root", str(repo_copy)]) == 1
        # rendering puts the figure back
        assert render.main(["--root", str(repo_copy)]) == 0
        assert page.read_text(encoding="utf8") == original
    finally:
        page.write_text(original, encoding="utf8")


def test_a_changed_source_changes_the_table(repo_copy):
    source = repo_copy / "benchmarks" / "results" / "workflows" / "workflow_all.json"  # the headline's NCBI-disease run
    original = source.read_text(encoding="utf8")
    data = json.loads(original)
    data["package"]["f"] = 12.34
    source.write_text(json.dumps(data), encoding="utf8")
    try:
        problems = render.process(repo_copy, check=True)
        assert "README.md: block 'headline' differs from what benchmarks/render_tables.py renders" in problems
        assert "docs/benchmarks.md: block 'workflow-run' differs from what benchmarks/render_tables.py renders" in problems
    finally:
        source.write_text(original, encoding="utf8")


def test_ablation_note_says_which_files_adapted_which_base_build(tmp_path):
    results = tmp_path / docgen.sources.RESULTS / "mslm"
    results.mkdir(parents=True)
    head = "new MLM head warmed up alone for 100 steps: held-out MLM loss"
    builds = {"mslm_a.json": f"/x/enc (/x/assets/enc, 5 params; {head} 9.0 -> 6.0)",
              "mslm_b.json": f"/y/enc (/y/enc, 5 params; {head} 9.5 -> 6.5)",
              "mslm_c.json": f"/x/enc (assets/enc, 5 params; {head} 9.0 -> 6.0)"}  # a's build, the encoder elsewhere
    for name, base in builds.items():
        run = {"dataset": "NCBI-disease", "budget": "5 steps", "base": base.split(" (", 1)[1][:-1], "seeds": "seeds [0, 1]",
               "machine": "box", "threads": "one torch thread a process"}
        (results / name).write_text(json.dumps({"run": run}), encoding="utf8")
    text = docgen.mslm._ablation_notes(docgen.sources.Sources(tmp_path), list(builds), "")
    assert (f"Base, in separate builds: enc, 5 params; {head} 9.0 -> 6.0 (`mslm_a.json`, `mslm_c.json`); "
            "held-out MLM loss 9.5 -> 6.5 (`mslm_b.json`). Machine: box") in " ".join(text.split())
    one = docgen.mslm._ablation_notes(docgen.sources.Sources(tmp_path), ["mslm_a.json", "mslm_c.json"], "")
    assert f"Base: enc, 5 params; {head} 9.0 -> 6.0. Machine" in " ".join(one.split())


def test_ablation_table_pairs_mslm_with_each_baseline_that_ran():
    cell = lambda f1: {"ner": {"f1": f1}, "sens": {"term_acc": 0.1}}  # noqa: E731
    d = "NCBI-disease-IOB"
    cells = {(d, "uniform", 0): cell(80.0), (d, "uniform", 1): cell(81.0), (d, "span", 0): cell(82.0),
             (d, "span", 1): cell(80.0), (d, "mslm", 0): cell(83.0), (d, "mslm", 1): cell(82.0)}
    text = docgen.mslm._ablation_table(cells, [d], ["f1"], docgen.mslm.methods_of(cells), "uniform")
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in text.splitlines() if "paired" in line}
    assert rows == {"**MSLM, the paper's setting − uniform MLM** (paired by seed)": "**+2.00 ± 1.41**",  # (+3, +1)
                    "**MSLM, the paper's setting − span masking** (paired by seed)": "**+1.50 ± 0.71**"}  # (+1, +2)


def test_fewshot_margins_take_the_best_peer_measured_on_as_many_episodes():
    row = lambda mean, std, episodes=3: {"f_mean": mean, "f_std": std, "episodes": episodes}  # noqa: E731
    cells = {("politics", 5, "source_full"): row(20.0, 2.0), ("politics", 5, "spacy_ner_source"): row(25.0, 1.0),
             ("politics", 5, "spacy_trf_source"): row(22.0, 9.0), ("politics", 5, "in_context"): row(40.0, 0.0, 1),
             ("ai", 5, "source_full"): row(18.0, 4.0), ("ai", 5, "spacy_ner_source"): row(16.0, 3.0),
             ("ai", 5, "spacy_ner"): row(30.0, 1.0)}  # support-only spaCy is not a fair peer
    margins = {m["domain"]: m for m in docgen.fewshot.fewshot_margins({"cells": cells, "domains": ["politics", "ai"]})}
    assert margins["politics"]["peer"] == "spacy_ner_source"  # in_context ran one episode of three: not counted
    assert margins["politics"]["margin"] == pytest.approx(-5.0) and margins["politics"]["spread"] == pytest.approx(2.0)
    assert docgen.fewshot.margin_reading(-5.0, 2.0) == "behind, beyond the spread"
    assert margins["ai"]["peer"] == "spacy_ner_source" and margins["ai"]["margin"] == pytest.approx(2.0)
    assert docgen.fewshot.margin_reading(2.0, 4.0) == "ahead, within the spread"


def test_source_stage_cells_group_by_stage_kind_and_negative_rate():
    plain = {"source": {"settings": {"source_steps": 60, "negative_rate": 1.0}}}
    longer = {"source": {"settings": {"source_steps": 120, "source_without_fgm": True}}}
    episodic = {"source": {"settings": {"source_steps": 60, "source_negative_rate": 1.0, "source_n_way": 5}}}
    halved = {"source": {"settings": {"source_steps": 60, "source_negative_rate": 0.5, "source_n_way": 5}}}
    stages = docgen.fewshot.source_stage_cells({
        ("politics", 5, "source_zero"): plain, ("science", 5, "source_zero"): longer,  # not the table's plain stage
        ("politics", 5, "source_full"): plain,  # episodes with FGM: not compared
        ("politics", 5, "episodic_no_fgm"): episodic, ("politics", 5, "episodic_no_fgm", 0.5): halved,
        ("ai", 10, "episodic_zero", 0.5): halved})
    assert stages == {("source", 1.0): {("politics", 5, "zero"): plain},
                      ("episodic", 1.0): {("politics", 5, "no_fgm"): episodic},
                      ("episodic", 0.5): {("politics", 5, "no_fgm"): halved, ("ai", 10, "zero"): halved}}


def test_a_later_run_over_more_episodes_replaces_a_cell_only_when_its_first_episodes_agree():
    one = {"f_mean": 10.79, "episodes": 1, "f_episodes": [10.79]}
    assert docgen.fewshot._more_episodes(one, {"f_mean": 9.0, "episodes": 3, "f_episodes": [10.79, 7.1, 9.11]})
    assert not docgen.fewshot._more_episodes(one, {"f_mean": 9.0, "episodes": 3, "f_episodes": [10.5, 7.1, 9.4]})  # other episode 1
    assert not docgen.fewshot._more_episodes(one, {"f_mean": 10.79, "episodes": 1, "f_episodes": [10.79]})  # not more
    assert not docgen.fewshot._more_episodes({"f_mean": 10.79, "episodes": 1}, {"f_mean": 9.0, "episodes": 3, "f_episodes": [10.79, 7.1, 9.11]})


def test_source_stages_compare_across_results_written_before_and_after_a_setting_existed():
    older = {"source": {"settings": {"source_steps": 60, "negative_rate": 1.0}}}  # before source_negative_rate and _without_fgm
    episodic = {"source": {"settings": {"source_steps": 60, "source_negative_rate": 1.0, "source_without_fgm": False,
                                        "source_n_way": 5, "source_k_shot": 5, "source_pool": ["ai", "politics"]}}}
    assert docgen.fewshot._source_settings(older) == docgen.fewshot._source_settings(episodic)
    assert docgen.fewshot._source_settings(older) != docgen.fewshot._source_settings(
        {"source": {"settings": {"source_steps": 60, "source_negative_rate": 1.0, "source_without_fgm": True}}})
    assert docgen.fewshot._source_settings(older) != docgen.fewshot._source_settings(
        {"source": {"settings": {"source_steps": 60, "source_negative_rate": 0.5}}})


def test_mslm_verdict_pairs_by_seed_and_bolds_gains_on_every_seed(tmp_path, monkeypatch):
    results = tmp_path / docgen.sources.RESULTS / "mslm"
    results.mkdir(parents=True)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mslm.cfg").write_text(
        '[model]\n[model.masker]\nelm_rate = 1.0\nblm_rate = 0.15\n[model.weighting]\n@msnr_weightings = "spacy_msnr.softmax_share.v1"\n', encoding="utf8")
    cell = lambda f1: {"ner": {"f1": f1}, "sens": {}}  # noqa: E731
    d, best = "NCBI-disease-IOB", docgen.mslm.CURVE_MSLM
    (results / "mslm_full.json").write_text(json.dumps({  # MSLM − none: +1.5, +1.0 (every seed); − uniform: +2, −1
        f"{d}/none/0": cell(80.0), f"{d}/none/1": cell(81.0), f"{d}/uniform/0": cell(79.5), f"{d}/uniform/1": cell(83.0),
        f"{d}/{best}/0": cell(81.5), f"{d}/{best}/1": cell(82.0)}), encoding="utf8")
    (results / "mslm_quarter.json").write_text(json.dumps({  # − none: −1, +2 (seeds disagree); no uniform
        f"{d}/none/0": cell(70.0), f"{d}/none/1": cell(70.0), f"{d}/{best}/0": cell(69.0), f"{d}/{best}/1": cell(72.0)}),
        encoding="utf8")
    monkeypatch.setattr(docgen.mslm, "ABLATION_FILES", ("mslm_full.json",))
    monkeypatch.setattr(docgen.mslm, "CURVE_FILES", ((0.25, "mslm_quarter.json"),))
    text = docgen.readme.mslm_verdict(docgen.sources.Sources(tmp_path), "", "")
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and "%" in line.split("|")[1]:
            rows[line.split("|")[1].strip()] = [c.strip() for c in line.split("|")[2:4]]
    assert rows == {"25 %": ["+0.50 ± 2.12 (n = 2)", "–"], "100 %": ["**+1.25 ± 0.35 (n = 2)**", "+0.50 ± 2.12 (n = 2)"]}
    flat = " ".join(text.split())
    assert "ahead of no adaptation on every seed at 1 of the 2 points measured (NCBI-disease 100 %)" in flat
    assert "by +1.0 F1 or more on every seed at NCBI-disease 100 %" in flat
    assert "(the default of `configs/mslm.cfg`)" in flat


#: A measured figure as the benchmarks print them: a spread, or a number with two decimals.
FIGURE = re.compile(r"±|(?<![\w.])[+−-]?\d+\.\d\d(?!\d)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_measured_figure_is_typed_outside_generated_blocks(page):
    """Figures in README and docs come from the benchmarks' results: outside a generated block (and
    outside code) a page may cite a row, not copy its number."""
    text = docgen.blocks.BLOCK.sub("", page.read_text(encoding="utf8"))
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    typed = [line.strip() for line in text.splitlines() if FIGURE.search(line)]
    assert not typed, f"{page.name}: figures typed by hand (render them from benchmarks/results): {typed[:3]}"
    assert FIGURE.search("it scores 83.34 on NCBI-disease") and FIGURE.search("+0.97 ± 0.63")
    assert not FIGURE.search("ELM rate 1.0, arXiv 2403.18025, version 3.8")


def test_a_source_that_lost_what_a_block_reads_stops_the_script(repo_copy):
    source = repo_copy / "benchmarks" / "results" / "fewshot" / "fewshot_workflow.json"
    original = source.read_text(encoding="utf8")
    source.write_text(original.replace('"machine":', '"box":'), encoding="utf8")
    try:
        with pytest.raises(docgen.sources.SourceError, match="fewshot_workflow.json: no 'machine'"):
            render.process(repo_copy, check=True)
    finally:
        source.write_text(original, encoding="utf8")


def test_hand_written_var_meanings_carry_no_figures():
    for name, meaning in docgen.project.VAR_MEANINGS.items():
        prose = re.sub(r"`[^`]*`", "", meaning)  # names in code spans (`BC5CDR-IOB`) are not figures
        assert not re.search(r"\d", prose), f"VAR_MEANINGS[{name!r}] holds a figure: {meaning!r}"


# -- links and commands ---------------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf8"), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf8"), flags=re.S | re.M)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: link {link!r} points to a missing file"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{page.name}: link {link!r}: no heading with that anchor"


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf8").splitlines()
    assert len(lines) <= 180, f"README.md has {len(lines)} lines; move detail to docs/"


def test_commands_shown_exist():
    from spacy_msnr.cli import app

    commands = {c.name for c in app.registered_commands if not c.hidden}
    shown = set()
    for page in PAGES:
        for name in re.findall(r"(?:python -m spacy_msnr|spacy-msnr) ([a-z][\w-]*)", page.read_text(encoding="utf8")):
            shown.add(name)
            assert name in commands, f"{page.name} shows `python -m spacy_msnr {name}`, which is not a command ({sorted(commands)})"
    assert {"annotate", "fetch-model"} <= shown


def test_readme_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf8").splitlines()
    start = next(i for i, line in enumerate(ci) if line.startswith("echo") and "test command" in line)
    step = [line for line in ci[start + 1:] if line.strip() and not line.lstrip().startswith("#")]
    assert step, ".ci/run has no test step"
    readme_lines = [line for block in code_blocks(README.read_text(encoding="utf8"), "bash") for line in block.splitlines()]
    assert step[-1] in readme_lines


def test_readme_install_commands():
    readme_lines = [line for block in code_blocks(README.read_text(encoding="utf8"), "bash") for line in block.splitlines()]
    assert "python -m pip install torch==2.13.0 && python -m pip install -e . && python -m spacy project run all" in readme_lines
    assert "python -m pip install torch==2.13.0 && python -m pip install -e \".[test,ray]\" && python -m pytest" in readme_lines


# -- the README's few-shot example ----------------------------------------------------------------------
BASE_MODEL = '"assets/models/smollm2-135m-instruct"'


def test_readme_fewshot_example_runs(tiny_chat_model_dir, one_torch_thread):
    """The README's fewshot_ner example, verbatim but for the base model (the tiny local chat model)."""
    blocks = [b for b in code_blocks(README.read_text(encoding="utf8"), "python") if 'add_pipe("fewshot_ner"' in b]
    assert len(blocks) == 1
    code = blocks[0]
    assert BASE_MODEL in code and "nlp.initialize" in code and "nlp.update" in code
    assert "doc.ents" in code and "displacy.render" in code
    code = code.replace(BASE_MODEL, repr(str(tiny_chat_model_dir)))
    namespace = {"__name__": "readme_example"}
    exec(compile(code, "README.md (fewshot example)", "exec"), namespace)
    nlp, doc = namespace["nlp"], namespace["doc"]
    assert nlp.pipe_names == ["fewshot_ner"]
    assert set(nlp.get_pipe("fewshot_ner").labels) == {"PERSON", "LOCATION"}
    assert len(namespace["examples"]) == 5 and namespace["losses"]["fewshot_ner"] > 0
    assert "<div" in namespace["html"] and "Scholz flew from" in namespace["html"]
    assert len(doc.spans["fewshot_ner"].attrs["scores"]) == len(doc.ents)


def test_not_measured_claims_match_the_results():
    """No page says the source-trained spaCy peer has not been measured once a results file holds a
    full (3-episode) `spacy_ner_source` row; the pattern does catch such a claim."""
    import json

    measured = []
    for path in sorted((ROOT / "benchmarks" / "results").glob("*/*.json")):
        data = json.loads(path.read_text(encoding="utf8"))
        rows = data.get("rows", []) if isinstance(data, dict) else []
        if any(isinstance(r, dict) and r.get("row") == "spacy_ner_source" and r.get("episodes", 0) >= 3 for r in rows):
            measured.append(path.name)
    claims = [page.name for page in PAGES
              if re.search(r"(peer|spaCy's\s+`ner`)[^.]*(has|have)\s+not\s+been\s+measured", page.read_text(encoding="utf8"))]
    assert not (measured and claims), f"{claims} say the source-trained spaCy peer has not been measured; {measured} measure it"
    stale = "spaCy's `ner` given the same source-domain training first has not been measured."
    assert re.search(r"(peer|spaCy's\s+`ner`)[^.]*(has|have)\s+not\s+been\s+measured", stale)


def test_every_results_file_is_named_in_the_benchmarks_readme():
    """benchmarks/README.md says which script writes each file of benchmarks/results/."""
    import fnmatch

    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf8")
    patterns = []
    for name in re.findall(r"`([^`\s]+\.[a-z{},]+)`", text):
        stem, brace, rest = name.partition("{")
        options = rest.rstrip("}").split(",") if brace else [""]
        patterns += [stem + option for option in options]
    results = ROOT / "benchmarks" / "results"
    files = [p.name for p in results.rglob("*") if p.is_file() and not p.name.startswith("tmp_")]
    unnamed = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert files and unnamed == []
    loose = [p.name for p in results.iterdir() if p.is_file() and not p.name.startswith("tmp_")]
    assert loose == [], f"results files outside a topic folder: {loose}"
    misplaced = [p.relative_to(results).as_posix() for p in results.rglob("*") if p.is_file() and not p.name.startswith("tmp_")
                 and p.parent != results and (ROOT / docgen.sources.result(p.name)) != p]
    assert misplaced == [], f"results files in another topic's folder than docgen/sources.py TOPICS says: {misplaced}"
