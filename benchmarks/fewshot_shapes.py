"""Speed and memory of `fewshot_ner` at a real model's shape, with random weights (for a GPU).

    python benchmarks/fewshot_shapes.py --tokenizer assets/models/smollm2-135m-instruct \
        --shapes smollm2 1b --gpu-id 0 --steps 5 --query-limit 50 --out results-dir

Builds a random `LlamaForCausalLM` of each shape (SmolLM2-135M's own config, or a Llama of about
1.2 B parameters with SmolLM2's vocabulary), saves it with the given tokenizer, and runs one
5-way K-shot CrossNER episode of the full method on it (trained and scored as
`benchmarks/fewshot_crossner.py` does: `spacy_msnr.fewshot.evaluate`'s `train_support` and
`score_query`): seconds per update, query sentences/s, peak GPU memory
(`torch.cuda.max_memory_allocated`) and peak RSS. Random weights decode to the token limit for
every (sentence, type), so the query rate is a lower bound and F1 means nothing. On a GPU,
fewshot_ner's dtype "auto" is bfloat16. Writes fewshot_shapes.{json,md} to --out.
"""
import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
#: The CrossNER corpus and the DocBins benchmarks/fewshot_crossner.py converts it into.
DATA = Path(os.environ.get("MSNR_SHARED_DATA", ROOT.parent / "shared" / "data")) / "crossner"
WORK = ROOT / "benchmarks" / "work" / "fewshot_crossner"

#: Config changes to SmolLM2-135M's config.json for each shape ("tiny" is for tests on a CPU).
SHAPES: Dict[str, Dict[str, int]] = {
    "smollm2": {},
    "1b": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
           "intermediate_size": 8192, "head_dim": 64},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "intermediate_size": 128, "head_dim": 16},
}


def build(tokenizer_dir: Path, shape: str, out: Path) -> int:
    """Save a random Llama of `shape` with the tokenizer of `tokenizer_dir` at `out`; its parameter count."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = json.loads((tokenizer_dir / "config.json").read_text())
    config.update(SHAPES[shape])
    config["torch_dtype"] = "float32"
    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    with torch.device("cuda" if cuda else "cpu"):  # a 1 B init is slow on a CPU core
        model = LlamaForCausalLM(LlamaConfig(**config))
    if cuda:  # what fewshot_ner's dtype "auto" loads on a GPU anyway; half the bytes to write and read
        model.to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "generation_config.json"):
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, out / name)
    params = sum(p.numel() for p in model.parameters())
    del model
    return params


def measure(args, shape: str, work: Path) -> Dict[str, Any]:
    import spacy
    import torch
    from spacy.training import Example

    from spacy_msnr.corpus.iob import iob_split
    from spacy_msnr.fewshot.evaluate import fewshot_pipeline, fixed_query_episodes, score_query, train_support
    from spacy_msnr.fewshot.model import get_shim

    folder = work / f"random-{shape}"
    start = time.perf_counter()
    params = build(args.tokenizer, shape, folder)
    build_s = time.perf_counter() - start
    vocab = spacy.blank("en").vocab
    train_docs, test_docs = (iob_split(DATA, args.target, split, vocab, WORK) for split in ("train", "test"))
    episode = fixed_query_episodes(train_docs, test_docs, 5, args.k_shot, 1, args.query_limit, 0)[0]
    nlp = fewshot_pipeline(episode.labels, str(folder), lora_r=args.lora_r, max_new_tokens=args.max_new_tokens,
                           train_batch_size=args.train_chunk)  # the CrossNER table's full row at its default --precision fp32
    support = [Example(nlp.make_doc(d.text), d) for d in episode.support]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trained = train_support(nlp, support, args.steps, args.lr, args.batch_size, 0).record()
    train_mem = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    scored = score_query(nlp, episode.query, peak_rss=True).record()
    dtype = str(next(get_shim(nlp.get_pipe("fewshot_ner").model).model.parameters()).dtype)
    return {"shape": shape, "parameters": params, "dtype": dtype, "build_s": round(build_s, 1),
            "support": len(support), "query": len(episode.query), "updates": args.steps, **trained, **scored,
            "peak_gpu_mib_train": round(train_mem),
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if torch.cuda.is_available() else 0}


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", type=Path, required=True, help="folder with SmolLM2's config.json and tokenizer")
    p.add_argument("--shapes", nargs="+", default=["smollm2", "1b"], choices=list(SHAPES))
    p.add_argument("--target", default="politics")
    p.add_argument("--k-shot", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--train-chunk", type=int, default=8)
    p.add_argument("--query-limit", type=int, default=50)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--work", type=Path, default=Path("/tmp/fewshot_shapes"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.gpu_id >= 0:
        import spacy

        spacy.require_gpu(args.gpu_id)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for shape in args.shapes:
        results.append(measure(args, shape, args.work))
        r = results[-1]
        print(f"{shape}: {r['parameters'] / 1e6:.0f} M params ({r['dtype']}), {r['updates']} updates of "
              f"{args.batch_size} of {r['support']} support sentences: {r['s_per_update']:.2f} s/update; "
              f"{r['query']} query sentences at {r['sents_per_s']:.2f}/s; peak GPU {r['peak_gpu_mib']} MiB "
              f"(training {r['peak_gpu_mib_train']}), peak RSS {r['peak_mib']:.0f} MiB", flush=True)
        (args.out / "fewshot_shapes.json").write_text(json.dumps(results, indent=1))
    table = ["| shape | params | dtype | s/update | query sents/s | peak GPU MiB (train) | peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {r['shape']} | {r['parameters'] / 1e6:.0f} M | {r['dtype']} | {r['s_per_update']:.2f} | "
              f"{r['sents_per_s']:.2f} | {r['peak_gpu_mib']} ({r['peak_gpu_mib_train']}) | {r['peak_mib']:.0f} |"
              for r in results]
    (args.out / "fewshot_shapes.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
