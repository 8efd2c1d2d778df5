"""Instruction prompts: segmentation, offsets, answers in the `<<< a >>>` format."""
import pytest
import spacy
from spacy.tokens import Doc, Span

from spacy_msnr.fewshot.prompts import PromptBuilder


@pytest.fixture(scope="module")
def builder(tiny_tokenizer):
    return PromptBuilder(tiny_tokenizer("llama"), {"PER": "a person", "LOC": "LOC"})


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


def test_prefix_and_markers(builder):
    tok = builder.tokenizer
    text = tok.decode(builder.prefix_ids("PER"))
    assert "entities of type PER" in text and "Definition: a person" in text and text.endswith("### Input:\n")
    assert "Definition" not in tok.decode(builder.prefix_ids("LOC"))  # description == name
    assert builder.prefix_ids("PER")[0] == tok.bos_token_id
    assert builder.markers.end == tok.eos_token_id
    assert tok.decode(list(builder.markers.open)) == " <<<"


def test_segment_offsets_and_boundaries(builder, nlp):
    doc = nlp.make_doc("Obama visited (London), U.S.-based firms.")
    (seg,) = builder.segments(doc, 0, 1000)
    assert seg.input_ids == builder.tokenizer(doc.text, add_special_tokens=False)["input_ids"]
    token_starts = {t.idx for t in doc}
    token_ends = {t.idx + len(t) for t in doc}
    for k, (a, b) in enumerate(seg.offsets):
        assert 0 <= a <= b <= len(doc.text) and doc.text[a:b] == doc.text[a:b].strip()
        if k in seg.starts:
            assert any(a <= s < b for s in token_starts)
    # every spaCy token start is the start of some allowed model token
    covered = {seg.offsets[k][0] for k in seg.starts}
    assert token_starts <= {s for s in token_starts if any(seg.offsets[k][0] <= s < seg.offsets[k][1] for k in seg.starts)}
    assert doc[0].idx in covered


def test_answer_format_order_dedup_and_empty(builder, nlp):
    doc = nlp.make_doc("Rome and Paris and Rome again")
    doc.ents = [Span(doc, 0, 1, "LOC"), Span(doc, 2, 3, "LOC"), Span(doc, 4, 5, "LOC")]
    (seg,) = builder.segments(doc, 0, 1000)
    inst = builder.instruction(seg, "LOC", doc.ents)
    answer = builder.tokenizer.decode(inst.answer_ids)
    assert answer.startswith(" <<<")
    assert answer.replace(" ", "") == "<<<Rome>>><<<Paris>>></s>"  # in order, repeated "Rome" once
    assert [t for t in inst.token_types if t] and set(inst.token_types) == {"", "LOC"}
    typed = "".join(doc.text[a:b] for (a, b), t in zip(seg.offsets, inst.token_types) if t)
    assert typed == "RomeParisRome"
    empty = builder.instruction(seg, "PER", doc.ents)
    assert builder.tokenizer.decode(empty.answer_ids).replace(" ", "") == "none</s>"
    assert inst.input_ids == builder.prefix_ids("LOC") + seg.input_ids + builder.suffix_ids
    start, end = inst.text_range
    assert inst.input_ids[start:end] == seg.input_ids


def test_long_text_is_split_not_truncated(builder, nlp):
    words = ("alpha beta gamma delta epsilon " * 40).split()
    doc = Doc(nlp.vocab, words=words)
    doc.ents = [Span(doc, 3, 5, "LOC")] + [Span(doc, i, i + 2, "PER") for i in range(8, 190, 10)]
    segs = builder.segments(doc, 0, 30, protect=doc.ents)
    assert len(segs) > 5
    assert all(len(s.input_ids) <= 30 for s in segs)
    # contiguous cover of the whole text, no entity cut
    assert segs[0].start_char == 0 and segs[-1].end_char == len(doc.text.rstrip())
    for a, b in zip(segs, segs[1:]):
        assert doc.text[a.end_char : b.start_char].strip() == ""
        assert not any(e.start_char < a.end_char < e.end_char for e in doc.ents)


def test_sentences_are_units(builder, nlp):
    doc = Doc(nlp.vocab, words=["A", "b", ".", "C", "d", "."], sent_starts=[True, False, False, True, False, False])
    segs = builder.segments(doc, 3, 1000)
    assert [doc.text[s.start_char : s.end_char] for s in segs] == ["A b .", "C d ."]
    assert {s.doc_index for s in segs} == {3}


def test_bad_input(builder, nlp, tiny_tokenizer):
    assert builder.segments(nlp.make_doc(""), 0, 10) == []
    assert builder.segments(nlp.make_doc("   "), 0, 10) == []
    with pytest.raises(ValueError, match="alone needs more"):
        builder.segments(nlp.make_doc("x" * 200 + " y"), 0, 3)
    with pytest.raises(ValueError, match="No room"):
        builder.segments(nlp.make_doc("a b"), 0, 0)
