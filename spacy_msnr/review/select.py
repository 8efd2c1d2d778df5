"""Which documents a person reviews first: a strategy ranks documents by their entity scores.

A document is a record (`{"id", "text", "entities": [{start_char, end_char, label, text,
score}]}`, as `annotate` writes them) or a Doc (its `doc.ents`, scored by any span group with
`attrs["scores"]`, its id `doc.user_data["id"]` or its position). Scores are the pipeline's
probabilities that an entity is right. Two rules make every document rankable:

- an entity with `score=None` (a pipeline without scores) counts as `missing` (default 0.5: as
  uncertain as a binary score can be);
- a document with no entity counts as one entity scored `empty` (default 0.5: the pipeline found
  nothing, which may be a miss, so it is uncertain).

Each strategy turns a document's scores into a key; the smallest key is reviewed first and equal
keys go in id order, so the same input always gives the same queue.
"""
import math
import random
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc

from ..annotate.records import entity_records

Record = Mapping[str, Any]
#: A strategy: a document's scores (never empty) -> its key; smaller keys are reviewed first.
Strategy = Callable[[Sequence[float]], float]


def binary_entropy(p: float) -> float:
    """H(p) in bits: 1.0 at p = 0.5, 0.0 at p = 0 or 1."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1.0 - p) * math.log2(1.0 - p))


#: The strategies by name. `random` is not here: it needs a seed, not scores (see `select`).
STRATEGIES: Dict[str, Strategy] = {
    "least_confident": lambda scores: min(scores),  # the lowest entity score first
    "margin": lambda scores: min(abs(s - 0.5) for s in scores),  # the score nearest 0.5 first
    "entropy": lambda scores: -sum(binary_entropy(s) for s in scores),  # the highest total entropy first
}
NAMES = (*STRATEGIES, "random")


def document(item: Union[Record, Doc], position: int = 0) -> Tuple[str, List[Dict[str, Any]]]:
    """(id, entity records) of a record or a Doc (a Doc without `user_data["id"]` is named by its position)."""
    if isinstance(item, Doc):
        return str(item.user_data.get("id", position)), entity_records(item)
    return str(item["id"]), list(item.get("entities") or [])


def scores_of(entities: Iterable[Mapping[str, Any]], *, empty: float = 0.5, missing: float = 0.5) -> List[float]:
    """The entities' scores with None as `missing`; `[empty]` for a document without entities."""
    scores = [missing if e.get("score") is None else float(e["score"]) for e in entities]
    return scores or [empty]


def confidence(entities: Iterable[Mapping[str, Any]], *, empty: float = 0.5, missing: float = 0.5) -> float:
    """A document's confidence: its least confident entity's score (the rules above apply)."""
    return min(scores_of(entities, empty=empty, missing=missing))


def auto_accepted(entity: Mapping[str, Any], threshold: float) -> bool:
    """Whether an entity is confident enough to need no review: a score at or above `threshold`
    (an entity without a score never is)."""
    score = entity.get("score")
    return score is not None and float(score) >= threshold


def select(
    items: Iterable[Union[Record, Doc]],
    strategy: str = "least_confident",
    *,
    limit: Optional[int] = None,
    empty: float = 0.5,
    missing: float = 0.5,
    seed: int = 0,
) -> List[str]:
    """The ids of `items` in review order by `strategy` (one of `NAMES`), the first `limit` of
    them (all when None). `random` is a seeded shuffle of the ids (a control for the others).
    Raises ValueError for an unknown strategy or an id that occurs twice."""
    if strategy not in NAMES:
        raise ValueError(f"unknown review strategy {strategy!r}; expected one of {', '.join(NAMES)}")
    keyed: List[Tuple[float, str]] = []
    seen = set()
    for position, item in enumerate(items):
        doc_id, entities = document(item, position)
        if doc_id in seen:
            raise ValueError(f"document id {doc_id!r} occurs twice; ids must be unique to name a review task")
        seen.add(doc_id)
        key = 0.0 if strategy == "random" else STRATEGIES[strategy](scores_of(entities, empty=empty, missing=missing))
        keyed.append((key, doc_id))
    if strategy == "random":
        ids = sorted(doc_id for _, doc_id in keyed)
        random.Random(seed).shuffle(ids)
    else:
        ids = [doc_id for _, doc_id in sorted(keyed)]
    return ids if limit is None else ids[:limit]
