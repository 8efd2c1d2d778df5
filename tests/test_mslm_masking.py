"""Masking: ELM/BLM placement and rates, replacement rules, baselines, batching."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc
from spacy.vocab import Vocab

from spacy_msnr.corpus.iob import iob_to_docs
from spacy_msnr.mslm.masking import (
    BLM, ELM, UNMASKED, MaskSpecificMasker, PMIMasker, Replacer, SpanMasker, UniformMasker, WholeWordMasker,
    check_tokenizer, encode_doc, mask_batch,
)
from spacy_msnr.mslm.terms import GoldTerms

FAMILIES = ["bert", "roberta"]


@pytest.fixture(scope="module")
def docs(data_dir):
    return iob_to_docs(data_dir / "blurb" / "NCBI-disease-IOB" / "devel.tsv", Vocab())[:60]


@pytest.fixture(scope="module", params=FAMILIES)
def encoded(request, docs, tiny_tokenizer):
    tok = tiny_tokenizer(request.param)
    gold = GoldTerms()
    return tok, [encode_doc(d, tok, gold(d), 128) for d in docs]


def test_pieces_align_to_tokens_and_terms(encoded, docs):
    tok, seqs = encoded
    for doc, seq in zip(docs, seqs):
        ent_tokens = {t.i for e in doc.ents for t in e}
        specials = set(tok.all_special_ids) - {tok.unk_token_id}
        assert all((w < 0) == (i in specials) for w, i in zip(seq.word_ids, seq.input_ids))
        # every token of the doc gets at least one piece (nothing truncated at 128 here)
        assert set(seq.word_ids[seq.word_ids >= 0].tolist()) == set(range(len(doc)))
        assert {int(w) for w, t in zip(seq.word_ids, seq.term_ids) if t >= 0} == ent_tokens
        assert seq.n_terms == len(doc.ents)


def test_elm_rate_one_masks_exactly_the_term_pieces(encoded):
    _, seqs = encoded
    rng = np.random.default_rng(0)
    masker = MaskSpecificMasker(elm_rate=1.0, blm_rate=0.0)
    assert sum(s.n_terms for s in seqs) > 20
    for seq in seqs:
        kinds = masker.sample(seq, rng)
        assert np.array_equal(kinds == ELM, seq.term_ids >= 0)
        assert not (kinds == BLM).any()


def test_zero_rates_mask_nothing(encoded):
    _, seqs = encoded
    rng = np.random.default_rng(0)
    masker = MaskSpecificMasker(elm_rate=0.0, blm_rate=0.0)
    assert all((masker.sample(s, rng) == UNMASKED).all() for s in seqs)


def test_blm_rate_observed_and_specials_never_masked(encoded):
    _, seqs = encoded
    rng = np.random.default_rng(1)
    masker = MaskSpecificMasker(elm_rate=0.0, blm_rate=0.15)
    masked = total = 0
    for _ in range(40):
        for seq in seqs:
            kinds = masker.sample(seq, rng)
            assert not kinds[seq.special].any()
            masked += int((kinds == BLM).sum())
            total += int((~seq.special).sum())
    assert total > 50_000
    assert abs(masked / total - 0.15) < 0.005


def test_elm_masks_whole_terms_with_stochastic_rounding(encoded):
    _, seqs = encoded
    seq = max((s for s in seqs if s.n_terms % 2), key=lambda s: s.n_terms)
    assert seq.n_terms >= 1
    rng = np.random.default_rng(2)
    masker = MaskSpecificMasker(elm_rate=0.5, blm_rate=0.0)
    counts = []
    for _ in range(2000):
        kinds = masker.sample(seq, rng)
        chosen = 0
        for term in range(seq.n_terms):
            in_term = seq.term_ids == term
            assert (kinds[in_term] == ELM).all() or (kinds[in_term] == UNMASKED).all()
            chosen += int((kinds[in_term] == ELM).all())
        counts.append(chosen)
    # expectation rate x spans, not floor(rate x spans)
    assert abs(np.mean(counts) - 0.5 * seq.n_terms) < 0.08
    assert set(counts) == {seq.n_terms // 2, seq.n_terms // 2 + 1}


@pytest.mark.parametrize("kwargs", [{"elm_rate": -0.1}, {"elm_rate": 1.2}, {"blm_rate": 2.0}, {"blm_rate": float("nan")}])
def test_rates_outside_unit_interval_are_rejected(kwargs):
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        MaskSpecificMasker(**kwargs)
    with pytest.raises(ValueError):
        UniformMasker(rate=1.5)


def test_unknown_replacement_is_rejected():
    with pytest.raises(ValueError, match="replacement"):
        MaskSpecificMasker(replacement="random")


def test_replacement_rules(encoded):
    tok, seqs = encoded
    replacer = Replacer(tok)
    rng = np.random.default_rng(3)
    seq = seqs[0]
    kinds = np.where(seq.special, UNMASKED, BLM).astype(np.int8)
    out = replacer(seq.input_ids, kinds, "mask", rng)
    assert (out[kinds == BLM] == tok.mask_token_id).all() and (out[seq.special] == seq.input_ids[seq.special]).all()
    masked = same = rand = 0
    for _ in range(300):
        out = replacer(seq.input_ids, kinds, "bert", rng)[kinds == BLM]
        orig = seq.input_ids[kinds == BLM]
        masked += int((out == tok.mask_token_id).sum())
        same += int((out == orig).sum())
        rand += int(((out != orig) & (out != tok.mask_token_id)).sum())
        assert not np.isin(out[out != tok.mask_token_id], tok.all_special_ids).any()
    n = masked + same + rand
    assert abs(masked / n - 0.8) < 0.02 and abs(same / n - 0.1) < 0.02 and abs(rand / n - 0.1) < 0.02


def test_mask_batch_pads_and_labels_original_ids(encoded):
    tok, seqs = encoded
    batch = mask_batch(seqs[:5], MaskSpecificMasker(1.0, 0.2), Replacer(tok), np.random.default_rng(4))
    width = max(len(s) for s in seqs[:5])
    assert tuple(batch.input_ids.shape) == (5, width)
    assert batch.attention_mask.sum(1).tolist() == [len(s) for s in seqs[:5]]
    gold = np.full((5, width), tok.pad_token_id)
    for row, s in enumerate(seqs[:5]):
        gold[row, : len(s)] = s.input_ids
    assert np.array_equal(gold.reshape(-1)[batch.positions.numpy()], batch.labels.numpy())
    assert (batch.input_ids.reshape(-1)[batch.positions] == tok.mask_token_id).all()
    terms = np.zeros((5, width), bool)
    for row, s in enumerate(seqs[:5]):
        terms[row, : len(s)] = s.term_ids >= 0
    assert np.array_equal(terms.reshape(-1)[batch.positions.numpy()], batch.is_term.numpy())
    assert ((batch.kinds == ELM) == batch.is_term).all()


def test_whole_word_and_span_maskers_mask_whole_words(encoded):
    _, seqs = encoded
    rng = np.random.default_rng(5)
    for masker in (WholeWordMasker(0.15), SpanMasker(0.15, 1, 5)):
        masked = total = 0
        for _ in range(10):
            for seq in seqs:
                kinds = masker.sample(seq, rng)
                for w in np.unique(seq.word_ids[kinds != UNMASKED]):
                    assert (kinds[seq.word_ids == w] != UNMASKED).all()
                masked += int((kinds != UNMASKED).sum())
                total += int((~seq.special).sum())
        assert 0.12 < masked / total < 0.25


def test_span_lengths_stay_within_bounds(encoded):
    _, seqs = encoded
    seq = max(seqs, key=len)
    masker = SpanMasker(rate=0.05, min_length=2, max_length=3)
    rng = np.random.default_rng(6)
    for _ in range(50):
        words = np.unique(seq.word_ids[masker.sample(seq, rng) != UNMASKED])
        runs = np.split(words, np.flatnonzero(np.diff(words) != 1) + 1)
        # a single span may be cut at the end of the sentence, and adjacent spans may touch
        assert all(len(r) >= 2 or r[-1] == seq.word_ids.max() for r in runs if len(r))


def test_pmi_masker_learns_collocations_and_masks_them_as_units(encoded):
    _, seqs = encoded
    masker = PMIMasker(rate=0.15, max_n=3, min_count=3)
    masker.initialize(seqs)
    assert masker.ngrams
    seq = next(s for s in seqs if any(e - b > 1 for b, e in masker.segment(s)))
    units = [u for u in masker.segment(seq) if u[1] - u[0] > 1]
    assert all(tuple(seq.words[b:e]) in masker.ngrams for b, e in units)
    rng = np.random.default_rng(7)
    for _ in range(50):
        kinds = masker.sample(seq, rng)
        for b, e in units:
            where = (seq.word_ids >= b) & (seq.word_ids < e)
            assert (kinds[where] != UNMASKED).all() or (kinds[where] == UNMASKED).all()


def test_pmi_scores_take_the_minimum_over_all_segmentations():
    """PMI_n of a trigram is the smallest of its three segmentations, (ab)(c), (a)(bc), (a)(b)(c)."""
    from math import log

    from spacy_msnr.mslm.masking import EncodedSeq

    # x, y and z are frequent on their own but meet only in "x y z": x y and y z have negative PMI
    sentences = ["x y z"] * 3 + ["x x x x x x"] * 4 + ["y y y y y y"] * 4 + ["z z z z z z"] * 4
    seqs = []
    for text in sentences:
        words = tuple(text.split())
        ids = np.arange(len(words))
        seqs.append(EncodedSeq(input_ids=ids, word_ids=ids, term_ids=np.full(len(words), -1), n_terms=0, words=words))
    masker = PMIMasker(max_n=3, min_count=1, top_k=1000)
    masker.initialize(seqs)
    # 81 unigrams (27 of each word), 66 bigrams (3 "x y", 3 "y z"), 51 trigrams (3 "x y z")
    p = {"x": 27 / 81, "y": 27 / 81, "z": 27 / 81, "xy": 3 / 66, "yz": 3 / 66, "xyz": 3 / 51}
    splits = [log(p["xyz"] / (p["xy"] * p["z"])), log(p["xyz"] / (p["x"] * p["yz"])), log(p["xyz"] / (p["x"] * p["y"] * p["z"]))]
    # the three-part split is the smallest, so a score over two-part splits only would be too high
    assert splits[2] < min(splits[:2])
    assert masker.ngrams[("x", "y", "z")] == pytest.approx(splits[2])
    assert ("x", "y") not in masker.ngrams and masker.ngrams[("x", "x")] == pytest.approx(log((20 / 66) / (27 / 81) ** 2))


def test_tokenizer_without_mask_token_is_rejected(tiny_tokenizer):
    with pytest.raises(ValueError, match="no mask token"):
        check_tokenizer(tiny_tokenizer("gpt2"))


def test_long_documents_are_windowed_not_truncated(tiny_tokenizer, data_dir):
    from spacy.vocab import Vocab

    from spacy_msnr.corpus.iob import iob_to_docs
    from spacy_msnr.mslm.masking import split_to_fit

    tok = tiny_tokenizer("bert")
    doc = iob_to_docs(data_dir / "blurb/NCBI-disease-IOB/train.tsv", Vocab(), n_sents=12)[0]
    total = len(tok(doc.text, add_special_tokens=False)["input_ids"])
    assert total > 64
    windows = split_to_fit(doc, tok, 64)
    assert len(windows) >= 2
    assert all(len(tok(w.text)["input_ids"]) <= 64 for w in windows)
    assert [t.text for w in windows for t in w] == [t.text for t in doc]
    assert [e.text for w in windows for e in w.ents] == [e.text for e in doc.ents]
    assert split_to_fit(windows[0], tok, 512) == [windows[0]]


def _pieces(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_an_entity_ending_on_a_long_token_past_the_window_start_is_an_error(tiny_tokenizer):
    """The window that restarts at the entity must still be checked: here the entity needs more
    wordpieces than fit, which used to give an over-long window (then cut by encode_doc)."""
    from spacy.tokens import Span

    from spacy_msnr.mslm.masking import split_to_fit

    tok = tiny_tokenizer("bert")
    words = ["the", "menstruating", "basophil", "the"]
    doc = Doc(Vocab(), words=words)
    doc.ents = [Span(doc, 1, 3, label="Disease")]
    entity = _pieces(tok, "menstruating basophil")
    assert entity > _pieces(tok, "menstruating") > 1 and _pieces(tok, "the") == 1
    budget = entity - 1  # "the menstruating" fits, the entity does not
    with pytest.raises(ValueError, match="entity 'menstruating basophil' is longer than max_length"):
        split_to_fit(doc, tok, budget + 2)


def test_encode_doc_never_truncates(tiny_tokenizer, docs):
    tok = tiny_tokenizer("bert")
    doc = max(docs, key=len)
    n = len(tok(doc.text)["input_ids"])
    assert len(encode_doc(doc, tok, [], n)) == n
    with pytest.raises(ValueError, match=f"has {n} wordpieces, more than max_length={n - 1}; split it with split_to_fit"):
        encode_doc(doc, tok, [], n - 1)


_WORDS = ["the", "of", "BRCA1", "menstruating", "basophil", "1,25(OH)2D3,", "Tax-protein.", "cancer", "(Z)", "-", "a", "transactivates"]


@given(
    tokens=st.lists(st.tuples(st.sampled_from(_WORDS), st.booleans(), st.sampled_from("OBI")), min_size=1, max_size=30),
    max_length=st.integers(min_value=6, max_value=40),
)
@settings(max_examples=150, deadline=None)
@pytest.mark.parametrize("family", FAMILIES)
def test_windows_never_exceed_max_length_and_lose_nothing(family, tiny_tokenizer, tokens, max_length):
    """Random docs (multi-piece tokens, tokens glued without spaces, entities anywhere): every
    window fits in max_length as the model tokenizes it, and the windows give back the doc."""
    from spacy_msnr.mslm.masking import split_to_fit

    tok = tiny_tokenizer(family)
    words, spaces, iob = zip(*tokens)
    ents = ["O" if tag == "O" else f"{'B' if tag == 'B' or i == 0 or iob[i - 1] == 'O' else 'I'}-Disease" for i, tag in enumerate(iob)]
    doc = Doc(Vocab(), words=list(words), spaces=list(spaces), ents=ents)
    try:
        windows = split_to_fit(doc, tok, max_length)
    except ValueError as err:
        # only when an entity or a single token cannot fit on its own
        assert "longer than max_length" in str(err)
        units = [*doc.ents, *(doc[i:i + 1] for i in range(len(doc)))]
        assert any(len(tok(span.as_doc().text)["input_ids"]) > max_length for span in units)
        return
    assert [t.text for w in windows for t in w] == [t.text for t in doc]
    assert [(e.text, e.label_) for w in windows for e in w.ents] == [(e.text, e.label_) for e in doc.ents]
    for window in windows:
        n = len(tok(window.text)["input_ids"])
        assert n <= max_length
        seq = encode_doc(window, tok, [(e.start, e.end) for e in window.ents], max_length)
        assert len(seq) == n
