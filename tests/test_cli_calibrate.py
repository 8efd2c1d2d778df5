"""`calibrate` on a tiny scored pipeline and gold DocBin: per-label JSON and a line per label."""
import json

import spacy
from spacy.language import Language
from spacy.tokens import DocBin, Span, SpanGroup
from typer.testing import CliRunner

from spacy_msnr.cli import app

#: The score the stand-in pipeline gives each entity text.
SCORES = {"Ann": 0.9, "Bob": 0.6, "Paris": 0.8, "Rome": 0.4}


@Language.component("test_calibrate_scores")
def score_entities(doc):
    """Stand-in for a scoring NER: its entities with a score each, as fewshot_ner writes them."""
    doc.spans["scored"] = SpanGroup(doc, spans=list(doc.ents), attrs={"scores": [SCORES[e.text] for e in doc.ents]})
    return doc


def test_calibrate_writes_json_and_a_line_per_label(tmp_path):
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PER", "pattern": p} for p in ("Ann", "Bob")] + [{"label": "LOC", "pattern": p} for p in ("Paris", "Rome")])
    nlp.add_pipe("test_calibrate_scores")
    nlp.to_disk(tmp_path / "pipeline")
    # gold: Ann PER and Paris LOC right; Bob is LOC in gold (wrong label), Rome is no entity
    gold = []
    for text, ents in (("Ann saw Bob.", [(0, 1, "PER"), (2, 3, "LOC")]), ("Paris and Rome.", [(0, 1, "LOC")])):
        doc = nlp.make_doc(text)
        doc.ents = [Span(doc, s, e, label) for s, e, label in ents]
        gold.append(doc)
    DocBin(docs=gold).to_disk(tmp_path / "gold.spacy")
    out = tmp_path / "calibration.json"
    result = CliRunner().invoke(app, ["calibrate", str(tmp_path / "pipeline"), str(tmp_path / "gold.spacy"), str(out), "--target-precision", "0.95"])
    text = " ".join(result.output.split())
    assert result.exit_code == 0, text
    data = json.loads(out.read_text(encoding="utf8"))
    assert data["target_precision"] == 0.95 and sorted(data["labels"]) == ["LOC", "PER"]
    per, loc = data["labels"]["PER"], data["labels"]["LOC"]
    assert (per["predictions"], per["correct"], per["gold"], per["threshold"], per["coverage"]) == (2, 1, 1, 0.9, 0.5)
    assert per["calibrator"] == {"thresholds": [0.6, 0.9], "values": [0.0, 1.0]}
    assert (loc["predictions"], loc["correct"], loc["gold"], loc["threshold"]) == (2, 1, 2, 0.8)
    assert "Calibrated 2 labels on 2 docs (target precision 0.95)" in text
    # PER raw: bins 6 (gap 0.6) and 9 (gap 0.1) -> 0.35; calibrated 0 and 1 -> 0
    assert "PER: ECE 0.350 -> 0.000, threshold 0.900, precision 1.000, coverage 0.500 (2 scored, 1 correct, 1 gold, 0 unscored)" in text


def test_calibrate_rejects_a_bad_target(tmp_path):
    (tmp_path / "gold.spacy").write_bytes(DocBin().to_bytes())
    result = CliRunner().invoke(app, ["calibrate", "blank:en", str(tmp_path / "gold.spacy"), str(tmp_path / "out.json"), "--target-precision", "1.5"])
    assert result.exit_code == 1 and "--target-precision must be in (0, 1]" in result.output
