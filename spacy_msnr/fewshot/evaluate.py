"""The few-shot evaluation loop: a fresh pipeline per N-way K-shot episode, trained on its support
set and scored on its query set; the `fewshot-eval` command and the benchmarks call it.

One update loop (`update_loop`, over `passes` of minibatches) and one scoring (`score_query`)
serve both: `train_and_score` builds the episode's pipeline from a config and trains it with the
config's optimizer on the support set in corpus order; the benchmarks build theirs in code
(`fewshot_pipeline`) and train with `train_support` (a fresh Adam at their learning rate, the
support set reshuffled every pass), recording times, CPU seconds and peak RSS (`PeakRSS`).

Progress goes to the `spacy_msnr.fewshot.evaluate` logger (the command shows it; an embedding
program routes or silences it like any other logger)."""
import logging
import random
import statistics
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import spacy
from spacy.language import Language
from spacy.scorer import get_ner_prf
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config, minibatch
from thinc.api import Adam, Config, Optimizer

from ..corpus.episodes import Episode, label_counts, sample_episodes

logger = logging.getLogger(__name__)
T = TypeVar("T")
#: fewshot_ner `demonstrations` enough to show a whole support set as solved examples (an episode has fewer).
MAX_DEMONSTRATIONS = 1000


def build_pipeline(config: Config, labels: List[str]) -> Language:
    """A fresh pipeline from `config`, with each entity-recognising component told the episode's
    labels where it takes a `labels` setting (fewshot_ner); others collect them from the data."""
    config = Config(config).copy()
    for name, comp in config["components"].items():
        if comp.get("factory") == "fewshot_ner":
            given = comp.get("labels") or {}
            comp["labels"] = {label: given.get(label) or label for label in labels} if isinstance(given, dict) else labels
    return load_model_from_config(config, auto_fill=True, validate=True)


def sourced_components(config: Config) -> List[str]:
    """Components the config takes, trained, from another pipeline (`source = ...`)."""
    return [name for name, comp in config["components"].items() if comp.get("source")]


def prepare_pipeline(config: Config, episode: Episode) -> Tuple[Language, List[Example], Optimizer]:
    """The episode's pipeline, initialized on its support set (sourced components keep their
    weights and get the episode's types), its support examples and the optimizer."""
    nlp = build_pipeline(config, episode.labels)
    support = [Example(nlp.make_doc(d.text), d) for d in episode.support]
    sourced = sourced_components(config)
    for name in sourced:
        pipe = nlp.get_pipe(name)
        for label in episode.labels:
            try:
                pipe.add_label(label)
            except (AttributeError, NotImplementedError):  # a component without labels (tok2vec)
                break
    with nlp.select_pipes(disable=sourced):
        sgd = nlp.initialize(lambda: support)
    if sourced:
        sgd = nlp.resume_training()
    return nlp, support, sgd


def train_and_score(
    config: Config, episode: Episode, steps: int, batch_size: int = 8, seed: int = 0,
    optimizer: Optional[Optimizer] = None,
) -> Dict[str, Any]:
    """Train a fresh pipeline on the episode's support set for `steps` updates and score its query
    set; returns micro P/R/F1, per-type P/R/F1, training seconds and query sentences/second.

    Components the config sources from a trained pipeline (e.g. spaCy's `ner` trained on a source
    domain) keep their weights: they are given the episode's types (`add_label`) and trained on,
    not initialized afresh. Predictions are limited to the episode's types before scoring, as a
    user who wants those types would limit them (a sourced `ner` still knows its source types).
    The support set is taken in its order every pass, with the config's optimizer (or
    `optimizer`) and no dropout.
    """
    spacy.util.fix_random_seed(seed)
    nlp, support, sgd = prepare_pipeline(config, episode)
    trained = update_loop(nlp, passes(support, batch_size), steps, sgd if optimizer is None else optimizer)
    scored = score_query(nlp, episode.query, episode.labels)
    return {
        "labels": episode.labels, "support_sentences": len(support), "query_sentences": scored.sentences,
        "p": scored.p, "r": scored.r, "f": scored.f, "per_type": scored.per_type,
        "train_seconds": trained.seconds,
        "sentences_per_second": scored.sentences / scored.predict_seconds if scored.predict_seconds else 0.0,
    }


def passes(examples: Sequence[T], batch_size: int,
           order: Optional[Callable[[List[T]], List[T]]] = None) -> Iterator[List[T]]:
    """Minibatches of `batch_size` of `examples`, pass after pass without end. `order`, if given,
    is called at the start of every pass with the order of the pass before (`examples` on the
    first) and returns this pass's order; without it every pass takes `examples` as they are."""
    current = list(examples)
    if not current:
        raise ValueError("No examples to train on.")
    while True:
        if order is not None:
            current = order(current)
        yield from minibatch(current, size=batch_size)


def reshuffled(seed: int, from_start: bool = False) -> Callable[[List[T]], List[T]]:
    """An `order` for `passes`: every pass a shuffle (`random.Random(seed)`, one for all passes)
    of the pass before, or, `from_start`, of the first pass's order."""
    rng, first = random.Random(seed), []

    def order(current: List[T]) -> List[T]:
        if not first:
            first.append(current)
        base = first[0] if from_start else current
        return rng.sample(base, len(base))

    return order


@dataclass
class Trained:
    """What `update_loop` did: its updates, their wall and CPU seconds, the last update's losses."""

    updates: int
    seconds: float
    cpu_seconds: float
    losses: Dict[str, float]

    def record(self) -> Dict[str, Any]:
        """As the benchmarks record a training: train_s, s_per_update, cpu_s_per_update, last_losses (4 decimals)."""
        n = self.updates
        return {"train_s": self.seconds, "s_per_update": self.seconds / n if n else 0.0,
                "cpu_s_per_update": self.cpu_seconds / n if n else 0.0,
                "last_losses": {k: round(v, 4) for k, v in self.losses.items()}}


def update_loop(nlp: Language, batches: Iterable[List[Example]], steps: int, sgd: Optimizer, drop: float = 0.0,
                log_every: Optional[int] = None) -> Trained:
    """`steps` updates of `nlp`, one per batch of `batches` (e.g. `passes`; no batch is drawn after
    the last update), with optimizer `sgd` and dropout `drop`. Each update's losses go to the logger
    every `log_every` updates (0: never; None: every update when `steps` <= 20, else every 10th)."""
    start, cpu, step, losses = time.perf_counter(), time.process_time(), 0, {}
    for batch in batches if steps > 0 else ():
        losses = nlp.update(batch, sgd=sgd, drop=drop)
        step += 1
        if (steps <= 20 or step % 10 == 0) if log_every is None else (log_every and step % log_every == 0):
            logger.info("  update %d/%d (%.0fs): %s", step, steps, time.perf_counter() - start,
                        ", ".join(f"{k} {v:.3f}" for k, v in losses.items()))
        if step >= steps:
            break
    return Trained(step, time.perf_counter() - start, time.process_time() - cpu, losses)


@dataclass
class Scored:
    """What `score_query` found: micro and per-type P/R/F1 over the query sentences, the seconds
    of predicting them, the wall and CPU seconds of predicting and scoring, and the peak RSS (MiB)
    meanwhile (0.0 unless asked for)."""

    p: float
    r: float
    f: float
    per_type: Dict[str, Dict[str, float]]
    sentences: int
    predict_seconds: float
    seconds: float
    cpu_seconds: float
    peak_mib: float = 0.0

    def record(self) -> Dict[str, Any]:
        """As the benchmarks record a query set's scoring: f, p, r, score_s, cpu_sents_per_s, sents_per_s, peak_mib."""
        return {"f": self.f, "p": self.p, "r": self.r, "score_s": self.seconds,
                "cpu_sents_per_s": self.sentences / self.cpu_seconds, "sents_per_s": self.sentences / self.seconds,
                "peak_mib": self.peak_mib}


def score_query(nlp: Language, query: Sequence[Doc], labels: Optional[Sequence[str]] = None,
                peak_rss: bool = False) -> Scored:
    """Predict the texts of the gold Docs `query` and score the entities (`get_ner_prf`, as spaCy's
    `ner` scorer), predictions limited to `labels` when given; `peak_rss`: sample the peak RSS
    of the process meanwhile (`PeakRSS`)."""
    with PeakRSS() if peak_rss else nullcontext() as mem:
        start, cpu = time.perf_counter(), time.process_time()
        predicted = list(nlp.pipe(d.text for d in query))
        predict_s = time.perf_counter() - start
        if labels is not None:
            keep = set(labels)
            for doc in predicted:
                doc.ents = [ent for ent in doc.ents if ent.label_ in keep]
        scores = get_ner_prf([Example(doc, gold) for doc, gold in zip(predicted, query)])
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    per_type = {k: {"p": v["p"], "r": v["r"], "f": v["f"]} for k, v in (scores.get("ents_per_type") or {}).items()}
    return Scored(scores["ents_p"], scores["ents_r"], scores["ents_f"], per_type, len(predicted), predict_s, seconds, cpu,
                  mem.peak if mem is not None else 0.0)


def rss_mib() -> float:
    """This process's resident memory in MiB (from /proc; 0.0 where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PeakRSS:
    """Peak resident memory (MiB) of this process while the block runs, sampled every 5 ms."""

    def __enter__(self) -> "PeakRSS":
        self.peak, self._stop = rss_mib(), False
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.005)

    def __exit__(self, *exc) -> None:
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def fewshot_pipeline(labels: Union[Sequence[str], Dict[str, str]], base_model: str, *, lora_r: int = 16,
                     dtype: str = "fp32", max_new_tokens: int = 48, train_batch_size: int = 8, negative_rate: float = 1.0,
                     demonstrations: int = 0, contrastive: Optional[Dict[str, Any]] = None,
                     adversarial: Optional[Dict[str, float]] = None) -> Language:
    """A blank English pipeline with `fewshot_ner` for `labels` (a list, or label -> description)
    on `base_model`, as the benchmarks build it: LoRA rank `lora_r` (alpha 2 x rank), decoding
    batches of 32, and `contrastive` / `adversarial` settings where given."""
    model: Dict[str, Any] = {"base_model": base_model, "lora": {"r": lora_r, "alpha": 2 * lora_r}, "dtype": dtype}
    if contrastive is not None:
        model["contrastive"] = contrastive
    if adversarial is not None:
        model["adversarial"] = adversarial
    nlp = spacy.blank("en")
    nlp.add_pipe("fewshot_ner", config={
        "labels": dict(labels) if isinstance(labels, dict) else {label: label for label in labels},
        "max_new_tokens": max_new_tokens, "batch_size": 32, "train_batch_size": train_batch_size,
        "negative_rate": negative_rate, "model": model, "demonstrations": demonstrations,
    })
    return nlp


def set_prompt_format(nlp: Language, prompt_format: str) -> None:
    """Build the fewshot_ner prompts in `prompt_format` (from the next prompt on)."""
    if "fewshot_ner" in nlp.pipe_names:
        pipe = nlp.get_pipe("fewshot_ner")
        pipe.cfg["prompt_format"] = prompt_format
        pipe._builder = None


def train_support(nlp: Language, examples: List[Example], steps: int, lr: float, batch_size: int, seed: int,
                  prompt_format: str = "auto", log_every: int = 0,
                  batches: Optional[Iterable[List[Example]]] = None) -> Trained:
    """The benchmarks' training of a pipeline built in code: every random generator seeded with
    `seed`, `nlp` initialized on `examples`, fewshot_ner's prompts in `prompt_format`, then
    `steps` updates with a fresh thinc `Adam(lr)` (thinc's defaults: no L2, gradient clipping at
    1.0) and no dropout, on `batch_size` examples each, reshuffled every pass (`reshuffled(seed)`),
    or on `batches` in their order when given."""
    spacy.util.fix_random_seed(seed)
    nlp.initialize(lambda: examples)
    set_prompt_format(nlp, prompt_format)
    if batches is None:
        batches = passes(examples, batch_size, reshuffled(seed))
    return update_loop(nlp, batches, steps, Adam(lr), log_every=log_every)


def fixed_query_episodes(train_docs: Sequence[Doc], test_docs: Sequence[Doc], n_way: int, k_shot: int,
                         n_episodes: int, query_limit: Optional[int], seed: int) -> List[Episode]:
    """Episodes as the CrossNER benchmarks draw them: `n_way` types (all, when fewer) of those
    with at least 2K mentions in `train_docs`, a greedy K-shot support set from `train_docs`, and
    for every episode the same query docs, a fixed seeded sample of `query_limit` of `test_docs`
    (`query_sample`), restricted to the episode's types."""
    query = query_sample(test_docs, query_limit, seed)
    types = sorted(t for t, n in label_counts(train_docs).items() if n >= 2 * k_shot)
    return sample_episodes(train_docs, query, min(n_way, len(types)), k_shot, n_episodes, seed=seed, labels=types)


def query_sample(docs: List, limit: Optional[int], seed: int) -> List:
    """A fixed seeded sample of `limit` docs (all of them when None), in corpus order."""
    if limit is None or limit >= len(docs):
        return list(docs)
    if limit < 1:
        raise ValueError(f"--query-limit must be >= 1, got {limit}.")
    return [docs[i] for i in sorted(random.Random(seed).sample(range(len(docs)), limit))]


def summarize(results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean, spread and range of micro-F1 over episodes, and each type's mean P/R/F1 over the
    episodes that held it (a type the episode's query set never mentions scores 0 there)."""
    f = [r["f"] for r in results]
    labels = sorted({label for r in results for label in r.get("labels", [])} | {label for r in results for label in r.get("per_type", {})})
    per_type = {}
    for label in labels:
        held = [r["per_type"].get(label, {"p": 0.0, "r": 0.0, "f": 0.0}) for r in results if label in r.get("labels", []) or label in r.get("per_type", {})]
        per_type[label] = {key: statistics.mean(t[key] for t in held) for key in ("p", "r", "f")}
        per_type[label]["episodes"] = len(held)
    return {"f_mean": statistics.mean(f), "f_std": statistics.stdev(f) if len(f) > 1 else 0.0,
            "f_min": min(f), "f_max": max(f), "episodes": len(f), "per_type": per_type}


def per_type_table(per_type: Dict[str, Dict[str, float]]) -> List[str]:
    """Plain-text rows: type, mean P/R/F1 (in %) over the episodes that held it, and how many."""
    rows = [f"  {'type':<24} {'P':>6} {'R':>6} {'F1':>6}  episodes"]
    rows += [f"  {label:<24} {100 * t['p']:6.2f} {100 * t['r']:6.2f} {100 * t['f']:6.2f}  {t['episodes']}" for label, t in per_type.items()]
    return rows
