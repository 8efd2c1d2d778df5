"""MSLM training throughput versus plain uniform-MLM, same model, same batches, same run.

    python benchmarks/mslm_throughput.py [--model DIR] [--steps 20] [--rounds 3] [--gpu-id 0]

Both objectives train the same randomly initialised copy of one model (BERT 4x256 on an
8000-piece tokenizer unless --model is given) on the same NCBI-disease batches with the same
AdamW step; they alternate in rounds so that machine noise hits both alike. Prints wordpieces/s
for each and MSLM / uniform, and also a plain Hugging Face uniform-MLM step (the model's own
full-vocabulary loss with transformers' DataCollatorForLanguageModeling) as a reference. With --gpu-id and --flops it also prints model FLOPs utilisation.
"""
import argparse
import json
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from spacy.util import registry  # noqa: E402
from spacy.vocab import Vocab  # noqa: E402
from thinc.api import Config  # noqa: E402

from spacy_msnr.corpus.iob import iob_to_docs  # noqa: E402
from spacy_msnr.mslm.metrics import pack  # noqa: E402
from spacy_msnr.mslm.model import torch_module  # noqa: E402
from spacy_msnr.mslm.terms import GoldTerms  # noqa: E402
from spacy_msnr.mslm.train import encode, update_micro_batch  # noqa: E402

DATA = Path(os.environ.get("MSNR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

OBJECTIVES = {
    "mslm": ({"@msnr_maskers": "spacy_msnr.mask_specific.v1", "elm_rate": 0.5, "blm_rate": 0.15, "replacement": "mask"},
             {"@msnr_weightings": "spacy_msnr.softmax_share.v1"}),
    "uniform": ({"@msnr_maskers": "spacy_msnr.uniform.v1", "rate": 0.15, "replacement": "bert"},
                {"@msnr_weightings": "spacy_msnr.unweighted.v1"}),
}


def build_base(out: Path, family: str, hidden: int, layers: int, heads: int, vocab: int) -> Path:
    """A random-init model + tokenizer trained on the PubMed abstracts, saved to `out`."""
    import srsly

    from spacy_msnr.base.models import build_model
    from spacy_msnr.base.tokenizer import train_tokenizer

    texts = [r["text"] for r in srsly.read_jsonl(DATA / "pubmed" / "abstracts.jsonl")]
    tok = train_tokenizer(texts, family, vocab_size=vocab)
    model = build_model(family, tok, hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=4 * hidden)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def build(name: Path, objective: str, mixed_precision: bool):
    masker, weighting = OBJECTIVES[objective]
    cfg = Config({"model": {"@architectures": "spacy_msnr.MaskSpecificMLM.v1", "name": str(name), "masker": masker,
                            "weighting": weighting, "mixed_precision": mixed_precision}})
    return registry.resolve(cfg)["model"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="masked-LM directory (default: build BERT 4x256 with random weights)")
    parser.add_argument("--family", default="bert")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--batch-size", type=int, default=2048, help="wordpieces per batch (padding included)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per objective per round (progress line)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--output", type=Path, help="JSON for the docs' table (e.g. benchmarks/results/mslm/mslm_throughput_minilm.json)")
    parser.add_argument("--machine", default="", help="How the machine ran, for the table (default: device and torch threads)")
    args = parser.parse_args()

    device = torch.device(f"cuda:{args.gpu_id}" if args.gpu_id >= 0 else "cpu")
    tmp = tempfile.TemporaryDirectory()
    name = args.model or build_base(Path(tmp.name) / "base", args.family, args.hidden, args.layers, args.heads, args.vocab)
    models = {obj: build(name, obj, args.bf16) for obj in OBJECTIVES}
    # identical starting weights for both
    state = copy.deepcopy(torch_module(models["mslm"]).state_dict())
    docs = iob_to_docs(DATA / "blurb" / "NCBI-disease-IOB" / "train.tsv", Vocab())
    seqs = encode(docs, models["mslm"].attrs["tokenizer"], GoldTerms(), args.max_length)
    batches = pack([len(s) for s in seqs], np.random.default_rng(0).permutation(len(seqs)), args.batch_size)
    optimizers = {}
    for obj, model in models.items():
        module = torch_module(model)
        module.load_state_dict(state)
        module.to(device)
        model.initialize(X=seqs)
        optimizers[obj] = torch.optim.AdamW(module.parameters(), lr=5e-5)
    n_params = sum(p.numel() for p in torch_module(models["mslm"]).parameters())
    print(f"model: {name} | {n_params / 1e6:.1f} M parameters | device {device} | batch {args.batch_size} wordpieces | "
          f"torch threads {torch.get_num_threads()}", flush=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run(obj: str, i: int) -> int:
        model, opt = models[obj], optimizers[obj]
        model.get_ref("masking").attrs["rng"] = np.random.default_rng([0, i])
        pieces = update_micro_batch(model, [seqs[j] for j in batches[i % len(batches)]])["wordpieces"]
        opt.step()
        opt.zero_grad(set_to_none=True)
        return pieces

    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling

    plain = AutoModelForMaskedLM.from_pretrained(str(name)).to(device)
    plain.load_state_dict({k[3:]: v for k, v in state.items() if k.startswith("hf.")})
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=5e-5)
    collator = DataCollatorForLanguageModeling(models["mslm"].attrs["tokenizer"], mlm_probability=0.15, return_tensors="pt")

    def run_plain(i: int) -> int:
        batch = collator([{"input_ids": seqs[j].input_ids.tolist()} for j in batches[i % len(batches)]])
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16 and device.type == "cuda"):
            loss = plain(**batch).loss
        loss.backward()
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum())

    runners = {"mslm": lambda i: run("mslm", i), "uniform": lambda i: run("uniform", i), "hf_plain": run_plain}
    for i in range(2):  # warm-up
        for runner in runners.values():
            runner(i)
    # Interleave single steps (rotating the order) so that load on a shared machine hits all alike;
    # count both wall-clock and this process's CPU time.
    totals = {obj: [0, 0.0, 0.0] for obj in runners}
    names = list(runners)
    for step in range(args.steps * args.rounds):
        i = 2 + step
        for obj in names[step % 3:] + names[: step % 3]:
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            pieces = runners[obj](i)
            sync()
            totals[obj][0] += pieces
            totals[obj][1] += time.perf_counter() - wall
            totals[obj][2] += time.process_time() - cpu
        if (step + 1) % args.steps == 0:
            print(f"after {step + 1} steps: " + " | ".join(f"{o} {t[0] / t[1]:,.0f} wp/s" for o, t in totals.items()), flush=True)
    wall_rate = {o: t[0] / t[1] for o, t in totals.items()}
    cpu_rate = {o: t[0] / t[2] for o, t in totals.items()}
    mslm = wall_rate["mslm"]
    print(f"\nwordpieces/s (wall)        MSLM {wall_rate['mslm']:,.0f} | uniform MLM (same layers) {wall_rate['uniform']:,.0f} | plain HF uniform MLM {wall_rate['hf_plain']:,.0f}")
    print(f"wordpieces/CPU-second      MSLM {cpu_rate['mslm']:,.0f} | uniform MLM (same layers) {cpu_rate['uniform']:,.0f} | plain HF uniform MLM {cpu_rate['hf_plain']:,.0f}")
    print(f"ratio MSLM / uniform MLM (same layers) = {wall_rate['mslm'] / wall_rate['uniform']:.3f} wall, {cpu_rate['mslm'] / cpu_rate['uniform']:.3f} CPU")
    print(f"ratio MSLM / plain HF uniform MLM      = {wall_rate['mslm'] / wall_rate['hf_plain']:.3f} wall, {cpu_rate['mslm'] / cpu_rate['hf_plain']:.3f} CPU")
    if args.output:
        ratio = lambda other: f"{wall_rate['mslm'] / wall_rate[other]:.3f} wall, {cpu_rate['mslm'] / cpu_rate[other]:.3f} CPU"  # noqa: E731
        record = {"machine": args.machine or f"{device}, {torch.get_num_threads()} torch threads",
                  "wordpieces_per_s": {"mslm": f"{wall_rate['mslm']:,.0f}", "uniform_same_layers": f"{wall_rate['uniform']:,.0f}",
                                       "plain_hf_uniform": f"{wall_rate['hf_plain']:,.0f}"},
                  "ratio_uniform": ratio("uniform"), "ratio_plain_hf": ratio("hf_plain"),
                  "command": " ".join(["python", *sys.argv]), "caveat": ""}
        args.output.write_text(json.dumps(record, indent=2) + "\n")
    if device.type == "cuda":
        # 6 * params * tokens FLOPs per training token (forward + backward), against the GPU's bf16 dense peak
        peak = float(os.environ.get("PEAK_TFLOPS", "989")) * 1e12
        print(f"model FLOPs utilisation (6*N*tokens / {peak / 1e12:.0f} TFLOP/s): MSLM {6 * n_params * mslm / peak:.1%}")
    tmp.cleanup()
    sys.exit(0)


if __name__ == "__main__":
    main()
