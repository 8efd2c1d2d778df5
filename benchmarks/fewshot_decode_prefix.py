"""In-context decoding: the shared-prefix attention against a copy of the prefix per row.

`fewshot_ner` with `demonstrations` (the CrossNER table's in_context row) puts the whole support
set before every query sentence. Decoding behind that prefix used to give each row of a batch its
own copy of the prefix's key/value cache, copied again at every step; `prefix_attention` attends
over one copy per job. This script decodes the same query sentences of one CrossNER episode both
ways, side by side in one process (alternating, --repeats times each), and reports query
sentences/s of each, their ratio, and whether the entities found are identical.

    OMP_NUM_THREADS=1 python benchmarks/fewshot_decode_prefix.py --target politics --shots 5 --queries 6
"""
import argparse
import json
import os
import platform
import statistics
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, Optional
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import spacy  # noqa: E402
import torch  # noqa: E402
from spacy.training import Example  # noqa: E402

from spacy_msnr.corpus.iob import iob_split  # noqa: E402
from spacy_msnr.fewshot import prefix_attention  # noqa: E402
from spacy_msnr.fewshot.base_model import split_causal_lm  # noqa: E402
from spacy_msnr.fewshot.evaluate import MAX_DEMONSTRATIONS, fewshot_pipeline, fixed_query_episodes  # noqa: E402
from spacy_msnr.fewshot.model import get_shim  # noqa: E402
from spacy_msnr.util import atomic_write_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "fewshot"
#: The CrossNER corpus and the DocBins benchmarks/fewshot_crossner.py converts it into.
DATA = Path(os.environ.get("MSNR_SHARED_DATA", ROOT.parent / "shared" / "data")) / "crossner"
WORK = ROOT / "benchmarks" / "work" / "fewshot_crossner"
DEFAULT_BASE = ROOT / "assets" / "models" / "smollm2-135m-instruct"
#: The CrossNER table's query sample (its --query-limit default), so the episode and queries are its own.
QUERY_LIMIT = 100


def episode(args) -> Any:
    """Episode --episode of --target at K = --shots, drawn as the CrossNER table draws it."""
    vocab = spacy.blank("en").vocab
    train_docs, test_docs = (iob_split(DATA, args.target, split, vocab, WORK) for split in ("train", "test"))
    return fixed_query_episodes(train_docs, test_docs, args.n_way, args.shots, args.episode + 1, QUERY_LIMIT, args.seed)[args.episode]


def decode(nlp, texts: List[str], shared: bool) -> Dict[str, Any]:
    """Entities of every text and the wall/CPU seconds, with or without the shared-prefix attention."""
    with nullcontext() if shared else mock.patch.object(prefix_attention, "supported", return_value=False):
        start, cpu = time.perf_counter(), time.process_time()
        docs = list(nlp.pipe(texts))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu_s": cpu, "ents": [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]}


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="politics")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--episode", type=int, default=0)
    p.add_argument("--n-way", type=int, default=5)
    p.add_argument("--queries", type=int, default=6, help="query sentences decoded each way")
    p.add_argument("--repeats", type=int, default=1, help="runs of each way (alternating)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--base-model", default=str(DEFAULT_BASE))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results-name", default="fewshot_decode_prefix")
    args = p.parse_args(argv)
    load = os.getloadavg()
    ep = episode(args)
    nlp = fewshot_pipeline(ep.labels, args.base_model, max_new_tokens=args.max_new_tokens, train_batch_size=32,
                           demonstrations=MAX_DEMONSTRATIONS)  # the CrossNER table's in_context row
    nlp.initialize(lambda: [Example(nlp.make_doc(d.text), d) for d in ep.support])
    pipe = nlp.get_pipe("fewshot_ner")
    texts = [d.text for d in ep.query[: args.queries]]
    prefix_tokens = len(pipe.builder.prefix_ids(ep.labels[0]))
    print(f"{args.target} K={args.shots} episode {args.episode}: {len(ep.support)} support sentences as examples "
          f"({prefix_tokens} prompt tokens before the text), {len(texts)} query sentences x {len(ep.labels)} types; "
          f"shared-prefix attention supported: {prefix_attention.supported(split_causal_lm(get_shim(pipe.model).model)[0])}", flush=True)
    runs: Dict[str, List[Dict[str, Any]]] = {"copied": [], "shared": []}
    for _ in range(args.repeats):
        for way in ("copied", "shared"):
            runs[way].append(decode(nlp, texts, way == "shared"))
            r = runs[way][-1]
            print(f"  {way}: {r['seconds']:.1f} s wall, {r['cpu_s']:.1f} CPU s, {len(texts) / r['seconds']:.3f} sents/s", flush=True)
    same = all(r["ents"] == runs["copied"][0]["ents"] for way in runs for r in runs[way])
    rate = {way: [len(texts) / r["seconds"] for r in rs] for way, rs in runs.items()}
    ratios = [c["seconds"] / s["seconds"] for c, s in zip(runs["copied"], runs["shared"])]
    result = {
        "target": args.target, "k": args.shots, "episode": args.episode, "labels": ep.labels, "support": len(ep.support),
        "prefix_tokens": prefix_tokens, "queries": len(texts), "repeats": args.repeats, "max_new_tokens": args.max_new_tokens,
        "batch_size": pipe.cfg["batch_size"], "base_model": Path(args.base_model).name,
        "sents_per_s": {way: statistics.mean(v) for way, v in rate.items()},
        "wall_s": {way: [round(r["seconds"], 2) for r in rs] for way, rs in runs.items()},
        "cpu_s": {way: [round(r["cpu_s"], 2) for r in rs] for way, rs in runs.items()},
        "speedup": statistics.mean(ratios), "speedups": [round(x, 3) for x in ratios], "identical_entities": same,
        "entities_found": sum(len(e) for e in runs["shared"][0]["ents"]),
        "torch_threads": torch.get_num_threads(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"), "load_before": load[0], "load_after": os.getloadavg()[0],
    }
    print(json.dumps({k: result[k] for k in ("sents_per_s", "speedup", "identical_entities", "entities_found")}), flush=True)
    atomic_write_bytes(RESULTS / f"{args.results_name}.json", json.dumps(result, indent=2).encode())
    md = [
        "| decoding behind the in-context examples | query sents/s | wall s per run |", "|---|---:|---:|",
        *(f"| {way} | {result['sents_per_s'][way]:.3f} | {', '.join(f'{s:.1f}' for s in result['wall_s'][way])} |"
          for way in ("copied", "shared")),
        "", f"Speed-up (copied wall s / shared wall s, per pair of runs): {result['speedup']:.1f}x; entities identical: "
        f"{'yes' if same else 'NO'} ({result['entities_found']} found). {args.target}, K = {args.shots}, episode "
        f"{args.episode}: {result['support']} support sentences as examples ({prefix_tokens} prompt tokens before each "
        f"text), {len(texts)} query sentences x {len(ep.labels)} types, decoding batch {result['batch_size']}, "
        f"max_new_tokens {args.max_new_tokens}; {torch.get_num_threads()} torch thread(s), {result['machine']}, "
        f"{result['date']}, load average {result['load_before']:.2f} before and {result['load_after']:.2f} after.",
        "", f"`python benchmarks/fewshot_decode_prefix.py --target {args.target} --shots {args.shots} --queries "
        f"{args.queries} --repeats {args.repeats}`",
    ]
    atomic_write_bytes(RESULTS / f"{args.results_name}.md", ("\n".join(md) + "\n").encode())


if __name__ == "__main__":
    main()
