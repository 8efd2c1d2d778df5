"""Cross-domain few-shot NER on CrossNER: source conll2003 -> targets politics, science, ai.

For each target domain and K in --shots, samples --episodes greedy N-way K-shot support sets
from the target's train split (Few-NERD style, `spacy_msnr.corpus.episodes`; types drawn from
those with >= 2K mentions) and scores the first --query-limit test sentences, restricted to the
episode's types, with:
  cllmfs          fewshot_ner (LM + contrastive + adversarial), source-adapted on conll2003 first
  no_contrastive  the same with contrastive weight 0
  no_adversarial  the same with epsilon 0
  spacy_ner       spaCy's `ner` (CNN, no vectors) trained on the same shots
Prints micro-F1 mean ± std over episodes, query sentences/second and peak resident memory during
inference, and writes the table to benchmarks/results/fewshot_crossner.{md,json}.

The default base model is built locally (small Llama-shaped causal LM, briefly pretrained on the
training text) and cached under benchmarks/work/; --base-model takes any causal LM directory or
hub id instead. Budgets are options with small defaults, so expect low F1 from the local base.

    python benchmarks/fewshot_crossner.py --targets politics science ai --shots 5 10 --episodes 3
"""
import argparse
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import spacy  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy.util import minibatch  # noqa: E402
from thinc.api import Adam  # noqa: E402

from spacy_msnr.corpus.episodes import label_counts, load_docs, sample_episodes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MSNR_SHARED_DATA", ROOT.parent / "shared" / "data")) / "crossner"
WORK = ROOT / "benchmarks" / "work" / "fewshot_crossner"
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("cllmfs", "no_contrastive", "no_adversarial", "spacy_ner")


class PeakRSS:
    """Peak resident memory (MiB) of this process while the block runs, sampled every 5 ms."""

    def __enter__(self):
        self.peak, self._stop = _rss(), False
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop:
            self.peak = max(self.peak, _rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def docbin(domain: str, split: str, vocab) -> List:
    """The domain's split as Docs (converted once from the IOB file into WORK)."""
    from spacy.tokens import DocBin

    from spacy_msnr.corpus.iob import iob_to_docs

    path = WORK / f"{domain}-{split}.spacy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        DocBin(docs=iob_to_docs(DATA / domain / f"{split}.txt", vocab)).to_disk(path)
    return load_docs(path, vocab)


def local_base(args) -> str:
    """Build (once) the small local causal LM the component adapts."""
    from spacy_msnr.base.build import build_base

    out = WORK / f"base-llama-{args.base_hidden}x{args.base_layers}-{args.base_steps}"
    if not (out / "config.json").exists():
        sources = [WORK / f"{d}-train.spacy" for d in ["conll2003", *args.targets]]
        print(f"Building local base model at {out} ...", flush=True)
        summary = build_base(out, sources, family="llama", vocab_size=args.base_vocab, hidden_size=args.base_hidden,
                             num_layers=args.base_layers, num_heads=4, max_positions=512, max_steps=args.base_steps,
                             max_seconds=args.base_seconds, seed=0)
        print(json.dumps({k: v for k, v in summary.items() if k != "sources"}), flush=True)
    return str(out)


def component_config(args, base_model: str, variant: str) -> Dict:
    return {
        "max_new_tokens": args.max_new_tokens, "batch_size": 32, "train_batch_size": 32,
        "model": {
            "base_model": base_model, "answer_loss": args.answer_loss,
            "lora": {"r": args.lora_r, "alpha": 2 * args.lora_r, "dropout": 0.0, "target_modules": "all-linear"},
            "contrastive": {"layer": 0.75, "temperature": 0.07, "weight": 0.0 if variant == "no_contrastive" else args.contrastive_weight},
            "adversarial": {"epsilon": 0.0 if variant == "no_adversarial" else args.epsilon},
        },
    }


def train(nlp, examples: List[Example], steps: int, lr: float, batch_size: int, seed: int, labels=None) -> float:
    spacy.util.fix_random_seed(seed)
    if labels is None:
        nlp.initialize(lambda: examples)
    else:
        nlp.get_pipe("fewshot_ner").initialize(lambda: examples, nlp=nlp, labels=labels)
    sgd = Adam(lr)
    start, step = time.perf_counter(), 0
    while step < steps:
        for batch in minibatch(examples, size=batch_size):
            nlp.update(batch, sgd=sgd)
            step += 1
            if step >= steps:
                break
    return time.perf_counter() - start


def score(nlp, query) -> Dict[str, float]:
    examples = [Example(nlp.make_doc(d.text), d) for d in query]
    with PeakRSS() as mem:
        start = time.perf_counter()
        scores = nlp.evaluate(examples)
        seconds = time.perf_counter() - start
    return {"f": scores["ents_f"], "p": scores["ents_p"], "r": scores["ents_r"],
            "sents_per_s": len(examples) / seconds, "peak_mib": mem.peak}


def source_adapted(args, base_model: str, variant: str, vocab) -> bytes:
    """The component trained on conll2003 for --source-steps, as bytes (cached per variant)."""
    path = WORK / f"source-{variant}-{Path(base_model).name}-{args.source_steps}-{args.answer_loss}.bin"
    if path.exists():
        return path.read_bytes()
    nlp = spacy.blank("en")
    nlp.add_pipe("fewshot_ner", config=component_config(args, base_model, variant))
    docs = [d for d in docbin("conll2003", "train", vocab) if d.ents][: args.source_steps * 8]
    examples = [Example(nlp.make_doc(d.text), d) for d in docs]
    seconds = train(nlp, examples, args.source_steps, args.lr, 8, 0)
    print(f"  source stage ({variant}): {args.source_steps} steps in {seconds:.0f}s", flush=True)
    data = nlp.to_bytes()
    path.write_bytes(data)
    return data


def run(args) -> None:
    vocab = spacy.blank("en").vocab
    for domain in ["conll2003", *args.targets]:
        docbin(domain, "train", vocab)
    base_model = args.base_model or local_base(args)
    rows = []
    sources = {v: source_adapted(args, base_model, v, vocab) for v in args.variants if v != "spacy_ner"}
    for target in args.targets:
        train_docs = docbin(target, "train", vocab)
        query_docs = docbin(target, "test", vocab)[: args.query_limit]
        for k in args.shots:
            types = sorted(t for t, n in label_counts(train_docs).items() if n >= 2 * k)
            try:
                episodes = sample_episodes(train_docs, query_docs, min(args.n_way, len(types)), k, args.episodes,
                                           seed=args.seed, labels=types)
            except ValueError as err:
                print(f"{target} K={k}: cannot sample episodes ({err})", flush=True)
                continue
            for variant in args.variants:
                results = []
                for i, ep in enumerate(episodes):
                    if variant == "spacy_ner":
                        nlp = spacy.blank("en")
                        nlp.add_pipe("ner")
                        support = [Example(nlp.make_doc(d.text), d) for d in ep.support]
                        train(nlp, support, args.ner_steps, 0.001, 8, args.seed + i)
                    else:
                        nlp = spacy.blank("en")
                        nlp.add_pipe("fewshot_ner", config=component_config(args, base_model, variant))
                        nlp.from_bytes(sources[variant])
                        support = [Example(nlp.make_doc(d.text), d) for d in ep.support]
                        train(nlp, support, args.steps, args.lr, 8, args.seed + i, labels={t: t for t in ep.labels})
                    result = score(nlp, ep.query)
                    results.append(result)
                    print(f"{target} K={k} {variant} episode {i}: F1 {100 * result['f']:.2f} "
                          f"({len(ep.support)} support, {result['sents_per_s']:.1f} sents/s)", flush=True)
                f = [r["f"] for r in results]
                rows.append({
                    "target": target, "k": k, "variant": variant, "types": len(episodes[0].labels), "episodes": len(f),
                    "f_mean": 100 * statistics.mean(f), "f_std": 100 * (statistics.stdev(f) if len(f) > 1 else 0.0),
                    "sents_per_s": statistics.mean(r["sents_per_s"] for r in results),
                    "peak_mib": max(r["peak_mib"] for r in results),
                })
    table = ["| target | K | types | variant | micro-F1 (mean ± std) | query sents/s | peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {r['target']} | {r['k']} | {r['types']} | {r['variant']} | {r['f_mean']:.2f} ± {r['f_std']:.2f} "
              f"| {r['sents_per_s']:.1f} | {r['peak_mib']:.0f} |" for r in rows]
    print("\n".join(table))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fewshot_crossner.md").write_text("\n".join(table) + "\n\nSettings: " + json.dumps(vars(args)) + "\n")
    (RESULTS / "fewshot_crossner.json").write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2))


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", nargs="+", default=["politics", "science", "ai"])
    p.add_argument("--shots", nargs="+", type=int, default=[5, 10])
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--n-way", type=int, default=5, help="entity types per episode (drawn from the target's types)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--query-limit", type=int, default=50, help="test sentences scored per target")
    p.add_argument("--steps", type=int, default=30, help="component updates on the support set")
    p.add_argument("--source-steps", type=int, default=60, help="component updates on conll2003 before the target")
    p.add_argument("--ner-steps", type=int, default=100, help="spaCy ner updates on the support set")
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--epsilon", type=float, default=0.1)
    p.add_argument("--contrastive-weight", type=float, default=0.1)
    p.add_argument("--answer-loss", default="constrained", choices=["lm", "constrained"])
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--base-model", default=None, help="causal LM directory or hub id (default: build a local one)")
    p.add_argument("--base-vocab", type=int, default=4000)
    p.add_argument("--base-hidden", type=int, default=128)
    p.add_argument("--base-layers", type=int, default=2)
    p.add_argument("--base-steps", type=int, default=300)
    p.add_argument("--base-seconds", type=float, default=120)
    p.add_argument("--seed", type=int, default=0)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
