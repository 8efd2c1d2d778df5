"""Span-constrained decoding: every decoded entity is a real span of the input."""
import random

import pytest
import spacy
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc, Span

import util  # tests/util.py
from spacy_msnr.fewshot.decoding import SpanConstraint, allowed_logits, generate, repeated_mentions, resolve_overlaps
from spacy_msnr.fewshot.prompts import PromptBuilder

VOCAB = spacy.blank("en").vocab
WORDS = ["Rome", "Paris", "the", "New", "York", ",", ".", "<<<", ">>>", "none", "a", "(", ")", "U.S."]


@pytest.fixture(scope="module")
def builder(tiny_tokenizer):
    return PromptBuilder(tiny_tokenizer("llama"), {"LOC": "a place"})


def _doc(vocab, words, spaces):
    return Doc(vocab, words=words, spaces=spaces)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=12),
    spaces=st.lists(st.booleans(), min_size=12, max_size=12),
    seed=st.integers(0, 10_000),
)
def test_random_decoding_only_yields_real_spans(builder, words, spaces, seed):
    doc = _doc(VOCAB, words, spaces[: len(words)])
    segs = builder.segments(doc, 0, 1000)
    rng = random.Random(seed)
    for seg in segs:
        cons = SpanConstraint(seg.input_ids, seg.starts, seg.ends, builder.markers)
        for _ in range(50):
            if cons.finished:
                break
            allowed = sorted(cons.allowed())
            assert allowed, "the automaton must always allow a continuation"
            cons.advance(rng.choice(allowed), -rng.random())
        aligned = all(
            any(a == t.idx for a, _ in seg.offsets) and any(b == t.idx + len(t) for _, b in seg.offsets) for t in doc
        )
        for found in cons.spans():
            assert found.first in seg.starts and found.last in seg.ends and found.first <= found.last
            a, b = seg.offsets[found.first][0], seg.offsets[found.last][1]
            span = doc.char_span(a, b, alignment_mode="expand")  # what the component does
            assert span is not None and len(span) > 0 and span.start_char <= a < b <= span.end_char
            if aligned:  # model tokens never straddle a spaCy token boundary: exact span
                assert doc.char_span(a, b) == span
            assert 0.0 < found.score <= 1.0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(WORDS[:7]), min_size=2, max_size=10), data=st.data())
def test_gold_answer_is_decodable_and_recovers_gold(builder, words, data):
    doc = _doc(VOCAB, words, [True] * len(words))
    ents, i = [], 0
    while i < len(words):
        n = data.draw(st.integers(0, 2))
        if n and i + n <= len(words):
            ents.append(Span(doc, i, i + n, "LOC"))
            i += n + 1
        else:
            i += 1
    doc.ents = ents
    (seg,) = builder.segments(doc, 0, 1000)
    inst = builder.instruction(seg, "LOC", doc.ents)
    cons = SpanConstraint(seg.input_ids, seg.starts, seg.ends, builder.markers)
    cons.allowed_along(inst.answer_ids)  # raises if gold were not decodable
    assert cons.finished
    got = set()
    for f in cons.spans():
        span = doc.char_span(seg.offsets[f.first][0], seg.offsets[f.last][1])
        got.update((m.start, m.end) for m in repeated_mentions(doc, span.text, 0, len(doc.text)))
    gold = {(e.start, e.end) for e in ents}
    assert gold <= got
    # anything extra is another mention of a gold entity's text
    gold_texts = {e.text for e in ents}
    assert all(doc[s:e].text in gold_texts for s, e in got)


def test_no_repeats_order_and_repeated_mentions(builder):
    doc = _doc(VOCAB, ["Rome", "and", "Rome", "."], [True, True, False, False])
    (seg,) = builder.segments(doc, 0, 1000)
    m = builder.markers
    cons = SpanConstraint(seg.input_ids, seg.starts, seg.ends, m)
    last = [k for k in seg.ends if seg.offsets[k][1] == len("Rome and Rome")][0]
    for tok in list(m.open) + seg.input_ids[seg.starts and min(seg.starts) : last + 1]:
        cons.advance(tok)
    # a span "Rome and Rome" is open; closing it is allowed
    assert m.close[0] in cons.allowed()
    for tok in m.close:
        cons.advance(tok)
    # nothing starts after the last token but "." -> only "." can be opened, or the answer ends
    assert m.end in cons.allowed()
    (found,) = cons.spans()
    assert doc.text[seg.offsets[found.first][0] : seg.offsets[found.last][1]] == "Rome and Rome"
    mentions = repeated_mentions(doc, "Rome", 0, len(doc.text))
    assert [(s.start, s.end) for s in mentions] == [(0, 1), (2, 3)]
    assert repeated_mentions(doc, "Rom", 0, len(doc.text)) == []  # not token-aligned


def test_resolve_overlaps_is_deterministic():
    cands = [(0, 2, "LOC", 0.5), (1, 3, "PER", 0.9), (3, 4, "LOC", 0.2), (3, 4, "PER", 0.2), (5, 7, "A", 0.4), (5, 6, "B", 0.4)]
    want = [(1, 3, "PER", 0.9), (3, 4, "LOC", 0.2), (5, 7, "A", 0.4)]
    assert resolve_overlaps(cands) == want
    assert resolve_overlaps(list(reversed(cands))) == want


CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _lora_shim(model_dir, chat: bool):
    from spacy_msnr.fewshot.model import LoRACausalLMShim

    shim = LoRACausalLMShim(None)
    shim.load(str(model_dir), {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None}, "float32", None, 0)
    with torch.no_grad():  # make the LoRA path non-trivial
        for name, p in shim.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    if chat:
        shim.tokenizer.chat_template = util.CHAT_TEMPLATE
    return shim


@pytest.mark.parametrize("family,chat", [("llama", False), ("gpt2", False), ("llama", True)])
def test_batched_cached_generation_matches_single(tiny_model_dir, family, chat):
    """Every way the decoder shares work (one cache per type in the plain format; the
    instruction's cache once and one cache per segment in the chat format; batches of several
    prompts) gives what decoding each (segment, type) alone from its full prompt gives."""
    shim = _lora_shim(tiny_model_dir(family), chat)
    labels = ["LOC", "PER"]
    b = PromptBuilder(shim.tokenizer, {"LOC": "a place", "PER": "PER"})
    assert b.text_first is chat
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in ["Rome and Paris .", "A long walk to New York , then back to Rome .", "x"]]
    segs = [s for i, d in enumerate(docs) for s in b.segments(d, i, 1000)]
    weights = {n: p.detach().clone() for n, p in shim.model.named_parameters()}
    pad = shim.tokenizer.pad_token_id

    def new(seg):
        return SpanConstraint(seg.input_ids, seg.starts, seg.ends, b.markers)

    def result(cons):
        return [(c.logprobs, [(f.first, f.last) for f in c.spans()]) for c in cons]

    # reference: each (segment, type) alone, its whole prompt as the prefix, no sharing, batch 1
    alone = []
    for label in labels:
        for seg in segs:
            full = b.prefix_ids(label) + seg.input_ids + b.suffix_ids(label)
            cons = [new(seg)]
            generate(shim.model, [(full[:-1], [full[-1:]], cons)], max_new_tokens=24, batch_size=1, pad_id=pad)
            alone += result(cons)
    # the component's grouping, in batches within a job and across jobs (left-padded caches)
    for batch_size in (3, 16):
        cons = {label: [new(seg) for seg in segs] for label in labels}
        if chat:
            head = b.prefix_ids("LOC")
            assert head == b.prefix_ids("PER")
            jobs = [(head + seg.input_ids, [b.suffix_ids(label) for label in labels],
                     [cons[label][k] for label in labels]) for k, seg in enumerate(segs)]
            generate(shim.model, jobs, max_new_tokens=24, batch_size=batch_size, pad_id=pad, shared=len(head))
        else:
            jobs = [(b.prefix_ids(label), [seg.input_ids + b.suffix_ids(label) for seg in segs], cons[label])
                    for label in labels]
            generate(shim.model, jobs, max_new_tokens=24, batch_size=batch_size, pad_id=pad)
        grouped = result(cons["LOC"] + cons["PER"])
        for (lp1, sp1), (lp2, sp2) in zip(alone, grouped):
            assert sp1 == sp2
            assert lp1 == pytest.approx(lp2, abs=1e-4)
    # the first step's distribution is that of a plain full forward
    shim.model.eval()
    full = torch.tensor([b.prefix_ids("LOC") + segs[0].input_ids + b.suffix_ids("LOC")])
    with torch.no_grad():
        logits = shim.model(input_ids=full).logits[0, -1]
    allowed = sorted(new(segs[0]).allowed())
    expected = torch.log_softmax(logits[allowed], -1).max().item()
    assert alone[0][0][0] == pytest.approx(expected, abs=1e-4)
    # decoding left every weight exactly as it was
    for n, p in shim.model.named_parameters():
        assert torch.equal(p.detach(), weights[n])


def test_allowed_logits_are_the_heads_logits_at_those_ids():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=True)
    hidden = torch.randn(3, 8)
    ids, logits = allowed_logits(head, hidden, [2, 7, 49])
    assert ids.tolist() == [2, 7, 49]
    torch.testing.assert_close(logits, head(hidden)[:, [2, 7, 49]])
    wrapped = torch.nn.Sequential(head)  # not a plain Linear: the full head, then the columns
    torch.testing.assert_close(allowed_logits(wrapped, hidden, [2, 7, 49])[1], logits)


def test_chat_answers_decode_to_their_spans(tiny_tokenizer):
    """Teacher-forcing a chat-format answer (assistant turn + end-of-turn) through the span
    automaton finishes it with exactly the gold spans."""
    import copy

    tok = copy.deepcopy(tiny_tokenizer("llama"))
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    b = PromptBuilder(tok, {"LOC": "a place"})
    assert b.prompt_format == "chat"
    doc = _doc(VOCAB, ["New", "York", "and", "Rome", "and", "Paris"], [True] * 5 + [False])
    doc.ents = [Span(doc, 0, 2, "LOC"), Span(doc, 5, 6, "LOC")]
    (seg,) = b.segments(doc, 0, 1000)
    inst = b.instruction(seg, "LOC", doc.ents)
    cons = SpanConstraint(seg.input_ids, seg.starts, seg.ends, b.markers)
    cons.allowed_along(inst.answer_ids)
    assert cons.finished
    assert [doc.text[seg.offsets[s.first][0] : seg.offsets[s.last][1]] for s in cons.spans()] == ["New York", "Paris"]
    empty = SpanConstraint(seg.input_ids, seg.starts, seg.ends, b.markers)
    empty.allowed_along(b.instruction(seg, "PER", doc.ents).answer_ids)
    assert empty.finished and empty.spans() == []
