"""Few-NERD greedy N-way K-shot episode sampling."""
import random
from collections import Counter

import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span

from spacy_msnr.corpus.episodes import (ANNOTATED_LABELS, EPISODE_ID, greedy_sample, instructions_of, label_counts, load_docs,
                                        make_batch_by_episode, restrict, sample_episodes, source_episodes, take_episodes)


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


# politics types that are not packed several to a sentence (unlike politician), in the 100-sentence fixture
SPARSE = ["country", "election", "location", "misc", "organisation"]


@pytest.fixture(scope="module")
def politics(data_dir):
    return _read_tsv(data_dir / "crossner" / "politics" / "train.txt", 200)


def test_greedy_sample_meets_k_to_2k(politics):
    labels = ["election", "location"]
    for seed in range(5):
        idx = greedy_sample(politics, labels, 3, random.Random(seed))
        counts = Counter(e.label_ for i in idx for e in politics[i].ents if e.label_ in labels)
        assert all(3 <= counts[label] <= 6 for label in labels), counts
        assert len(set(idx)) == len(idx)
        assert all(any(e.label_ in labels for e in politics[i].ents) for i in idx)


def test_episodes_are_seeded_restricted_and_disjoint(politics):
    politics = [restrict(d, SPARSE) for d in politics]  # types sparse enough for 2 + 2 shots in 100 sentences
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


def test_restrict_records_the_annotated_types(politics):
    kept = restrict(politics[0], ["country", "politician"])
    assert kept.user_data[ANNOTATED_LABELS] == ["country", "politician"]
    assert ANNOTATED_LABELS not in politics[0].user_data  # the original is untouched
    # restricting again cannot claim a type the first restriction unmarked
    again = restrict(kept, ["country", "person"])
    assert again.user_data[ANNOTATED_LABELS] == ["country"]
    assert all(e.label_ == "country" for e in again.ents)


def test_source_episodes_come_from_one_domain_each_with_its_types(politics, data_dir):
    ai = _read_tsv(data_dir / "crossner" / "ai" / "train.txt", 200)
    domains = {"politics": politics, "ai": ai}
    episodes = list(source_episodes(domains, n_way=3, k_shot=2, n_episodes=12, seed=0))
    assert {ep.domain for ep in episodes} == {"politics", "ai"}  # both drawn in 12 (seeded)
    for i, ep in enumerate(episodes):
        assert len(ep.labels) == 3 and not ep.query
        counts = label_counts(ep.support)
        assert set(counts) <= set(ep.labels) and all(2 <= counts[label] <= 4 for label in ep.labels)
        pool = label_counts(domains[ep.domain])
        assert all(pool[label] >= 2 for label in ep.labels)
        assert all(d.user_data[EPISODE_ID] == i and d.user_data[ANNOTATED_LABELS] == ep.labels for d in ep.support)
    again = list(source_episodes(domains, n_way=3, k_shot=2, n_episodes=12, seed=0))
    assert [(ep.domain, ep.labels, [d.text for d in ep.support]) for ep in again] == \
        [(ep.domain, ep.labels, [d.text for d in ep.support]) for ep in episodes]
    # a domain with fewer types than n_way gives episodes of all its types
    sparse = [restrict(d, SPARSE) for d in politics]
    few = list(source_episodes({"p": sparse}, n_way=100, k_shot=2, n_episodes=1))
    assert few[0].labels == SPARSE == sorted(t for t, n in label_counts(sparse).items() if n >= 2)
    with pytest.raises(ValueError, match="no entity type"):
        source_episodes({"p": politics[:1]}, n_way=2, k_shot=50, n_episodes=1)
    with pytest.raises(ValueError, match="n_way and n_episodes"):
        source_episodes(domains, n_way=0, k_shot=2)
    # without n_episodes they are drawn lazily, without end, in the same seeded order
    endless = source_episodes(domains, n_way=3, k_shot=2, seed=0)
    assert [next(endless).labels for _ in range(12)] == [ep.labels for ep in episodes]


def test_batch_by_episode_keeps_episodes_apart(politics):
    episodes = list(source_episodes({"politics": politics}, n_way=2, k_shot=2, n_episodes=4, seed=1))
    docs = [d for ep in episodes for d in ep.support]
    random.Random(0).shuffle(docs)
    batches = list(make_batch_by_episode(size=2)(docs))
    assert sorted(d.text for b in batches for d in b) == sorted(d.text for d in docs)
    assert all(len(b) <= 2 and len({d.user_data[EPISODE_ID] for d in b}) == 1 for b in batches)
    sizes = Counter(d.user_data[EPISODE_ID] for d in docs)
    assert len(batches) == sum(-(-n // 2) for n in sizes.values())
    with pytest.raises(ValueError, match="size"):
        make_batch_by_episode(size=0)
    with pytest.warns(UserWarning, match="store_user_data"):
        assert len(list(make_batch_by_episode(size=100)(politics[:5]))) == 1


def test_take_episodes_stops_at_the_instruction_or_episode_budget(politics):
    episodes = list(source_episodes({"politics": politics}, n_way=3, k_shot=2, n_episodes=10, seed=0))
    sizes = [instructions_of(ep.support) for ep in episodes]
    assert all(n == 3 * len(ep.support) for n, ep in zip(sizes, episodes))  # each Doc once per episode type
    budget = sizes[0] + sizes[1] + 1  # reached only with the third episode
    assert len(take_episodes(iter(episodes), max_instructions=budget)) == 3
    assert len(take_episodes(iter(episodes), max_instructions=budget, max_episodes=2)) == 2
    assert len(take_episodes(iter(episodes), max_episodes=100)) == 10  # the source ran out first
    with pytest.raises(ValueError, match="never end"):
        take_episodes(iter(episodes))
