"""N-way K-shot episodes over Docs with gold entities, sampled greedily as in Few-NERD.

Greedy sampling (Ding et al., 2021, "Few-NERD", Algorithm 1): shuffle the sentences; take a
sentence if it mentions at least one of the episode's N types and adding it keeps every type at
most 2K mentions; stop once every type has at least K. Mentions of other types are removed from
the sampled Docs (they are "O" within the episode).
"""
import random
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Union

from spacy.tokens import Doc, DocBin
from spacy.util import registry
from spacy.vocab import Vocab


#: `Doc.user_data` key of a Doc annotated for some entity types only (an episode's): the list of
#: those types. `fewshot_ner` trains on such a Doc for these types alone: the other types' mentions
#: are not marked in it, so answering "none" for them would teach a wrong answer.
ANNOTATED_LABELS = "msnr_annotated_labels"
#: `Doc.user_data` key of the source episode a Doc was sampled for (`batch_by_episode` groups by it).
EPISODE_ID = "msnr_episode"


@dataclass
class Episode:
    """One few-shot task: its entity types, a support set to train on and a query set to score."""

    labels: List[str]
    support: List[Doc]
    query: List[Doc]
    domain: str = ""


def load_docs(path: Union[str, Path], vocab: Vocab) -> List[Doc]:
    """The Docs of a DocBin file (.spacy)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No DocBin at {path}")
    return list(DocBin().from_disk(path).get_docs(vocab))


def restrict(doc: Doc, labels: Iterable[str]) -> Doc:
    """A copy of `doc` whose entities are only those with a label in `labels`, which it records
    as its annotated types (`user_data[ANNOTATED_LABELS]`; of a Doc restricted before, only those
    of its own annotated types: the others are not marked in it)."""
    keep = set(labels)
    if doc.user_data.get(ANNOTATED_LABELS) is not None:
        keep &= set(doc.user_data[ANNOTATED_LABELS])
    out = doc.copy()
    out.set_ents([e for e in doc.ents if e.label_ in keep], default="outside")
    out.user_data[ANNOTATED_LABELS] = sorted(keep)
    return out


def label_counts(docs: Iterable[Doc]) -> Counter:
    return Counter(e.label_ for doc in docs for e in doc.ents)


def greedy_sample(docs: Sequence[Doc], labels: Sequence[str], k: int, rng: random.Random,
                  exclude: Optional[Set[int]] = None) -> List[int]:
    """Indices of a Few-NERD greedy K-shot sample of `docs` for `labels` (each type K..2K
    mentions). Raises ValueError when some type cannot reach K mentions."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    wanted = set(labels)
    counts = Counter({label: 0 for label in labels})
    order = [i for i in range(len(docs)) if not exclude or i not in exclude]
    rng.shuffle(order)
    chosen: List[int] = []
    for i in order:
        mine = Counter(e.label_ for e in docs[i].ents if e.label_ in wanted)
        if not mine:
            continue
        if any(counts[label] + n > 2 * k for label, n in mine.items()):
            continue
        chosen.append(i)
        counts.update(mine)
        if all(counts[label] >= k for label in labels):
            return chosen
    short = {label: counts[label] for label in labels if counts[label] < k}
    raise ValueError(f"Cannot sample {k} mentions of every type; reached only {short} (of {len(order)} sentences).")


def _sample_types(docs: Sequence[Doc], pool: Sequence[str], n_way: int, k_shot: int, rng: random.Random,
                  tries: int = 20):
    """Draw `n_way` types and a support sample for them; a draw whose types cannot all reach
    `k_shot` under the 2K cap is redrawn (up to `tries` times)."""
    error: Optional[ValueError] = None
    for _ in range(tries):
        types = sorted(rng.sample(list(pool), n_way))
        try:
            return types, greedy_sample(docs, types, k_shot, rng)
        except ValueError as err:
            error = err
    raise ValueError(f"No {n_way}-way {k_shot}-shot support set found in {tries} draws: {error}")


def sample_episodes(
    support_docs: Sequence[Doc],
    query_docs: Optional[Sequence[Doc]],
    n_way: int,
    k_shot: int,
    n_episodes: int,
    seed: int = 0,
    query_shots: Optional[int] = None,
    labels: Optional[Sequence[str]] = None,
) -> List[Episode]:
    """`n_episodes` seeded episodes of `n_way` types. The support set is a greedy `k_shot`
    sample of `support_docs`. The query set is a greedy `query_shots` sample of `query_docs`
    (of the support docs not used, when `query_docs` is None), or, with `query_shots` None, all of
    `query_docs` restricted to the episode's types. Types are drawn from `labels` (default: every
    type with at least `k_shot` mentions in the support docs); a draw of types that cannot be
    sampled is redrawn."""
    if n_way < 1 or n_episodes < 1:
        raise ValueError("n_way and n_episodes must be >= 1.")
    counts = label_counts(support_docs)
    pool = sorted(labels) if labels else sorted(label for label, n in counts.items() if n >= k_shot)
    if len(pool) < n_way:
        raise ValueError(f"{n_way}-way episodes need {n_way} entity types with >= {k_shot} mentions; found {pool}.")
    if query_docs is None and query_shots is None:
        raise ValueError("Without query docs, query_shots must say how many mentions to sample for the query set.")
    rng = random.Random(seed)
    episodes = []
    for _ in range(n_episodes):
        types, support_idx = _sample_types(support_docs, pool, n_way, k_shot, rng)
        support = [restrict(support_docs[i], types) for i in support_idx]
        if query_shots is None:
            query = [restrict(doc, types) for doc in query_docs]
        elif query_docs is None:
            idx = greedy_sample(support_docs, types, query_shots, rng, exclude=set(support_idx))
            query = [restrict(support_docs[i], types) for i in idx]
        else:
            idx = greedy_sample(query_docs, types, query_shots, rng)
            query = [restrict(query_docs[i], types) for i in idx]
        if not any(doc.ents for doc in query):
            warnings.warn(f"An episode's query set has no mention of {types}.")
        episodes.append(Episode(types, support, query))
    return episodes


def source_episodes(domains: Dict[str, Sequence[Doc]], n_way: int, k_shot: int, n_episodes: Optional[int] = None,
                    seed: int = 0) -> Iterator[Episode]:
    """Support sets for source training, as CLLMFS trains, drawn lazily (`n_episodes`, or without
    end when None): each from one domain drawn at random (seeded), `n_way` of its types (fewer when
    the domain has fewer with `k_shot` mentions, e.g. conll2003's four) in a greedy `k_shot` sample.
    Every support Doc is restricted to its episode's types and carries the episode's index
    (`user_data[EPISODE_ID]`); no query set."""
    if not domains:
        raise ValueError("source_episodes needs at least one source domain.")
    if n_way < 1 or (n_episodes is not None and n_episodes < 1):
        raise ValueError(f"n_way and n_episodes must be >= 1, got {n_way} and {n_episodes}.")
    names = sorted(domains)
    pools = {}
    for name in names:
        pool = sorted(label for label, n in label_counts(domains[name]).items() if n >= k_shot)
        if not pool:
            raise ValueError(f"Source domain {name!r} has no entity type with >= {k_shot} mentions.")
        pools[name] = pool
    return _draw_source_episodes(domains, names, pools, n_way, k_shot, n_episodes, random.Random(seed))


def _draw_source_episodes(domains, names, pools, n_way, k_shot, n_episodes, rng) -> Iterator[Episode]:
    i = 0
    while n_episodes is None or i < n_episodes:
        name = rng.choice(names)
        types, idx = _sample_types(domains[name], pools[name], min(n_way, len(pools[name])), k_shot, rng)
        support = [restrict(domains[name][j], types) for j in idx]
        for doc in support:
            doc.user_data[EPISODE_ID] = i
        yield Episode(types, support, [], domain=name)
        i += 1


def instructions_of(docs: Iterable[Doc]) -> int:
    """How many (sentence, type) instructions `fewshot_ner` trains on for these Docs of episodes:
    each Doc once per annotated type (the source-training budget's unit)."""
    return sum(len(doc.user_data.get(ANNOTATED_LABELS) or ()) for doc in docs)


def take_episodes(episodes: Iterable[Episode], max_instructions: int = 0, max_episodes: int = 0) -> List[Episode]:
    """Whole episodes from `episodes` until their support sets hold `max_instructions`
    instructions or `max_episodes` episodes (whichever comes first; 0: no such limit)."""
    if max_instructions <= 0 and max_episodes <= 0:
        raise ValueError("give max_instructions > 0 or max_episodes > 0, or the episodes never end")
    taken: List[Episode] = []
    count = 0
    for episode in episodes:
        taken.append(episode)
        count += instructions_of(episode.support)
        if (max_instructions > 0 and count >= max_instructions) or (max_episodes > 0 and len(taken) >= max_episodes):
            break
    return taken


@registry.batchers("spacy_msnr.batch_by_episode.v1")
def make_batch_by_episode(size: int = 8) -> Callable[[Iterable[Any]], Iterator[List[Any]]]:
    """Batches of at most `size` examples (Examples or Docs) of one source episode each
    (`user_data[EPISODE_ID]` of the reference Doc), episodes in the order they first appear (spaCy
    shuffles the examples every epoch), so that every update contrasts one episode's types.
    Examples of no episode form batches of their own. It reads a whole epoch before the first
    batch (spaCy's `max_epochs` >= 0), and the DocBin must keep user_data (`store_user_data=True`)."""
    if size < 1:
        raise ValueError(f"spacy_msnr.batch_by_episode.v1: size must be >= 1, got {size}")

    def batch(items: Iterable[Any]) -> Iterator[List[Any]]:
        groups: Dict[Any, List[Any]] = {}
        for item in items:
            doc = getattr(item, "reference", item)
            groups.setdefault(doc.user_data.get(EPISODE_ID), []).append(item)
        if list(groups) == [None]:
            warnings.warn("spacy_msnr.batch_by_episode.v1: no Doc has an episode id (user_data "
                          f"{EPISODE_ID!r}; was the DocBin saved with store_user_data=True?): one group of all")
        for group in groups.values():
            for start in range(0, len(group), size):
                yield group[start:start + size]

    return batch
