"""Few-shot NER on CrossNER with SmolLM2-135M-Instruct: every row on the same episodes.

For each target domain (politics, science, ai) and K in --shots, samples --episodes greedy N-way
K-shot support sets from the target's train split (Few-NERD style, `spacy_msnr.corpus.episodes`;
types drawn from those with >= 2K mentions). The query set is one fixed sample of --query-limit
test sentences (seeded, the same for every episode and row), restricted to the episode's types.
Rows, all trained and scored on identical support/query sets:
  full            fewshot_ner: LM + contrastive + FGM adversarial losses, --steps updates
  no_contrastive  the same with contrastive weight 0
  no_fgm          the same with adversarial epsilon 0
  zero_shot       fewshot_ner with the same prompts and no update (the base model as it is)
  in_context      the same LLM prompted in context, no update: every prompt shows the whole support set
                  as solved examples (fewshot_ner `demonstrations`; what spacy-llm's few-shot NER does)
  spacy_ner       spaCy's `ner` (CNN, no vectors) trained on the same support set, --ner-steps updates
  spacy_ner_source
                  the fair peer of the source rows: spaCy's `ner` trained first on every training sentence of
                  --source for --spacy-source-epochs epochs (cached), then given the episode's types
                  (`add_label`) and --ner-steps updates on the support set (`resume_training`); its
                  predictions are limited to the episode's types, as fewshot_ner's are
  spacy_trf_source
                  the same with spaCy's transformer pipeline (configs/ner_trf.cfg: spacy-transformers
                  `transformer` on --trf-model, all-MiniLM-L6-v2 by default, + `ner`), source-trained
                  with `spacy train` for --spacy-source-epochs epochs of the config's batches (the
                  data-following budget of spacy_msnr.budget; dev: 1,000 --source dev sentences;
                  model-best, cached), then --ner-steps updates on the support set with the config's
                  optimizer (warm-up and linear decay over those steps) and dropout
With --source-steps N > 0, a source stage first trains fewshot_ner (full method) on --source
(default conll2003: person, location, organisation, misc) for N updates of --source-batch-size
sentences, merges its adapters into the base (`fewshot-merge`) and caches that model under
benchmarks/work/fewshot_crossner/source (--source-without-fgm: the stage without FGM); these rows start from it:
  source_zero     the source-trained model with no target update
  source_in_context
                  the source-trained model with no target update, prompted with the whole support set as
                  solved examples (in_context's prompts on source_zero's model)
  source_full     the source-trained model + the full method on the support set (fresh adapters;
                  --source-full-lr / --source-full-negative-rate, default --lr / --negative-rate)
  source_no_contrastive, source_no_fgm
                  source_full's target stage with contrastive weight 0 / adversarial epsilon 0
                  (the source stage itself stays the full method)
  source_span_no_fgm
                  source_no_fgm's target stage with span-level contrast (contrastive unit "span": each
                  gold mention's tokens averaged into one anchor) instead of token-level (not in the default rows)
With --source-steps N > 0, the episodic_* rows start instead from an episodic, multi-source source
stage, as CLLMFS trains (cached per target under benchmarks/work/fewshot_crossner/source_episodic):
fewshot_ner (full method) on --source-n-way --source-k-shot episodes drawn from --source and every
CrossNER domain in the data folder other than the target (leave-one-domain-out; each episode from one
domain, its Docs annotated for its types only), in updates of at most --source-batch-size sentences
of one episode, until it has trained on as many (sentence, type) instructions as the plain source
stage (N x --source-batch-size x the number of --source types): equal source compute.
  episodic_zero, episodic_full, episodic_no_fgm
                  as source_zero, source_full, source_no_fgm from that model (not in the default rows)
Each (target, K, episode, row) result is cached as JSON under benchmarks/work/fewshot_crossner/cells
(keyed by the settings), so an interrupted run resumes where it stopped; after every cell the
table (micro-F1 mean ± std and min-max over episodes, seconds per update, query sentences/s, peak
RSS) is rewritten to benchmarks/results/fewshot/fewshot_crossner.{md,json,png}.
With --merge-into NAME the run's rows (--targets x --shots x --rows) are also put into
benchmarks/results/NAME.{md,json,png} at the end, replacing that file's rows for the same (target, K,
row) and keeping the others (its settings must agree with the run's): how a later run, say a peer at
another K, joins a results file measured earlier.

    OMP_NUM_THREADS=1 python benchmarks/fewshot_crossner.py --targets politics science ai --shots 5 10
"""
import argparse
import hashlib
import json
import logging
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import spacy  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy.util import minibatch  # noqa: E402

from spacy_msnr.corpus.episodes import label_counts  # noqa: E402
from spacy_msnr.corpus.iob import iob_split  # noqa: E402
from spacy_msnr.fewshot import evaluate  # noqa: E402
from spacy_msnr.fewshot.evaluate import (  # noqa: E402
    MAX_DEMONSTRATIONS, PeakRSS, fixed_query_episodes, passes, reshuffled, score_query, train_support, update_loop,
)
from spacy_msnr.util import atomic_write_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MSNR_SHARED_DATA", ROOT.parent / "shared" / "data")) / "crossner"
WORK = ROOT / "benchmarks" / "work" / "fewshot_crossner"
RESULTS = ROOT / "benchmarks" / "results" / "fewshot"
DEFAULT_BASE = ROOT / "assets" / "models" / "smollm2-135m-instruct"
#: The spacy_trf_source row's encoder (relative to the repository root, so cache keys travel).
DEFAULT_TRF = "assets/models/minilm-l6"
#: Dev sentences the spacy_trf_source row's source training evaluates on.
TRF_DEV_LIMIT = 1000
ROWS = ("full", "no_contrastive", "no_fgm", "zero_shot", "in_context", "spacy_ner", "spacy_ner_source", "spacy_trf_source",
        "source_zero", "source_in_context", "source_full",
        "source_no_contrastive", "source_no_fgm", "source_span_no_fgm", "episodic_zero", "episodic_full", "episodic_no_fgm")
EPISODIC_ROWS = ("episodic_zero", "episodic_full", "episodic_no_fgm")
SOURCE_ROWS = ("source_zero", "source_in_context", "source_full", "source_no_contrastive", "source_no_fgm", "source_span_no_fgm") + EPISODIC_ROWS
#: Rows run only when asked for (--rows).
LATER_ROWS = EPISODIC_ROWS + ("source_span_no_fgm",)
#: The in-context rows show every support sentence (MAX_DEMONSTRATIONS: an episode has fewer).
IN_CONTEXT_ROWS = ("in_context", "source_in_context")
#: Source rows with a target stage, and the row of fewshot_pipeline each trains as.
TARGET_STAGE = {"source_full": "full", "source_no_contrastive": "no_contrastive", "source_no_fgm": "no_fgm",
                "source_span_no_fgm": "span_no_fgm",
                "episodic_full": "full", "episodic_no_fgm": "no_fgm"}
#: Short definitions of the CrossNER types (after the CrossNER annotation guidelines), given to
#: fewshot_ner as label descriptions with --describe; types without one are described by their name.
DESCRIPTIONS = {
    "politician": "a person who holds or seeks political office", "politicalparty": "a political party",
    "election": "an election or referendum", "country": "a country or state",
    "location": "a place that is not a country, such as a city, region or building",
    "organisation": "an organisation that is not a political party, university or conference, such as a government body or company",
    "person": "a person who is not a politician, scientist or researcher",
    "event": "a named event that is not an election, such as a war, summit or disaster",
    "misc": "another named thing, such as a nationality, ideology, law, document or title",
    "scientist": "a scientist", "award": "a prize or award", "university": "a university or college",
    "astronomicalobject": "a star, planet, galaxy or other astronomical object", "chemicalcompound": "a chemical compound",
    "chemicalelement": "a chemical element", "protein": "a protein", "enzyme": "an enzyme",
    "academicjournal": "an academic journal", "discipline": "a scientific discipline", "theory": "a scientific theory or law",
    "algorithm": "an algorithm, model or method", "task": "a task or problem that programs solve",
    "product": "a software or hardware product", "researcher": "a researcher", "conference": "a conference or workshop",
    "field": "a field of research", "metrics": "an evaluation metric", "programlang": "a programming language",
}
#: Settings that change a cell's result (the cache key); the others only select what to run.
KEYED = ("base_model", "n_way", "query_limit", "steps", "batch_size", "train_chunk", "lr", "lora_r", "max_new_tokens",
         "prompt_format", "ner_steps", "seed", "describe", "negative_rate", "precision")
#: Settings added after cells were cached: left out of the key at these values, so those cells stay valid.
LATER_DEFAULTS = {"describe": False, "negative_rate": 1.0, "source_negative_rate": 1.0, "source_without_fgm": False, "source_full_lr": None,
                  "source_full_negative_rate": None, "source_n_way": 5, "source_k_shot": 5, "precision": "fp32"}


def docbin(domain: str, split: str, vocab) -> List:
    """The domain's split as Docs (converted once from the IOB file into WORK)."""
    return iob_split(DATA, domain, split, vocab, WORK)


#: The source stage depends on these settings (its cache key).
SOURCE_ONLY = ("source", "source_steps", "source_batch_size", "source_lr", "source_negative_rate", "source_without_fgm")
SOURCE_KEYED = ("base_model", "lora_r", "train_chunk", "prompt_format", "seed", "describe", "precision") + SOURCE_ONLY
#: ... and the episodic source stage on these (and on the target, which it leaves out; source_pool:
#: the CrossNER domains of the data folder, set by main).
EPISODIC_KEYED = ("source_n_way", "source_k_shot", "source_pool")
#: Rows that do not train fewshot_ner on the target depend on fewer settings, and the source rows on
#: more: their cells are shared by every run whose settings agree on these
#: (benchmarks/work/fewshot_crossner/rows/<row>/<key>/), and a row's cell in a run's own folder is
#: replaced when its shared cell differs.
ROW_KEYED = {
    "zero_shot": ("base_model", "n_way", "query_limit", "max_new_tokens", "prompt_format", "seed", "describe", "precision"),
    "in_context": ("base_model", "n_way", "query_limit", "max_new_tokens", "prompt_format", "seed", "describe", "precision"),
    "spacy_ner": ("n_way", "query_limit", "ner_steps", "batch_size", "seed"),
    "spacy_ner_source": ("n_way", "query_limit", "ner_steps", "batch_size", "seed", "source", "spacy_source_epochs"),
    "spacy_trf_source": ("n_way", "query_limit", "ner_steps", "batch_size", "seed", "source", "spacy_source_epochs", "trf_model",
                         "precision"),
    "source_zero": ("n_way", "query_limit", "max_new_tokens") + SOURCE_KEYED,
    "source_in_context": ("n_way", "query_limit", "max_new_tokens") + SOURCE_KEYED,
    "episodic_zero": ("n_way", "query_limit", "max_new_tokens") + SOURCE_KEYED + EPISODIC_KEYED,
    **{row: KEYED + SOURCE_ONLY + ("source_full_lr", "source_full_negative_rate") for row in TARGET_STAGE},
    **{row: KEYED + SOURCE_ONLY + EPISODIC_KEYED + ("source_full_lr", "source_full_negative_rate")
       for row in TARGET_STAGE if row in EPISODIC_ROWS},
}


def settings_key(args, names=KEYED) -> str:
    keyed = {k: getattr(args, k) for k in names if k not in LATER_DEFAULTS or getattr(args, k) != LATER_DEFAULTS[k]}
    return hashlib.sha1(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:10]


def fewshot_pipeline(args, row: str, labels: List[str], base_model: Optional[str] = None,
                     negative_rate: Optional[float] = None):
    """A blank pipeline with `fewshot_ner` for `labels` on `base_model` (default --base-model), with
    `negative_rate` (default --negative-rate); `row` switches a loss term off."""
    return evaluate.fewshot_pipeline(
        {label: DESCRIPTIONS.get(label, label) if args.describe else label for label in labels}, base_model or args.base_model,
        lora_r=args.lora_r, dtype=args.precision, max_new_tokens=args.max_new_tokens, train_batch_size=args.train_chunk,
        negative_rate=args.negative_rate if negative_rate is None else negative_rate,
        demonstrations=MAX_DEMONSTRATIONS if row in IN_CONTEXT_ROWS else 0,
        contrastive={"weight": 0.0} if row == "no_contrastive" else {"unit": "span"} if row == "span_no_fgm" else None,
        adversarial={"epsilon": 0.0} if row in ("no_fgm", "span_no_fgm") else None)


def source_base(args) -> Path:
    """The base model after the source stage (cached): fewshot_ner, full method (or without FGM), trained for
    --source-steps updates on a seeded sample of --source's training sentences, adapters merged."""
    from spacy_msnr.fewshot.model import get_shim

    out = WORK / "source" / settings_key(args, SOURCE_KEYED)
    if (out / "source.json").exists():  # written last: the merged model is complete
        return out / "model"
    vocab = spacy.blank("en").vocab
    docs = [d for d in docbin(args.source, "train", vocab) if d.ents]
    sample = random.Random(args.seed).sample(docs, min(len(docs), args.source_steps * args.source_batch_size))
    labels = sorted(label_counts(docs))
    nlp = fewshot_pipeline(args, "no_fgm" if args.source_without_fgm else "full", labels, negative_rate=args.source_negative_rate)
    examples = [Example(nlp.make_doc(d.text), d) for d in sample]
    print(f"source stage: {args.source} ({', '.join(labels)}), {len(examples)} sentences, {args.source_steps} updates "
          f"of {args.source_batch_size}, lr {args.source_lr}", flush=True)
    trained = train_support(nlp, examples, args.source_steps, args.source_lr, args.source_batch_size, args.seed,
                            args.prompt_format, log_every=5).record()
    get_shim(nlp.get_pipe("fewshot_ner").model).save_merged(out / "model")
    atomic_write_bytes(out / "source.json", json.dumps(dict(trained, labels=labels, sentences=len(examples), settings={
        k: getattr(args, k) for k in SOURCE_KEYED}), indent=2).encode())
    print(f"source stage done in {trained['train_s']:.0f}s ({trained['s_per_update']:.1f} s/update), "
          f"last losses {trained['last_losses']}: {out / 'model'}", flush=True)
    return out / "model"


def source_domains(args, target: str) -> List[str]:
    """--source and every other CrossNER domain of the data folder except `target`."""
    return [args.source] + [name for name in args.source_pool if name not in (args.source, target)]


def episodic_source_base(args, target: str) -> Path:
    """The base model after the episodic multi-source source stage for `target` (cached): see the
    module docstring. Equal compute with source_base: the same number of (sentence, type) instructions."""
    from spacy_msnr.corpus.episodes import instructions_of, source_episodes
    from spacy_msnr.fewshot.model import get_shim

    domains = source_domains(args, target)
    out = WORK / "source_episodic" / f"{settings_key(args, SOURCE_KEYED + EPISODIC_KEYED)}-{target}"
    if (out / "source.json").exists():
        return out / "model"
    vocab = spacy.blank("en").vocab
    docs = {name: [d for d in docbin(name, "train", vocab) if d.ents] for name in domains}
    plain_labels = sorted(label_counts(docs[args.source]))
    budget = args.source_steps * args.source_batch_size * len(plain_labels)
    rng = random.Random(args.seed)
    batches, used, count = [], [], 0
    for episode in source_episodes(docs, args.source_n_way, args.source_k_shot, seed=args.seed):
        support = rng.sample(episode.support, len(episode.support))
        used.append(episode)
        for start in range(0, len(support), args.source_batch_size):
            batch = support[start:start + args.source_batch_size]
            batches.append(batch)
            count += instructions_of(batch)
            if count >= budget:
                break
        if count >= budget:
            break
    labels = sorted({label for ep in used for label in ep.labels})
    nlp = fewshot_pipeline(args, "full", labels, negative_rate=args.source_negative_rate)
    per_domain = {name: sum(ep.domain == name for ep in used) for name in domains}
    print(f"episodic source stage for {target}: {len(used)} episodes ({per_domain}), {len(labels)} types, "
          f"{sum(map(len, batches))} sentences, {count} instructions in {len(batches)} updates, lr {args.source_lr}", flush=True)
    trained = train_support(nlp, [Example(nlp.make_doc(d.text), d) for batch in batches for d in batch], len(batches),
                            args.source_lr, args.source_batch_size, args.seed, args.prompt_format, log_every=5,
                            batches=([Example(nlp.make_doc(d.text), d) for d in batch] for batch in batches))
    get_shim(nlp.get_pipe("fewshot_ner").model).save_merged(out / "model")
    atomic_write_bytes(out / "source.json", json.dumps({
        "mode": "episodic", "target": target, "domains": per_domain, "episodes": len(used), "labels": labels,
        "sentences": sum(map(len, batches)), "instructions": count, "updates": len(batches), **trained.record(),
        "settings": {k: getattr(args, k) for k in SOURCE_KEYED + EPISODIC_KEYED}}, indent=2).encode())
    print(f"episodic source stage done in {trained.seconds:.0f}s ({trained.seconds / len(batches):.1f} s/update), "
          f"last losses {trained.losses}", flush=True)
    return out / "model"


def spacy_source(args) -> Path:
    """spaCy's CNN `ner` trained on every training sentence of --source for --spacy-source-epochs
    epochs (batches of 32 sentences, dropout 0.1; cached): the start of the spacy_ner_source row."""
    out = WORK / "spacy_source" / settings_key(args, ("source", "spacy_source_epochs", "seed"))
    if (out / "source.json").exists():
        return out / "model"
    vocab = spacy.blank("en").vocab
    docs = docbin(args.source, "train", vocab)
    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    examples = [Example(nlp.make_doc(d.text), d) for d in docs]
    spacy.util.fix_random_seed(args.seed)
    sgd = nlp.initialize(lambda: examples)
    start, losses = time.perf_counter(), {}
    for epoch in range(args.spacy_source_epochs):
        random.Random(args.seed + epoch).shuffle(examples)
        losses = {}
        for batch in minibatch(examples, size=32):
            nlp.update(batch, sgd=sgd, drop=0.1, losses=losses)
        print(f"  spaCy ner on {args.source}: epoch {epoch + 1}/{args.spacy_source_epochs}, loss {losses.get('ner', 0.0):.1f} "
              f"({time.perf_counter() - start:.0f}s)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(out / "model")
    atomic_write_bytes(out / "source.json", json.dumps({
        "source": args.source, "sentences": len(examples), "epochs": args.spacy_source_epochs, "train_s": time.perf_counter() - start,
        "labels": list(nlp.get_pipe("ner").labels), "last_epoch_loss": float(losses.get("ner", 0.0))}, indent=2).encode())
    return out / "model"


def trf_source(args) -> Path:
    """configs/ner_trf.cfg (`transformer` on --trf-model + `ner`) trained with `spacy train` on every
    training sentence of --source for --spacy-source-epochs epochs of the config's batches
    (`spacy_msnr.budget.budget_config`), evaluated on TRF_DEV_LIMIT dev sentences (cached):
    model-best is the start of the spacy_trf_source row."""
    from spacy.cli.train import train as spacy_train
    from thinc.api import Config

    from spacy_msnr.budget import budget_config

    out = WORK / "trf_source" / settings_key(args, ("source", "spacy_source_epochs", "seed", "trf_model", "precision"))
    if (out / "source.json").exists():
        return out / "model-best"
    model = ROOT / args.trf_model
    if not (model / "config.json").exists():
        raise SystemExit(f"--trf-model {model}: no config.json there (fetch the default with "
                         "`python -m spacy_msnr fetch-model minilm-l6 assets/models/minilm-l6`)")
    vocab = spacy.blank("en").vocab
    paths = {split: WORK / f"{args.source}-{split}.spacy" for split in ("train", "dev")}
    sentences = {split: len(docbin(args.source, split, vocab)) for split in paths}  # converted once into paths
    config = Config().from_disk(ROOT / "configs" / "ner_trf.cfg", interpolate=False, overrides={
        "paths.train": str(paths["train"]), "paths.dev": str(paths["dev"]), "paths.base_model": str(model),
        "system.seed": args.seed, "corpora.dev.limit": TRF_DEV_LIMIT, "training.logger.progress_bar": False,
        "components.transformer.model.precision": args.precision})
    budget = budget_config(config, epochs=args.spacy_source_epochs)
    out.mkdir(parents=True, exist_ok=True)
    budget["config"].to_disk(out / "config.cfg")
    print(f"spaCy transformer + ner on {args.source}: {args.spacy_source_epochs} epochs = {budget['max_steps']} steps "
          f"({budget['batches_per_epoch']} batches an epoch), base {args.trf_model}", flush=True)
    start, cpu = time.perf_counter(), time.process_time()
    spacy_train(out / "config.cfg", out, use_gpu=-1)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    meta = json.loads((out / "model-best" / "meta.json").read_text())
    atomic_write_bytes(out / "source.json", json.dumps({
        "source": args.source, "sentences": sentences["train"], "epochs": args.spacy_source_epochs,
        "steps": budget["max_steps"], "batches_per_epoch": budget["batches_per_epoch"], "base": args.trf_model,
        "train_s": seconds, "cpu_s": cpu, "dev_sentences": min(TRF_DEV_LIMIT, sentences["dev"]),
        "dev_f": meta["performance"]["ents_f"], "labels": list(meta["labels"]["ner"])}, indent=2).encode())
    return out / "model-best"


def run_spacy_source_cell(args, row: str, episode, seed: int) -> Dict[str, Any]:
    """The spacy_ner_source / spacy_trf_source rows: the source-trained pipeline, the episode's types
    added, --ner-steps updates on the support set, predictions limited to the episode's types. The
    CNN trains as `resume_training` sets it up (Adam 0.001, no dropout); the transformer pipeline
    with its config's optimizer, its schedule over the --ner-steps, and its dropout."""
    trf = row == "spacy_trf_source"
    source = trf_source(args) if trf else spacy_source(args)
    nlp = spacy.load(source)
    ner = nlp.get_pipe("ner")
    for label in episode.labels:
        ner.add_label(label)
    support = [Example(nlp.make_doc(d.text), d) for d in episode.support]
    spacy.util.fix_random_seed(seed)
    if trf:
        config = nlp.config.copy()
        config["training"]["max_steps"] = args.ner_steps
        training = config.interpolate()["training"]
        sgd = nlp.resume_training(sgd=spacy.util.registry.resolve({"sgd": training["optimizer"]})["sgd"])
        drop = training["dropout"]
    else:
        sgd, drop = nlp.resume_training(), 0.0
    with PeakRSS() as mem:  # each pass a fresh shuffle of the support set
        trained = update_loop(nlp, passes(support, args.batch_size, reshuffled(seed, from_start=True)), args.ner_steps,
                              sgd, drop=drop, log_every=0)
    result = {"labels": episode.labels, "support": len(support), "query": len(episode.query), "updates": trained.updates,
              **trained.record(), **score_query(nlp, episode.query, episode.labels, peak_rss=True).record(),
              ("trf_source" if trf else "spacy_source"): json.loads((source.parent / "source.json").read_text())}
    result["peak_mib"] = max(result["peak_mib"], mem.peak)
    return result


def run_cell(args, row: str, episode, seed: int, target: str) -> Dict[str, Any]:
    """Train (unless zero-shot) and score one row on one episode."""
    source, after_source = None, False
    if row in ("spacy_ner_source", "spacy_trf_source"):
        return run_spacy_source_cell(args, row, episode, seed)
    if row == "spacy_ner":
        nlp = spacy.blank("en")
        nlp.add_pipe("ner")
        steps, lr = args.ner_steps, 0.001
    else:
        source = (episodic_source_base(args, target) if row in EPISODIC_ROWS
                  else source_base(args) if row in SOURCE_ROWS else None)
        after_source = row in TARGET_STAGE
        nlp = fewshot_pipeline(args, TARGET_STAGE.get(row, row), episode.labels, source and str(source),
                               args.source_full_negative_rate if after_source else None)
        steps = 0 if row in ("zero_shot", "source_zero", "episodic_zero") + IN_CONTEXT_ROWS else args.steps
        lr = args.source_full_lr if after_source and args.source_full_lr is not None else args.lr
    support = [Example(nlp.make_doc(d.text), d) for d in episode.support]
    with PeakRSS() as mem:
        trained = train_support(nlp, support, steps, lr, args.batch_size, seed, args.prompt_format).record()
    result = {"labels": episode.labels, "support": len(support), "query": len(episode.query), "updates": steps,
              **trained, **score_query(nlp, episode.query, peak_rss=True).record()}
    result["peak_mib"] = max(result["peak_mib"], mem.peak)
    if source is not None:
        result["source"] = json.loads((source.parent / "source.json").read_text())
    if after_source:
        result["target_stage"] = {"lr": lr, "negative_rate": nlp.get_pipe("fewshot_ner").cfg["negative_rate"]}
    return result


def run(args) -> None:
    vocab = spacy.blank("en").vocab
    key = settings_key(args)
    cells = WORK / "cells" / key
    cells.mkdir(parents=True, exist_ok=True)
    (cells / "settings.json").write_text(json.dumps({k: getattr(args, k) for k in KEYED}, indent=2))
    for target in args.targets:
        train_docs, test_docs = docbin(target, "train", vocab), docbin(target, "test", vocab)
        for k in args.shots:
            episodes = fixed_query_episodes(train_docs, test_docs, args.n_way, k, args.episodes, args.query_limit, args.seed)
            for i, ep in enumerate(episodes):
                for row in args.rows:
                    path = cells / f"{target}-k{k}-ep{i}-{row}.json"
                    shared = WORK / "rows" / row / settings_key(args, ROW_KEYED[row]) / path.name if row in ROW_KEYED else None
                    if shared is not None and shared.exists():
                        if not path.exists() or path.read_bytes() != shared.read_bytes():
                            atomic_write_bytes(path, shared.read_bytes())
                            write_results(args, cells)
                        continue
                    if path.exists() and shared is None:
                        continue
                    result = run_cell(args, row, ep, args.seed + i, target)
                    atomic_write_bytes(path, json.dumps(result, indent=2).encode())
                    if shared is not None:
                        shared.parent.mkdir(parents=True, exist_ok=True)
                        atomic_write_bytes(shared, path.read_bytes())
                    print(f"{target} K={k} episode {i} {row}: F1 {100 * result['f']:.2f} (P {100 * result['p']:.2f}, "
                          f"R {100 * result['r']:.2f}), {result['support']} support, {result['updates']} updates in "
                          f"{result['train_s']:.0f}s ({result['s_per_update']:.1f} s/update, {result['cpu_s_per_update']:.1f} CPU "
                          f"s/update), {result['query']} query in {result['score_s']:.0f}s ({result['sents_per_s']:.2f} "
                          f"sents/s, {result['cpu_sents_per_s']:.2f} per CPU s), peak RSS "
                          f"{result['peak_mib']:.0f} MiB, losses {result['last_losses']}", flush=True)
                    write_results(args, cells)
    if args.merge_into:
        merge_rows(args, cells)


def merge_rows(args, cells: Path) -> None:
    """Put this run's rows (--targets x --shots x --rows) into benchmarks/results/{--merge-into}, replacing
    the rows it already has for the same (target, K, row) and keeping the others; the two runs' common
    settings must agree, so that every row of a file is measured on the same episodes and queries."""
    settings = json.loads((cells / "settings.json").read_text())
    path = RESULTS / f"{args.merge_into}.json"
    old = json.loads(path.read_text()) if path.exists() else {"settings": settings, "rows": []}
    differ = {k: (old["settings"][k], settings[k]) for k in old["settings"].keys() & settings.keys()
              if old["settings"][k] != settings[k]}
    if differ:
        raise SystemExit(f"{path}: its settings differ from this run's, so its rows would not be comparable: {differ}")
    merged = {(r["target"], r["k"], r["row"]): r for r in old["rows"]}
    merged.update({(r["target"], r["k"], r["row"]): r for r in aggregate(cells)
                   if r["target"] in args.targets and r["k"] in args.shots and r["row"] in args.rows})
    write_rows([merged[key] for key in sorted(merged, key=lambda key: (key[0], key[1], ROWS.index(key[2])))],
               old["settings"], args.merge_into)
    print(f"merged into {path}", flush=True)


def aggregate(cells: Path) -> List[Dict[str, Any]]:
    """Rows of the table: one per (target, K, row) over the cached episodes."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    def episode(path: Path) -> int:
        return int(path.stem.split("-", 3)[2][2:])

    for path in sorted(cells.glob("*-k*-ep*-*.json"), key=lambda p: (p.stem.split("-", 3)[::3], episode(p))):
        target, k, _, row = path.stem.split("-", 3)
        groups.setdefault((target, int(k[1:]), row), []).append(json.loads(path.read_text()))
    out = []
    for (target, k, row), results in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1], ROWS.index(g[0][2]))):
        f = [100 * r["f"] for r in results]
        out.append({
            "target": target, "k": k, "row": row, "episodes": len(f), "f_mean": statistics.mean(f),
            "f_std": statistics.stdev(f) if len(f) > 1 else 0.0, "f_min": min(f), "f_max": max(f),
            "f_episodes": [round(x, 4) for x in f],  # in episode order, for differences paired by episode
            "s_per_update": statistics.mean(r["s_per_update"] for r in results),
            "cpu_s_per_update": statistics.mean(r.get("cpu_s_per_update", 0.0) for r in results),
            "sents_per_s": statistics.mean(r["sents_per_s"] for r in results),
            "cpu_sents_per_s": statistics.mean(r.get("cpu_sents_per_s", 0.0) for r in results),
            "episode_s": statistics.mean(r["train_s"] + r["score_s"] for r in results),
            "peak_mib": max(r["peak_mib"] for r in results),
            **{k: results[0][k] for k in ("source", "target_stage", "spacy_source", "trf_source") if k in results[0]},
        })
    return out


def write_results(args, cells: Path) -> None:
    write_rows(aggregate(cells), json.loads((cells / "settings.json").read_text()), args.results_name)


def write_rows(rows: List[Dict[str, Any]], settings: Dict[str, Any], name: str) -> None:
    """benchmarks/results/{name}.{md,json,png}: the table of `rows`, with the provenance of their stages."""
    table = ["| target | K | row | episodes | micro-F1 mean ± std | min–max | s/update (CPU s) | "
             "query sents/s (per CPU s) | train+score s | peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['target']} | {r['k']} | {r['row']} | {r['episodes']} | {r['f_mean']:.2f} ± {r['f_std']:.2f} | "
              f"{r['f_min']:.2f}–{r['f_max']:.2f} | {r['s_per_update']:.1f} ({r['cpu_s_per_update']:.1f}) | "
              f"{r['sents_per_s']:.2f} ({r['cpu_sents_per_s']:.2f}) | "
              f"{r['episode_s']:.0f} | {r['peak_mib']:.0f} |" for r in rows]
    print("\n".join(table), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    note = (f"Settings: {json.dumps(settings)}\n\nQuery set: a fixed seeded sample of {settings['query_limit']} test "
            "sentences per domain, restricted to each episode's types; the same support and query sets for every row. "
            "Times: wall seconds (CPU seconds of this process in brackets) with OMP_NUM_THREADS=1 on a 2-core CPU "
            "shared with other jobs; s/update is 0 for rows without updates.\n")
    sources = {json.dumps(r["source"]["settings"], sort_keys=True): r["source"] for r in rows if "source" in r
               and r["source"].get("mode") != "episodic"}
    episodic = {r["source"]["target"]: r["source"] for r in rows if r.get("source", {}).get("mode") == "episodic"}
    for target, source in sorted(episodic.items()):
        cfg = source["settings"]
        note += (f"\nEpisodic source stage of the episodic_* rows for {target}: {cfg['source_n_way']}-way {cfg['source_k_shot']}-shot "
                 f"episodes from {', '.join(f'{d} ({n})' for d, n in source['domains'].items())}, {len(source['labels'])} types, "
                 f"{source['sentences']} sentences, {source['instructions']} instructions in {source['updates']} updates of at most "
                 f"{cfg['source_batch_size']} at lr {cfg['source_lr']}, negative_rate {cfg.get('source_negative_rate', 1.0)} (full method), "
                 f"{source['train_s']:.0f} s "
                 f"({source['s_per_update']:.1f} s/update), last losses {source['last_losses']}.\n")
    for source in sources.values():
        cfg = source["settings"]
        note += (f"\nSource stage of the source_* rows: {cfg['source']} ({', '.join(source['labels'])}), {source['sentences']} "
                 f"sentences, {cfg['source_steps']} updates of {cfg['source_batch_size']} at lr {cfg['source_lr']}, negative_rate "
                 f"{cfg.get('source_negative_rate', 1.0)} ({'without FGM' if cfg.get('source_without_fgm') else 'full method'}"
                 f"), {source['train_s']:.0f} s ({source['s_per_update']:.1f} s/update), last losses "
                 f"{source['last_losses']}; adapters merged into the base (`python -m spacy_msnr fewshot-merge`).\n")
    stages: Dict[tuple, tuple] = {}  # (lr, negative_rate) -> (rows, groups), dicts as ordered sets
    for r in rows:
        if "target_stage" in r:
            names, groups = stages.setdefault((r["target_stage"]["lr"], r["target_stage"]["negative_rate"]), ({}, {}))
            names[r["row"]] = groups[f"{r['target']} K={r['k']}"] = None
    for (lr, rate), (names, groups) in stages.items():
        note += (f"\nTarget stage of {', '.join(names)} ({', '.join(groups)}): lr {lr}, negative_rate "
                 f"{rate} (fresh adapters on the merged source model).\n")
    spacy_sources = {json.dumps(r["spacy_source"], sort_keys=True): r["spacy_source"] for r in rows if "spacy_source" in r}
    for source in spacy_sources.values():
        note += (f"\nSource training of the spacy_ner_source row: spaCy's CNN `ner` on all {source['sentences']} training "
                 f"sentences of {source['source']} ({', '.join(source['labels'])}), {source['epochs']} epochs of batches of 32, "
                 f"{source['train_s']:.0f} s; then the episode's types added and --ner-steps updates on the support set.\n")
    trf_sources: Dict[str, tuple] = {}  # one training -> (its record, the (target K) groups it served, as an ordered set)
    for r in rows:
        if "trf_source" in r:
            trf_sources.setdefault(json.dumps(r["trf_source"], sort_keys=True), (r["trf_source"], {}))[1][f"{r['target']} K={r['k']}"] = None
    for source, groups in trf_sources.values():
        note += (f"\nSource training of the spacy_trf_source row ({', '.join(groups)}): configs/ner_trf.cfg (`transformer` on {source['base']} + `ner`) "
                 f"with `spacy train` on all {source['sentences']} training sentences of {source['source']} "
                 f"({', '.join(source['labels'])}), {source['epochs']} epochs = {source['steps']} steps, {source['train_s']:.0f} s, "
                 f"dev F1 {100 * source['dev_f']:.2f} on {source['dev_sentences']} dev sentences (model-best); then the episode's "
                 "types added and --ner-steps updates on the support set (the config's optimizer and dropout).\n")
    atomic_write_bytes(RESULTS / f"{name}.md", ("\n".join(table) + "\n\n" + note).encode())
    atomic_write_bytes(RESULTS / f"{name}.json", json.dumps({"settings": settings, "rows": rows}, indent=2).encode())
    plot(rows, RESULTS / f"{name}.png")


def plot(rows: List[Dict[str, Any]], path: Path) -> None:
    """Grouped bars: micro-F1 per (target, K) group, one bar per row, std as error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["target"], r["k"]) for r in rows})
    present = [row for row in ROWS if any(r["row"] == row for r in rows)]
    width = 0.8 / max(1, len(present))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(groups)), 3.5))
    for j, row in enumerate(present):
        xs, ys, es = [], [], []
        for g, (target, k) in enumerate(groups):
            hit = [r for r in rows if (r["target"], r["k"], r["row"]) == (target, k, row)]
            if hit:
                xs.append(g + j * width - 0.4 + width / 2)
                ys.append(hit[0]["f_mean"])
                es.append(hit[0]["f_std"])
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=row)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{t}\nK={k}" for t, k in groups])
    ax.set_ylabel("micro-F1 (mean ± std over episodes)")
    ax.set_title("CrossNER 5-way few-shot, SmolLM2-135M-Instruct")
    ax.legend(fontsize=7, ncol=min(5, len(present)))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="+", default=["politics", "science", "ai"])
    p.add_argument("--shots", nargs="+", type=int, default=[5, 10])
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--n-way", type=int, default=5, help="entity types per episode (drawn from the target's types)")
    p.add_argument("--rows", nargs="+", choices=ROWS, help="default: every row (the source rows with --source-steps)")
    p.add_argument("--query-limit", type=int, default=100, help="test sentences in the fixed query sample")
    p.add_argument("--steps", type=int, default=10, help="fewshot_ner updates on the support set")
    p.add_argument("--batch-size", type=int, default=8, help="support sentences per update")
    p.add_argument("--train-chunk", type=int, default=8,
                   help="instructions per forward/backward pass (fewshot_ner train_batch_size); memory grows with it: "
                        "32 took 14.6 GB RSS with SmolLM2")
    p.add_argument("--ner-steps", type=int, default=100, help="spaCy ner updates on the support set")
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"),
                   help="fewshot_ner's dtype and the transformer peer's precision (the committed tables: fp32)")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--prompt-format", default="auto", choices=["auto", "chat", "plain"])
    p.add_argument("--base-model", default=str(DEFAULT_BASE), help="causal LM directory or hub id")
    p.add_argument("--describe", action="store_true", help="give fewshot_ner a short definition of each type (DESCRIPTIONS)")
    p.add_argument("--negative-rate", type=float, default=1.0,
                   help="share of 'none' training instructions (types absent from a sentence) fewshot_ner keeps per update")
    p.add_argument("--source", default="conll2003", help="CrossNER folder of the source stage")
    p.add_argument("--source-steps", type=int, default=0, help="source-stage updates (0: no source stage or rows)")
    p.add_argument("--source-batch-size", type=int, default=8, help="source sentences per update")
    p.add_argument("--source-lr", type=float, default=0.001)
    p.add_argument("--source-negative-rate", type=float, default=1.0, help="negative_rate of the source stage")
    p.add_argument("--source-without-fgm", action="store_true",
                   help="train the plain source stage without FGM (as the fewshot workflow does) instead of the full method")
    p.add_argument("--source-full-lr", type=float, default=None, help="learning rate of the source_full row's target stage (default --lr)")
    p.add_argument("--source-full-negative-rate", type=float, default=None,
                   help="negative_rate of the source_full row's target stage (default --negative-rate)")
    p.add_argument("--source-n-way", type=int, default=5, help="types per episode of the episodic source stage")
    p.add_argument("--source-k-shot", type=int, default=5, help="mentions per type in an episode of the episodic source stage")
    p.add_argument("--spacy-source-epochs", type=int, default=3,
                   help="epochs of the spacy_ner_source and spacy_trf_source rows' source training")
    p.add_argument("--trf-model", default=DEFAULT_TRF,
                   help="Hugging Face encoder directory of the spacy_trf_source row (relative to the repository root)")
    p.add_argument("--results-name", default="fewshot_crossner", help="file name (no suffix) of the table, JSON and plot in benchmarks/results")
    p.add_argument("--merge-into", default=None, metavar="NAME",
                   help="at the end, also put this run's rows into benchmarks/results/NAME.{md,json,png}, keeping that "
                        "file's other rows (its settings must agree with this run's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.rows is None:
        args.rows = [row for row in ROWS if row not in LATER_ROWS and (args.source_steps or row not in SOURCE_ROWS)]
    if args.source_steps <= 0 and set(args.rows) & set(SOURCE_ROWS):
        p.error("the source rows need --source-steps N > 0")
    args.source_pool = sorted(path.name for path in DATA.iterdir() if (path / "train.txt").exists()) if DATA.is_dir() else []
    handler = logging.StreamHandler(sys.stdout)  # the source stages' progress (train_support's log_every)
    handler.setFormatter(logging.Formatter("%(message)s"))
    evaluate.logger.addHandler(handler)
    evaluate.logger.setLevel(logging.INFO)
    run(args)


if __name__ == "__main__":
    main()
