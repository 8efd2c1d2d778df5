"""`compare` reads `spacy evaluate` outputs and prints the F1 lead over each peer."""
import json

from typer.testing import CliRunner

from spacy_msnr.cli import app
from spacy_msnr.cli.compare import comparison_table, load_scores


def write(path, p, r, f, speed=1000.0, per_type=None):
    path.write_text(json.dumps({"ents_p": p, "ents_r": r, "ents_f": f, "speed": speed, "token_acc": 1.0, "ents_per_type": per_type}))
    return path


def test_the_lead_is_the_f1_difference_in_points(tmp_path):
    ours = write(tmp_path / "test.json", 0.84, 0.82, 0.83, 1453.4)
    cnn = write(tmp_path / "test_cnn.json", 0.815, 0.728, 0.7694, 14006.0)
    result = CliRunner().invoke(app, ["compare", str(ours), str(cnn), "--names", "trf,cnn", "-o", str(tmp_path / "t.md")])
    assert result.exit_code == 0, result.output
    assert "| trf | 84.00 | 82.00 | 83.00 | 1,453 |" in result.output
    assert "| F1 trf − cnn | | | +6.06 | |" in result.output
    assert (tmp_path / "t.md").read_text().splitlines() == comparison_table({"trf": load_scores(ours), "cnn": load_scores(cnn)})


def test_a_file_without_entity_scores_is_named_in_the_error(tmp_path):
    bad = tmp_path / "tagger.json"
    bad.write_text(json.dumps({"tag_acc": 0.9}))
    result = CliRunner().invoke(app, ["compare", str(bad)])
    assert result.exit_code == 1 and "tagger.json: no ents_p, ents_r, ents_f" in " ".join(result.output.split())


def test_per_type_rows_and_plot(tmp_path):
    ours = write(tmp_path / "a.json", 0.8, 0.8, 0.8, per_type={"Disease": {"p": 0.9, "r": 0.7, "f": 0.7875}, "Chemical": {"p": 0.5, "r": 0.5, "f": 0.5}})
    cnn = write(tmp_path / "b.json", 0.7, 0.7, 0.7, per_type={"Disease": {"p": 0.6, "r": 0.6, "f": 0.6}})
    plot = tmp_path / "plots" / "per_type.svg"
    result = CliRunner().invoke(app, ["compare", str(ours), str(cnn), "--names", "trf,cnn", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "| Disease | trf | 90.00 | 70.00 | 78.75 |" in result.output
    assert "| Chemical | cnn | – | – | – |" in result.output  # a type one pipeline was not scored on
    svg = plot.read_text()
    assert svg.startswith("<?xml") and "Disease" in svg and "78.8" in svg and "overall" in svg
