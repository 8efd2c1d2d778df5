"""Where `fewshot_ner`'s time and memory go: one training update and one scoring run of the
CrossNER table's settings, under torch.profiler, beside the matmul peak of this machine.

    OMP_NUM_THREADS=2 python benchmarks/fewshot_profile.py [--base-model assets/models/smollm2-135m-instruct] \
        [--target politics] [--k-shot 5] [--query 20] [--batch-size 4] \
        --output benchmarks/results/fewshot/fewshot_profile.json

One 5-way K-shot episode of CrossNER `--target` (the benchmarks' episode draw), the full method
(`fewshot_pipeline`, fp32 base as the table's rows): the pipeline is initialized on the support
set, then (1) one `nlp.update` on `--batch-size` support sentences and (2) `nlp.pipe` over
`--query` query sentences, each run twice: once plain (wall time, peak RSS), once profiled
(torch.profiler, CPU, with FLOPs). Reported per phase:
wall and CPU seconds, the share of wall time inside torch operators (the rest is Python and
other overhead), the top operators by self CPU time, the FLOPs the profiler counts for matmuls
and their achieved GFLOP/s against the measured peak of `torch.mm` at the model's shapes, and
the peak RSS (sampled) of each phase: loading, initializing, the update, scoring.
"""
import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("MSNR_SHARED_DATA", ROOT.parent / "shared" / "data")) / "crossner"
WORK = ROOT / "benchmarks" / "work" / "fewshot_crossner"  # the DocBins fewshot_crossner.py converts
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")


def matmul_peak(hidden: int, intermediate: int, tokens: int = 512, repeats: int = 20) -> float:
    """GFLOP/s of fp32 `torch.mm` at the model's two matmul shapes (tokens x hidden x intermediate and back)."""
    import torch

    a, w1, w2 = torch.randn(tokens, hidden), torch.randn(hidden, intermediate), torch.randn(intermediate, hidden)
    for _ in range(3):
        torch.mm(torch.mm(a, w1), w2)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(torch.mm(a, w1), w2)
    seconds = time.perf_counter() - start
    return 2 * 2 * tokens * hidden * intermediate * repeats / seconds / 1e9


def summarize(prof, wall: float, cpu: float, top: int = 12) -> Dict[str, Any]:
    """A profile as figures: operator share of wall time, top operators, matmul FLOPs and rate."""
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    self_us = sum(e.self_cpu_time_total for e in events)
    flops = sum(getattr(e, "flops", 0) or 0 for e in events)
    matmul_us = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    threads = __import__("torch").get_num_threads()
    return {
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        # self CPU time is summed over threads: divided by the thread count it is comparable to wall time
        "operator_share_of_wall": round(self_us / 1e6 / threads / wall, 3) if wall else None,
        "matmul_gflop": round(flops / 1e9, 2),
        "matmul_gflop_per_s": round(flops / 1e9 / (matmul_us / 1e6 / threads), 1) if matmul_us else None,
        "top_ops": [{"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 1), "calls": e.count,
                     "share_of_op_time": round(e.self_cpu_time_total / self_us, 3) if self_us else 0.0} for e in ranked],
    }


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-model", default=str(ROOT / "assets" / "models" / "smollm2-135m-instruct"))
    p.add_argument("--target", default="politics")
    p.add_argument("--k-shot", type=int, default=5)
    p.add_argument("--query", type=int, default=20, help="query sentences scored")
    p.add_argument("--batch-size", type=int, default=4, help="support sentences in the profiled update")
    p.add_argument("--train-chunk", type=int, default=32, help="fewshot_ner's train_batch_size (as the table)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--data", type=Path, default=DATA, help="CrossNER folder (<domain>/<split>.txt)")
    p.add_argument("--query-split", default="test", help="the split the query sentences come from")
    p.add_argument("--output", type=Path, help="JSON to write (e.g. benchmarks/results/fewshot/fewshot_profile.json)")
    args = p.parse_args(argv)

    import spacy
    import torch
    from spacy.training import Example
    from thinc.api import Adam
    from torch.profiler import ProfilerActivity, profile

    from spacy_msnr.corpus.iob import iob_split
    from spacy_msnr.fewshot.evaluate import PeakRSS, fewshot_pipeline, fixed_query_episodes, rss_mib
    from spacy_msnr.fewshot.model import get_shim

    vocab = spacy.blank("en").vocab
    train_docs, test_docs = (iob_split(args.data, args.target, split, vocab, WORK) for split in ("train", args.query_split))
    episode = fixed_query_episodes(train_docs, test_docs, 5, args.k_shot, 1, args.query, 0)[0]
    memory: Dict[str, float] = {"start": round(rss_mib())}
    with PeakRSS() as mem:
        nlp = fewshot_pipeline(episode.labels, args.base_model, max_new_tokens=args.max_new_tokens, train_batch_size=args.train_chunk)
        support = [Example(nlp.make_doc(d.text), d) for d in episode.support]
        spacy.util.fix_random_seed(0)
        nlp.initialize(lambda: support)
    memory["load_and_initialize"] = round(mem.peak)
    config = get_shim(nlp.get_pipe("fewshot_ner").model).model.config
    peak = matmul_peak(config.hidden_size, config.intermediate_size)
    out: Dict[str, Any] = {"date": date.today().isoformat(), "base_model": Path(args.base_model).name, "target": args.target,
                           "k_shot": args.k_shot, "labels": episode.labels, "support": len(support),
                           "update_sentences": args.batch_size, "query": len(episode.query),
                           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                           "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
                           "matmul_peak_gflop_per_s": round(peak, 1), "phases": {}}
    optimizer = Adam(0.003)
    batch = support[: args.batch_size]
    nlp.update(batch, sgd=optimizer)  # warm-up: the first update builds what later ones reuse
    for name, run in (("update", lambda: nlp.update(batch, sgd=optimizer)),
                      ("score", lambda: list(nlp.pipe(d.text for d in episode.query)))):
        with PeakRSS() as mem:  # memory and time without the profiler (its event records take memory too)
            start, cpu = time.perf_counter(), time.process_time()
            run()
            plain_wall = time.perf_counter() - start
        memory[name] = round(mem.peak)
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            start, cpu = time.perf_counter(), time.process_time()
            run()
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        out["phases"][name] = {"wall_s_unprofiled": round(plain_wall, 3), **summarize(prof, wall, cpu)}
    out["phases"]["score"]["query_sentences_per_s"] = round(len(episode.query) / out["phases"]["score"]["wall_s_unprofiled"], 3)
    out["peak_rss_mib"] = memory
    for name, phase in out["phases"].items():
        print(f"{name}: {phase['wall_s']:.2f} s wall, {phase['operator_share_of_wall']:.0%} in torch operators, "
              f"{phase['matmul_gflop']:.1f} GFLOP in matmuls at {phase['matmul_gflop_per_s']} GFLOP/s (peak {peak:.0f}); "
              f"top: " + ", ".join(f"{o['op']} {o['share_of_op_time']:.0%}" for o in phase["top_ops"][:4]))
    print("peak RSS MiB by phase:", memory)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
