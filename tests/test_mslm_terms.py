"""DS-term sources: gold spans, lexicon matches, frequency contrast, union."""
from collections import Counter

import pytest
from spacy.tokens import Doc
from spacy.vocab import Vocab

from spacy_msnr.corpus.iob import iob_to_docs
from spacy_msnr.mslm.terms import CombinedTerms, GoldTerms, LexiconTerms, contrast_scores, propose_terms, read_lexicon
from spacy_msnr.registry import terms as terms_registry


@pytest.fixture(scope="module")
def docs(data_dir):
    return iob_to_docs(data_dir / "blurb" / "NCBI-disease-IOB" / "devel.tsv", Vocab())[:30]


def test_gold_terms_are_the_entity_spans(docs):
    gold = terms_registry.get("spacy_msnr.gold_terms.v1")()
    assert gold.from_gold
    for doc in docs:
        assert gold(doc) == [(e.start, e.end) for e in doc.ents]


def test_lexicon_matches_case_insensitively_on_whole_tokens(tmp_path):
    path = tmp_path / "terms.txt"
    path.write_text("# disease names\nbreast cancer\nBRCA1\n\nca\n", encoding="utf8")
    assert read_lexicon(path) == ["breast cancer", "BRCA1", "ca"]
    source = terms_registry.get("spacy_msnr.lexicon_terms.v1")(path)
    doc = Doc(Vocab(), words=["Inherited", "Breast", "Cancer", "and", "brca1", "-", "linked", "cases", "."])
    # "ca" inside "cases" or "Cancer" is not a whole-word match
    assert source(doc) == [(1, 3), (4, 5)]


def test_lexicon_match_inside_a_token_expands_to_the_token():
    doc = Doc(Vocab(), words=["anti-BRCA1", "antibody"], spaces=[True, False])
    assert LexiconTerms(["brca1"])(doc) == [(0, 1)]


def test_empty_lexicon_is_an_error(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n# nothing\n", encoding="utf8")
    with pytest.raises(ValueError, match="empty"):
        terms_registry.get("spacy_msnr.lexicon_terms.v1")(path)
    with pytest.raises(FileNotFoundError):
        read_lexicon(tmp_path / "missing.txt")


def test_contrast_scores_rank_domain_words_first():
    domain = Counter({"the": 100, "tumour": 20, "of": 50})
    background = Counter({"the": 1000, "of": 500, "tumour": 1})
    ranked = [w for w, _ in contrast_scores(domain, background)]
    assert ranked[0] == "tumour" and set(ranked[1:]) == {"the", "of"}


def test_frequency_contrast_proposes_biomedical_terms(data_dir):
    domain = data_dir / "pubmed" / "abstracts.jsonl"  # 60 abstracts, about 12,000 words
    background = data_dir / "crossner" / "conll2003" / "train.txt"  # 700 Reuters sentences
    proposed = propose_terms(domain, background, top_k=100, min_count=5)
    assert len(proposed) == 100
    assert not {"the", "and", "of", "with", "was"} & set(proposed)
    assert {"cells", "expression", "binding", "transcription"} & set(proposed)


def test_combined_terms_keep_longest_non_overlapping(docs):
    doc = Doc(Vocab(), words=["acute", "myeloid", "leukemia", "cells"])
    combined = CombinedTerms([LexiconTerms(["myeloid leukemia"]), LexiconTerms(["acute myeloid leukemia", "cells"])])
    assert combined(doc) == [(0, 3), (3, 4)]
    assert CombinedTerms([GoldTerms(), LexiconTerms(["x"])]).from_gold


def test_corpus_lexicon_terms_find_gold_texts_in_unlabeled_docs(tmp_path, docs):
    from spacy.tokens import DocBin

    path = tmp_path / "train.spacy"
    DocBin(docs=docs).to_disk(path)
    source = terms_registry.get("spacy_msnr.corpus_lexicon_terms.v1")(path)
    assert source.from_gold
    labeled = next(d for d in docs if d.ents)
    assert set(GoldTerms()(labeled)) <= set(source(labeled))
    name = next(e.text for d in docs for e in d.ents if len(e) == 1 and len(e.text) >= 3)
    unlabeled = Doc(Vocab(), words=["Patients", "with", name.upper(), "were", "seen", "."])
    assert not unlabeled.ents and source(unlabeled) == [(2, 3)]
    # a corpus without entities leaves the gold spans (none) alone
    empty = tmp_path / "empty.spacy"
    DocBin(docs=[Doc(Vocab(), words=["no", "entities"])]).to_disk(empty)
    assert isinstance(terms_registry.get("spacy_msnr.corpus_lexicon_terms.v1")(empty), GoldTerms)
