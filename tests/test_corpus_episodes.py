"""Few-NERD greedy N-way K-shot episode sampling."""
import random
from collections import Counter

import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span

from spacy_msnr.corpus.episodes import greedy_sample, load_docs, restrict, sample_episodes


def _read_tsv(path, limit):
    """Sentences of a token<TAB>BIO file as Docs with gold entities."""
    vocab = spacy.blank("en").vocab
    docs, words, tags = [], [], []
    for line in path.read_text(encoding="utf8").splitlines() + [""]:
        if line.strip():
            w, t = line.split("\t")
            words.append(w)
            tags.append(t)
        elif words:
            docs.append(Doc(vocab, words=words, ents=tags))
            words, tags = [], []
            if len(docs) >= limit:
                break
    return docs


@pytest.fixture(scope="module")
def politics(data_dir):
    return _read_tsv(data_dir / "crossner" / "politics" / "train.txt", 200)


def test_greedy_sample_meets_k_to_2k(politics):
    labels = ["country", "politician"]
    for seed in range(5):
        idx = greedy_sample(politics, labels, 3, random.Random(seed))
        counts = Counter(e.label_ for i in idx for e in politics[i].ents if e.label_ in labels)
        assert all(3 <= counts[label] <= 6 for label in labels), counts
        assert len(set(idx)) == len(idx)
        assert all(any(e.label_ in labels for e in politics[i].ents) for i in idx)


def test_episodes_are_seeded_restricted_and_disjoint(politics):
    a = sample_episodes(politics, None, 3, 2, 3, seed=7, query_shots=2)
    b = sample_episodes(politics, None, 3, 2, 3, seed=7, query_shots=2)
    assert [e.labels for e in a] == [e.labels for e in b]
    assert [[d.text for d in e.support] for e in a] == [[d.text for d in e.support] for e in b]
    for ep in a:
        assert len(ep.labels) == 3
        for doc in ep.support + ep.query:
            assert {e.label_ for e in doc.ents} <= set(ep.labels)
        assert not {d.text for d in ep.support} & {d.text for d in ep.query}
    c = sample_episodes(politics, None, 3, 2, 3, seed=8, query_shots=2)
    assert [[d.text for d in e.support] for e in a] != [[d.text for d in e.support] for e in c]


def test_query_docs_and_docbin(politics, tmp_path):
    path = tmp_path / "q.spacy"
    DocBin(docs=politics[:50]).to_disk(path)
    query = load_docs(path, spacy.blank("en").vocab)
    (ep,) = sample_episodes(politics, query, 2, 2, 1, seed=0)
    assert len(ep.query) == 50 and all({e.label_ for e in d.ents} <= set(ep.labels) for d in ep.query)


def test_restrict_and_errors(politics):
    doc = politics[0]
    kept = restrict(doc, ["country"])
    assert [e.text for e in kept.ents] == [e.text for e in doc.ents if e.label_ == "country"]
    assert len(doc.ents) >= len(kept.ents)
    with pytest.raises(ValueError, match="Cannot sample"):
        greedy_sample(politics[:3], ["country", "politician"], 50, random.Random(0))
    with pytest.raises(ValueError, match="entity types"):
        sample_episodes(politics[:3], None, 30, 1, 1, query_shots=1)
    with pytest.raises(ValueError, match="query_shots"):
        sample_episodes(politics, None, 2, 1, 1)
    with pytest.raises(FileNotFoundError):
        load_docs("/nonexistent.spacy", spacy.blank("en").vocab)
