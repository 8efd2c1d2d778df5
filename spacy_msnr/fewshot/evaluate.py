"""The few-shot evaluation loop: a fresh pipeline per N-way K-shot episode, trained on its support
set and scored on its query set; the `fewshot-eval` command and the benchmarks call it.

Progress goes to the `spacy_msnr.fewshot.evaluate` logger (the command shows it; an embedding
program routes or silences it like any other logger)."""
import logging
import random
import statistics
import time
from typing import Any, Dict, List, Optional, Tuple

import spacy
from spacy.language import Language
from spacy.scorer import get_ner_prf
from spacy.training import Example
from spacy.util import load_model_from_config, minibatch
from thinc.api import Config, Optimizer

from ..corpus.episodes import Episode

logger = logging.getLogger(__name__)


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
    """
    spacy.util.fix_random_seed(seed)
    nlp, support, sgd = prepare_pipeline(config, episode)
    if optimizer is not None:
        sgd = optimizer
    start = time.perf_counter()
    step = 0
    while step < steps:
        for batch in minibatch(support, size=batch_size):
            losses = nlp.update(batch, sgd=sgd)
            step += 1
            if steps <= 20 or step % 10 == 0:  # LLM updates are slow: report each one
                logger.info("  update %d/%d (%.0fs): %s", step, steps, time.perf_counter() - start,
                            ", ".join(f"{k} {v:.3f}" for k, v in losses.items()))
            if step >= steps:
                break
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    predicted = list(nlp.pipe(d.text for d in episode.query))
    eval_s = time.perf_counter() - start
    keep = set(episode.labels)
    for doc in predicted:
        doc.ents = [ent for ent in doc.ents if ent.label_ in keep]
    scores = get_ner_prf([Example(doc, gold) for doc, gold in zip(predicted, episode.query)])
    return {
        "labels": episode.labels, "support_sentences": len(support), "query_sentences": len(predicted),
        "p": scores["ents_p"], "r": scores["ents_r"], "f": scores["ents_f"],
        "per_type": {k: {"p": v["p"], "r": v["r"], "f": v["f"]} for k, v in (scores.get("ents_per_type") or {}).items()},
        "train_seconds": train_s, "sentences_per_second": len(predicted) / eval_s if eval_s else 0.0,
    }


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
