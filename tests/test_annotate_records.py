"""annotate_rows: records in input order, long texts in pieces with offsets mapped back."""
import json

import pytest
import spacy
from spacy.tokens import Doc, SpanGroup

from spacy_msnr.annotate.readers import make_row
from spacy_msnr.annotate.records import annotate_rows, entity_records


@pytest.fixture(scope="module")
def ruler():
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns(
        [{"label": "DISEASE", "pattern": [{"LOWER": w}]} for w in ("cancer", "lupus", "tumor", "tumors", "carcinoma")]
        + [{"label": "DISEASE", "pattern": [{"LOWER": "breast"}, {"LOWER": "cancer"}]}]
    )
    return nlp


@pytest.fixture(scope="module")
def texts(data_dir):
    with (data_dir / "pubmed" / "abstracts.jsonl").open(encoding="utf8") as f:
        return [json.loads(line)["text"] for _, line in zip(range(60), f)]


def doc_rows(texts):
    return [make_row("doc", "s", id=str(i), text=t, line=i + 1) for i, t in enumerate(texts)]


def test_long_texts_keep_correct_offsets(ruler, texts):
    long_text = "\n\n".join(texts[:20])  # about 30,000 characters, many entities
    rows = doc_rows([long_text] + texts[20:30])
    whole = list(annotate_rows(ruler, rows, batch_size=4))
    split = list(annotate_rows(ruler, rows, batch_size=4, max_length=300, keep_docs=True))
    assert [r["id"] for r in split] == [str(i) for i in range(11)]
    ents = json.loads(split[0]["entities"])
    assert len(ents) >= 10 and split[0]["length"] == len(long_text)
    assert all(long_text[e["start_char"] : e["end_char"]] == e["text"] for e in ents)
    # single-token patterns never cross a piece boundary, so splitting changes nothing
    assert [json.loads(r["entities"]) for r in split] == [json.loads(r["entities"]) for r in whole]
    joined = Doc(ruler.vocab).from_bytes(split[0]["doc"])
    assert joined.text == long_text and [e.text for e in joined.ents] == [e["text"] for e in ents]


def test_other_rows_pass_through_in_order(ruler):
    rows = [make_row("error", "s", file="f", line=1, message="bad"), *doc_rows(["a cancer", ""]), make_row("end", "s", count=3)]
    out = list(annotate_rows(ruler, rows))
    assert [(r["kind"], r["id"]) for r in out] == [("error", ""), ("doc", "0"), ("doc", "1"), ("end", "")]
    assert json.loads(out[1]["entities"]) == [{"start_char": 2, "end_char": 8, "label": "DISEASE", "text": "cancer", "score": None}]
    assert out[2]["entities"] == "[]" and out[2]["length"] == 0 and out[3]["count"] == 3


def test_scores_come_from_a_span_group(ruler):
    doc = ruler("lupus and breast cancer")
    group = SpanGroup(doc, name="fewshot_ner", spans=list(doc.ents), attrs={"scores": [0.5, 0.25]})
    doc.spans["fewshot_ner"] = group
    assert [(e["text"], e["score"], e["start_char"]) for e in entity_records(doc, offset=10)] == [("lupus", 0.5, 10), ("breast cancer", 0.25, 20)]
