"""Review strategies rank documents by hand-computed keys; ties go by id; random is a seeded permutation."""
import math

import pytest
import spacy
from spacy.tokens import Span, SpanGroup

from spacy_msnr.review.select import auto_accepted, binary_entropy, confidence, select


def ent(score):
    return {"start_char": 0, "end_char": 1, "label": "X", "text": "x", "score": score}


#: Given out of id order, so the order a strategy returns is its own.
RECORDS = [
    {"id": "d", "text": "x", "entities": [ent(0.95), ent(None)]},  # None counts as 0.5
    {"id": "c", "text": "x", "entities": []},  # no entity: one of score `empty` (0.5)
    {"id": "b", "text": "x", "entities": [ent(0.6)]},
    {"id": "a", "text": "x", "entities": [ent(0.9), ent(0.3)]},
]


def test_least_confident_puts_the_lowest_entity_score_first():
    # keys: a 0.3, b 0.6, c 0.5, d min(0.95, 0.5) = 0.5; c and d tie and go by id
    assert select(RECORDS, "least_confident") == ["a", "c", "d", "b"]


def test_an_empty_document_ranks_by_the_empty_score():
    assert select(RECORDS, "least_confident", empty=0.0) == ["c", "a", "d", "b"]
    assert select(RECORDS, "least_confident", empty=1.0) == ["a", "d", "b", "c"]
    assert select(RECORDS, "least_confident", missing=1.0) == ["a", "c", "b", "d"]  # d's key becomes 0.95


def test_margin_puts_the_score_nearest_one_half_first():
    # keys: a min(0.4, 0.2) = 0.2, b 0.1, c 0.0, d min(0.45, 0.0) = 0.0
    assert select(RECORDS, "margin") == ["c", "d", "b", "a"]


def test_entropy_puts_the_highest_sum_of_binary_entropies_first():
    assert binary_entropy(0.5) == 1.0 and binary_entropy(0.0) == 0.0 and binary_entropy(1.0) == 0.0
    assert binary_entropy(0.9) == pytest.approx(0.4690, abs=1e-4) and binary_entropy(0.3) == pytest.approx(0.8813, abs=1e-4)
    # a 0.4690 + 0.8813 = 1.3503, d 0.2864 + 1 = 1.2864, c 1.0, b H(0.6) = 0.9710
    assert select(RECORDS, "entropy") == ["a", "d", "c", "b"]


def test_random_is_a_seeded_permutation():
    first = select(RECORDS, "random", seed=3)
    assert sorted(first) == ["a", "b", "c", "d"]
    assert select(list(reversed(RECORDS)), "random", seed=3) == first  # input order does not matter
    orders = {tuple(select(RECORDS, "random", seed=s)) for s in range(200)}
    assert len(orders) == math.factorial(4)  # every permutation occurs over enough seeds


def test_limit_ties_and_errors():
    assert select(RECORDS, "margin", limit=2) == ["c", "d"]
    tied = [{"id": i, "entities": [ent(0.7)]} for i in ("z", "m", "b")]
    assert select(tied, "least_confident") == ["b", "m", "z"]
    with pytest.raises(ValueError, match="unknown review strategy 'uncertainty'"):
        select(RECORDS, "uncertainty")
    with pytest.raises(ValueError, match="'a' occurs twice"):
        select(RECORDS + [RECORDS[3]], "margin")


def test_docs_are_ranked_by_their_scored_span_groups():
    nlp = spacy.blank("en")
    docs = []
    for i, (text, score) in enumerate([("Ann met Bob", 0.8), ("Cy saw Di", 0.2), ("nobody here", None)]):
        doc = nlp(text)
        if score is not None:
            doc.ents = [Span(doc, 0, 1, "PER")]
            doc.spans["fewshot_ner"] = SpanGroup(doc, spans=list(doc.ents), attrs={"scores": [score]})
        doc.user_data["id"] = f"doc{i}"
        docs.append(doc)
    assert select(docs, "least_confident") == ["doc1", "doc2", "doc0"]  # 0.2, empty 0.5, 0.8


def test_auto_accepted_and_confidence():
    assert auto_accepted(ent(0.9), 0.9) and not auto_accepted(ent(0.89), 0.9) and not auto_accepted(ent(None), 0.0)
    assert confidence([ent(0.7), ent(0.4)]) == 0.4 and confidence([]) == 0.5 and confidence([ent(None)], missing=0.2) == 0.2
