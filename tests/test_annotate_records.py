"""annotate_rows: records in input order, long texts in pieces with offsets mapped back, a
document a component fails on turned into an error row while the rest of its batch is annotated."""
import json

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, SpanGroup
from spacy.util import ignore_error, minibatch, raise_error

from spacy_msnr.annotate.readers import make_row
from spacy_msnr.annotate.records import annotate_rows, entity_records, run_one


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


class BatchBomb:
    """A component that fails on a whole batch when one of its texts says BOOM (as a trainable
    component's `predict` would), and alone on that text."""

    def __init__(self) -> None:
        self.handler = raise_error

    def set_error_handler(self, handler) -> None:
        self.handler = handler

    def get_error_handler(self):
        return self.handler

    def __call__(self, doc: Doc) -> Doc:
        if "BOOM" in doc.text:
            raise ValueError("cannot parse BOOM")
        return doc

    def pipe(self, docs, batch_size: int = 128):
        for batch in minibatch(docs, batch_size):
            try:
                yield from [self(doc) for doc in batch]
            except Exception as err:
                self.handler("batch_bomb", self, batch, err)


@Language.factory("test_batch_bomb")
def make_batch_bomb(nlp: Language, name: str) -> BatchBomb:
    return BatchBomb()


@Language.component("test_doc_bomb")
def doc_bomb(doc: Doc) -> Doc:
    """A function component (spaCy passes its errors to the pipeline's error handler)."""
    if "BOOM" in doc.text:
        raise ValueError("cannot parse BOOM")
    return doc


def bombed_pipeline(bomb: str, handler=raise_error) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "DISEASE", "pattern": "cancer"}])
    nlp.add_pipe(bomb, name="test_batch_bomb")
    nlp.set_error_handler(handler)
    return nlp


@pytest.fixture(scope="module")
def bombed():
    return bombed_pipeline("test_batch_bomb")


@pytest.mark.parametrize(
    "n_process,bomb,handler",
    [(1, "test_batch_bomb", raise_error), (2, "test_batch_bomb", raise_error), (1, "test_doc_bomb", raise_error), (1, "test_batch_bomb", ignore_error)],
)
def test_a_failing_document_becomes_an_error_and_its_batch_is_annotated(n_process, bomb, handler):
    """Raising components (in one or two processes) and a user's error handler that skips."""
    bombed = bombed_pipeline(bomb, handler)
    texts = [f"cancer case {i}" for i in range(10)]
    texts[3] = "cancer BOOM"
    texts[8] = "a cancer. " * 30 + "BOOM at the end of a long text"  # fails in its last piece
    rows = [make_row("doc", "s", id=f"d{i}", text=t, file="in.jsonl", line=i + 1) for i, t in enumerate(texts)] + [make_row("end", "s", count=10)]
    out = list(annotate_rows(bombed, rows, batch_size=4, n_process=n_process, max_length=100))
    assert [(r["kind"], r["id"]) for r in out] == [("error" if i in (3, 8) else "doc", f"d{i}") for i in range(10)] + [("end", "")]
    assert out[3]["message"] == "pipeline component 'test_batch_bomb' failed: ValueError: cannot parse BOOM"
    assert (out[3]["file"], out[3]["line"]) == ("in.jsonl", 4)
    # the batch-mates of the failures (d0-d2, d9 ...) were run again alone and annotated
    assert all(json.loads(out[i]["entities"])[0]["text"] == "cancer" for i in (0, 1, 2, 4, 5, 6, 7, 9))


def test_run_one_names_the_failing_component(bombed):
    doc, error = run_one(bombed, "cancer")
    assert error == "" and [e.text for e in doc.ents] == ["cancer"]
    assert run_one(bombed, "BOOM") == (None, "pipeline component 'test_batch_bomb' failed: ValueError: cannot parse BOOM")


def test_an_error_reading_the_input_is_raised_not_skipped(bombed):
    def rows():
        yield make_row("doc", "s", id="a", text="cancer")
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(annotate_rows(bombed, rows()))
