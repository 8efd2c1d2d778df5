"""The mask-rate search: the grid, the choice, the time budget, resuming, the written config and the CLI."""
import json
from pathlib import Path

import pytest
from spacy.tokens import DocBin
from spacy.vocab import Vocab
from thinc.api import Config
from typer.testing import CliRunner

from spacy_msnr.corpus.iob import iob_to_docs
from spacy_msnr.mslm import search as search_module
from spacy_msnr.mslm.search import PAPER_SETTING, GridPoint, ablation_row_name, expand_grid, point_config, select
from spacy_msnr.mslm.train import load_config

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "mslm.cfg"
SOFTMAX, INVERSE, UNWEIGHTED = "spacy_msnr.softmax_share.v1", "spacy_msnr.inverse_frequency.v1", "spacy_msnr.unweighted.v1"
SMALL = ["--training.batch_size", "400", "--training.max_length", "64", "--training.max_steps", "7"]


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("search-corpus")
    vocab = Vocab()
    path = data_dir / "blurb" / "NCBI-disease-IOB"
    DocBin(docs=iob_to_docs(path / "train.tsv", vocab)[:24]).to_disk(root / "train.spacy")
    DocBin(docs=iob_to_docs(path / "devel.tsv", vocab)[:12]).to_disk(root / "dev.spacy")
    return root


@pytest.fixture
def paths(corpus, tiny_model_dir):
    return ["--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy"),
            "--paths.base_model", str(tiny_model_dir("bert"))]


def invoke(*args):
    from spacy_msnr.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_grid_is_the_product_in_a_fixed_order_without_repeats():
    points = expand_grid([0.5, 1.0, 1], [0.15], [SOFTMAX, INVERSE])
    assert [p.name for p in points] == ["elm0.5-blm0.15-softmax_share.v1", "elm0.5-blm0.15-inverse_frequency.v1",
                                        "elm1-blm0.15-softmax_share.v1", "elm1-blm0.15-inverse_frequency.v1"]
    assert points[3] == GridPoint(1.0, 0.15, INVERSE)
    assert [p.name for p in expand_grid([1, 0.5, 1.0], [0.15], [UNWEIGHTED])] == ["elm1-blm0.15-unweighted.v1", "elm0.5-blm0.15-unweighted.v1"]
    assert [p.name for p in expand_grid([0.25], [0.075, 0.225], [UNWEIGHTED])] == ["elm0.25-blm0.075-unweighted.v1", "elm0.25-blm0.225-unweighted.v1"]


@pytest.mark.parametrize("elm, blm, names, message", [
    ([1.5], [0.15], [SOFTMAX], "--elm-rates: every rate must be within [0, 1], got 1.5"),
    ([0.5], [-0.1], [SOFTMAX], "--blm-rates: every rate must be within [0, 1]"),
    ([0.5], [0.15], ["spacy_msnr.softmax.v9"], f"registered in @msnr_weightings: {INVERSE}, {SOFTMAX}, {UNWEIGHTED}"),
    ([], [0.15], [SOFTMAX], "The grid is empty: give at least one of its ELM rates"),
    ([0.5], [0.15], [], "The grid is empty: give at least one of its weightings"),
])
def test_bad_grids_are_clear_errors(elm, blm, names, message):
    with pytest.raises(ValueError) as err:
        expand_grid(elm, blm, names)
    assert message in str(err.value)


def test_ablation_row_names_are_the_committed_result_keys():
    """The names key the cells of benchmarks/results/mslm/mslm_ablation_*.json: they must not change."""
    assert PAPER_SETTING == GridPoint(0.5, 0.15, SOFTMAX)
    assert ablation_row_name(0.5, 0.15, SOFTMAX) == "mslm"
    assert ablation_row_name(1.0, 0.15, SOFTMAX) == "mslm-elm1-blm0.15"
    assert ablation_row_name(0.5, 0.15, INVERSE) == "mslm-elm0.5-blm0.15-inverse_frequency"
    assert ablation_row_name(1.0, 0.15, INVERSE) == "mslm-elm1-blm0.15-inverse_frequency"
    assert ablation_row_name(0.5, 0.3, SOFTMAX) == "mslm-elm0.5-blm0.3"  # only the whole paper setting is "mslm"
    assert ablation_row_name(0.25, 0.15, UNWEIGHTED) == "mslm-elm0.25-blm0.15-unweighted"
    point = GridPoint(1.0, 0.15, INVERSE)  # the search's folder name keeps the weighting and its version
    assert point.name == "elm1-blm0.15-inverse_frequency.v1"
    assert ablation_row_name(point.elm_rate, point.blm_rate, point.weighting) == "mslm-elm1-blm0.15-inverse_frequency"


def test_point_config_sets_the_rates_and_weighting_and_a_short_run():
    config = load_config(DEFAULT_CONFIG)
    short = point_config(config, GridPoint(0.5, 0.075, INVERSE), steps=3)
    assert short["model"]["masker"]["elm_rate"] == 0.5 and short["model"]["masker"]["blm_rate"] == 0.075
    assert short["model"]["weighting"] == {"@msnr_weightings": INVERSE}
    assert short["training"]["max_steps"] == 3 and short["training"]["eval_frequency"] == 3 and short["training"]["checkpoint_every"] == 0
    assert config["model"]["masker"]["elm_rate"] == 1.0 and config["training"]["max_steps"] == 1000  # the input is left alone
    assert point_config(config, GridPoint(1.0, 0.075, INVERSE))["training"]["max_steps"] == 1000
    uniform = load_config(DEFAULT_CONFIG, {"model.masker": {"@msnr_maskers": "spacy_msnr.uniform.v1", "rate": 0.15}})
    with pytest.raises(ValueError, match="tunes the rates of @msnr_maskers"):
        point_config(uniform, GridPoint(1.0, 0.15, SOFTMAX))


def test_the_choice_is_the_argmax_of_the_signal_among_points_that_keep_generic_words():
    record = json.loads("""{"points": {
      "a": {"metrics": {"term_acc": 0.08, "term_prob": 0.017, "generic_acc": 0.22}},
      "b": {"metrics": {"term_acc": 0.09, "term_prob": 0.023, "generic_acc": 0.20}},
      "c": {"metrics": {"term_acc": 0.30, "term_prob": 0.090, "generic_acc": 0.10}},
      "d": {"metrics": {"term_acc": null, "term_prob": null, "generic_acc": 0.23}},
      "e": {"metrics": {"term_acc": 0.09, "term_prob": 0.020, "generic_acc": 0.21}}}}""")
    points = record["points"]
    chosen = select(points)
    # c wrecks generic words (0.10 < 0.8 x 0.23), d has no DS-term score, b beats e on the tie by grid order
    assert chosen.chosen == "b" and set(chosen.excluded) == {"c", "d"}
    assert chosen.scores == {"a": 0.08, "b": 0.09, "c": 0.30, "d": None, "e": 0.09}
    assert select(points, min_generic_share=0.0).chosen == "c"
    assert select(points, "term_generic_acc").chosen == "a"  # 0.30 vs 0.29 and 0.30: a comes first
    assert select(points, "term_prob").chosen == "b"
    assert select({"d": points["d"]}).chosen is None


def test_search_stops_at_the_budget_resumes_and_writes_a_config_mslm_uses(paths, tmp_path, one_torch_thread, monkeypatch):
    out = tmp_path / "search"
    grid = ["--elm-rates", "0.25,1.0", "--blm-rates", "0.15", "--weightings", f"{INVERSE},{UNWEIGHTED}", "--steps", "2"]
    result = invoke("mslm-search", DEFAULT_CONFIG, out, *grid, "--max-seconds", "0.001", *paths, *SMALL)
    assert result.exit_code == 0, result.output
    assert "budget 0.001 s" in result.output and "elm1-blm0.15-unweighted.v1: ELM rate 1" in result.output
    record = json.loads((out / "search.json").read_text())
    first, *rest = record["grid"]
    assert list(record["points"]) == [first] and record["not_tried"] == rest and len(rest) == 3
    assert "3 point(s) not tried" in result.output and record["chosen"] == first
    assert record["points"][first]["steps"] == 2 and record["points"][first]["seconds"] > 0
    assert 0 <= record["points"][first]["metrics"]["term_acc"] <= 1 and record["points"][first]["metrics"]["n_term"] > 0
    assert (out / "runs" / first / "mslm_log.json").exists() and not (out / "runs" / first / "model").exists()

    calls = []
    original = search_module.train
    monkeypatch.setattr(search_module, "train", lambda config, output, **kw: calls.append(Path(output).parent.name) or original(config, output, **kw))
    result = invoke("mslm-search", DEFAULT_CONFIG, out, *grid, *paths, *SMALL)
    assert result.exit_code == 0, result.output
    assert calls == rest and f"{first}: finished before, skipped" in result.output
    record = json.loads((out / "search.json").read_text())
    assert list(record["points"]) == record["grid"] and record["not_tried"] == []
    scores = {name: record["points"][name]["metrics"]["term_acc"] for name in record["grid"]}
    assert record["scores"] == scores
    assert record["chosen"] == select(record["points"], "term_acc", 0.8).chosen
    assert "*" in result.output and record["chosen"] in result.output

    # the written config loads, names the search in its header, keeps the user's settings and holds the chosen point's
    chosen = record["points"][record["chosen"]]
    text = (out / "mslm.cfg").read_text()
    assert text.startswith("# Written by `python -m spacy_msnr mslm-search`") and "(chosen)" in text
    config = load_config(out / "mslm.cfg")
    assert config["model"]["masker"]["elm_rate"] == chosen["elm_rate"] and config["model"]["weighting"]["@msnr_weightings"] == chosen["weighting"]
    assert config["training"]["max_steps"] == 7 and config["model"]["name"] == "${paths.base_model}"
    result = invoke("mslm", out / "mslm.cfg", tmp_path / "adapted", "--training.max_steps", "1")
    assert result.exit_code == 0, result.output
    log = json.loads((tmp_path / "adapted" / "mslm_log.json").read_text())
    used = Config().from_str(log["config"], interpolate=False)
    assert log["steps"] == 1 and used["model"]["masker"]["elm_rate"] == chosen["elm_rate"]
    assert used["model"]["weighting"]["@msnr_weightings"] == chosen["weighting"]

    # another config cannot reuse these results
    result = invoke("mslm-search", DEFAULT_CONFIG, out, *grid, *paths, *SMALL, "--training.max_length", "32")
    assert result.exit_code == 1 and "another config or --steps" in result.output and "Traceback" not in result.output


def test_signal_tag_acc_uses_the_joint_tagging_head(paths, tmp_path, one_torch_thread):
    out = tmp_path / "search"
    args = ["mslm-search", DEFAULT_CONFIG, out, "--elm-rates", "1", "--weightings", SOFTMAX, "--steps", "1", "--signal", "tag_acc", *paths, *SMALL]
    result = invoke(*args)
    assert result.exit_code == 1 and "needs the joint tagging head" in result.output
    result = invoke(*args, "--model.ner_weight", "1.0", "--keep-models")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "search.json").read_text())
    assert record["chosen"] == "elm1-blm0.15-softmax_share.v1" and 0 <= record["scores"][record["chosen"]] <= 1
    assert (out / "runs" / record["chosen"] / "model" / "model.safetensors").exists()


@pytest.mark.parametrize("args, message", [
    (["--elm-rates", "0.5,1.5"], "--elm-rates: every rate must be within [0, 1], got 1.5"),
    (["--blm-rates", "0.1,x"], "--blm-rates: 'x' is not a number"),
    (["--weightings", "spacy_msnr.nope.v1"], "Unknown weighting spacy_msnr.nope.v1; registered in @msnr_weightings:"),
    (["--weightings", ","], "The grid is empty"),
    (["--signal", "f1"], "Unknown signal 'f1'; choose one of: term_acc"),
    (["--steps", "0"], "--steps must be an integer >= 1"),
    (["--paths.dev", "null"], "set paths.dev"),
])
def test_cli_reports_bad_input_without_a_traceback(args, message, paths, tmp_path):
    result = invoke("mslm-search", DEFAULT_CONFIG, tmp_path / "out", *paths, *args)
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "out" / "runs").exists()


def test_search_reports_through_its_logger_not_print(caplog, capsys, monkeypatch):
    """Library code logs (`spacy_msnr.mslm.search`), so an embedding program can silence or route it."""
    import logging

    from spacy_msnr.mslm import search as search_module

    for name in ("spacy_msnr.mslm", "spacy_msnr.mslm.search"):  # handlers a command left behind are not the library's
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])

    record = {"points": {}, "signal": "term_acc"}
    points = search_module.expand_grid([0.5], [0.15], ["spacy_msnr.softmax_share.v1"])
    with caplog.at_level(logging.INFO, logger="spacy_msnr.mslm.search"):
        search_module.log_table(points, record)
    assert any("ELM" in r.getMessage() and r.name == "spacy_msnr.mslm.search" for r in caplog.records)
    assert capsys.readouterr().out == ""  # nothing printed behind the logger's back
