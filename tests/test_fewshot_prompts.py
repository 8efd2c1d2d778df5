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
    assert inst.input_ids == builder.prefix_ids("LOC") + seg.input_ids + builder.suffix_ids("LOC")
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


CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def chat_tokenizer(tiny_tokenizer):
    """The tiny llama tokenizer with ChatML special tokens and template (a copy)."""
    import copy

    tok = copy.deepcopy(tiny_tokenizer("llama"))
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


def test_prompt_format_auto_follows_the_chat_template(builder, chat_tokenizer, tiny_tokenizer):
    assert builder.prompt_format == "plain"  # no chat template: the plain format
    assert PromptBuilder(chat_tokenizer, {}).prompt_format == "chat"
    assert PromptBuilder(chat_tokenizer, {}, "plain").prompt_format == "plain"
    with pytest.raises(ValueError, match="no chat template"):
        PromptBuilder(tiny_tokenizer("llama"), {}, "chat")
    with pytest.raises(ValueError, match="prompt_format must be one of"):
        PromptBuilder(chat_tokenizer, {}, "chatml")


def test_chat_answer_is_exactly_the_assistant_turn(chat_tokenizer, nlp):
    tok = chat_tokenizer
    b = PromptBuilder(tok, {"LOC": "a place", "PER": "PER"}, "chat")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert b.markers.end == end != tok.eos_token_id
    doc = nlp.make_doc("Rome and Paris and Rome again")
    doc.ents = [Span(doc, 0, 1, "LOC"), Span(doc, 2, 3, "LOC")]
    (seg,) = b.segments(doc, 0, 1000)
    inst = b.instruction(seg, "LOC", doc.ents)
    # text first, then the type with its description; the answer ids start right after the
    # template's generation prompt and end with its end-of-turn token
    assert tok.decode(inst.input_ids).endswith("Rome again\nType: LOC (a place)<|im_end|>\n<|im_start|>assistant\n")
    assert inst.answer_ids[-1] == end and end not in inst.answer_ids[:-1]
    answer = tok.decode(inst.answer_ids[:-1])
    assert answer.replace(" ", "") == "<<<Rome>>><<<Paris>>>"
    # prompt + answer is the template's rendering of the conversation (user turn, assistant turn)
    instruction = tok.decode(b.prefix_ids("LOC")).split("user\n", 1)[1]
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": instruction + doc.text + "\nType: LOC (a place)"},
         {"role": "assistant", "content": answer}], tokenize=False)
    assert rendered == tok.decode(inst.input_ids + inst.answer_ids) + "\n"
    assert tok.decode(inst.input_ids[len(b.prefix_ids("LOC")) :]).startswith(doc.text)
    # everything up to the end of the text is the same for every type; only the suffix names it
    assert b.text_first and b.prefix_ids("LOC") == b.prefix_ids("PER")
    text = tok.decode(b.prefix_ids("LOC"))
    assert text.startswith("<|im_start|>system\n") and "<<< entity >>>" in text and text.endswith("\nText: ")
    assert tok.decode(b.suffix_ids("PER")).startswith("\nType: PER<|im_end|>")  # description == name: none shown
    empty = b.instruction(seg, "PER", doc.ents)
    assert tok.decode(empty.answer_ids) == " none<|im_end|>"


def test_chat_template_without_assistant_turn_is_refused(chat_tokenizer):
    import copy

    tok = copy.deepcopy(chat_tokenizer)
    tok.chat_template = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    with pytest.raises(ValueError, match="chat template"):
        PromptBuilder(tok, {}, "chat")


DEMOS = [("Obama visited Paris and Paris again", {"PER": ["Obama"], "LOC": ["Paris", "Paris"]}),
         ("Nothing here", {})]


def test_chat_demonstrations_precede_the_instruction_and_are_shared_by_every_type(chat_tokenizer):
    tok = chat_tokenizer
    plain = PromptBuilder(tok, {"LOC": "a place", "PER": "PER"}, "chat")
    b = PromptBuilder(tok, {"LOC": "a place", "PER": "PER"}, "chat", DEMOS)
    text = tok.decode(b.prefix_ids("LOC"))
    # every demonstration text, then each type's answer in the answer format (each text once)
    assert ("Solved examples:\nText: Obama visited Paris and Paris again\nLOC: <<< Paris >>>\nPER: <<< Obama >>>\n"
            "\nText: Nothing here\nLOC: none\nPER: none\n\nNow the task.\n") in text
    assert text.endswith(tok.decode(plain.prefix_ids("LOC")).split("user\n", 1)[1])  # then the instruction as before
    assert b.prefix_ids("LOC") == b.prefix_ids("PER") and b.text_first  # still shared: one cache for all types
    assert b.suffix_ids("PER") == plain.suffix_ids("PER") and b.markers == plain.markers
    assert b.max_prefix_length(["LOC"]) > plain.max_prefix_length(["LOC"])  # the text budget shrinks by it


def test_plain_demonstrations_show_the_instructions_type_only(builder):
    tok = builder.tokenizer
    b = PromptBuilder(tok, {"PER": "a person", "LOC": "LOC"}, "plain", DEMOS)
    per, loc = tok.decode(b.prefix_ids("PER")), tok.decode(b.prefix_ids("LOC"))
    assert "### Example input:\nObama visited Paris and Paris again\n### Example answer: <<< Obama >>>" in per
    assert "### Example answer: <<< Paris >>>" in loc and "<<< Obama >>>" not in loc
    assert per.count("### Example answer: none") == 1 and per.endswith("### Input:\n")
    assert per.startswith(tok.decode(builder.prefix_ids("PER"))[: -len("\n### Input:\n")])
    assert PromptBuilder.answer_text([]) == " none"
