"""Build the embedded default model: a tokenizer trained on local text plus a small pretrained LM."""
import json
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from ..corpus.texts import iter_texts
from ..util import atomic_dir
from .head import check_tied, warm_up_head
from .models import CAUSAL_FAMILIES, MASKED_FAMILIES, build_model
from .pretrain import pretrain
from .tokenizer import train_tokenizer


def build_base(
    output: Union[str, Path],
    sources: Iterable[Union[str, Path]],
    *,
    family: str = "bert",
    vocab_size: int = 8000,
    hidden_size: int = 256,
    num_layers: int = 4,
    num_heads: int = 4,
    max_positions: int = 512,
    max_steps: int = 1000,
    max_seconds: Optional[float] = None,
    batch_size: int = 16,
    block_size: int = 128,
    learning_rate: float = 5e-4,
    save_steps: int = 0,
    seed: int = 0,
    gpu: bool = False,
    resume: bool = False,
) -> Dict:
    """Train a tokenizer on `sources` (DocBin, JSONL or IOB files), pretrain a small model of
    `family` on them for a bounded budget, and save a Hugging Face directory (safetensors) at
    `output`. Checkpoints (every `save_steps`, default a fifth of the run) live beside it in
    `<output>.checkpoints`, so `resume=True` continues.
    Returns the run's summary, also written to `<output>/msnr_base.json`.
    """
    if family not in MASKED_FAMILIES + CAUSAL_FAMILIES:
        raise ValueError(f"Unknown family {family!r}; expected one of {MASKED_FAMILIES + CAUSAL_FAMILIES}")
    output = Path(output)
    sources = [Path(s) for s in sources]
    texts: List[str] = [t for source in sources for t in iter_texts(source)]
    if not any(t.strip() for t in texts):
        raise ValueError(f"No text found in {[str(s) for s in sources]}")
    checkpoints = output.with_name(output.name + ".checkpoints")
    tokenizer_dir = checkpoints / "tokenizer"
    if resume and tokenizer_dir.exists():
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    else:
        tokenizer = train_tokenizer(texts, family, vocab_size=vocab_size)
        tokenizer.save_pretrained(tokenizer_dir)
    model = build_model(
        family, tokenizer, seed=seed, hidden_size=hidden_size, num_layers=num_layers,
        num_heads=num_heads, max_positions=max_positions,
    )
    summary: Dict = {"family": family, "sources": [str(s) for s in sources], "vocab_size": len(tokenizer),
                     "hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads,
                     "parameters": sum(p.numel() for p in model.parameters())}
    if max_steps > 0:
        summary.update(pretrain(
            model, tokenizer, texts, checkpoints, max_steps=max_steps, max_seconds=max_seconds,
            batch_size=batch_size, block_size=min(block_size, max_positions), learning_rate=learning_rate,
            seed=seed, gpu=gpu, resume=resume, save_steps=save_steps or max(50, max_steps // 5),
        ))
    with atomic_dir(output) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "msnr_base.json").write_text(json.dumps(summary, indent=2), encoding="utf8")
    return summary


def save_existing(
    name: str,
    output: Union[str, Path],
    arch: str = "masked",
    *,
    sources: Iterable[Union[str, Path]] = (),
    warmup_steps: int = 0,
    warmup_blocks: int = 512,
    warmup_lr: float = 5e-3,
    seed: int = 0,
) -> Dict:
    """Save a hub checkpoint or local model folder `name`, with its masked- or causal-LM head and
    tokenizer, as a safetensors directory at `output` (the path real checkpoints take).

    An encoder saved without an MLM head (a plain `BertModel`, such as all-MiniLM-L6-v2) gets
    one: the decoder tied to its word embeddings, the transform new (initialised from `seed`, so
    the same call saves the same model). `warmup_steps` > 0 then trains the head alone on
    `sources` (encoder frozen) and records the MLM loss before/after.
    """
    auto = {"masked": AutoModelForMaskedLM, "causal": AutoModelForCausalLM}[arch]
    if warmup_steps and arch != "masked":
        raise ValueError(f"The head warm-up is for masked LMs, not arch={arch!r}")
    torch.manual_seed(seed)  # the new head's initialisation (transformers draws it from torch's global RNG)
    try:
        model, info = auto.from_pretrained(name, output_loading_info=True)
    except ValueError as err:
        raise ValueError(f"{name} has no {arch}-LM head that transformers can load: {err}") from None
    tokenizer = AutoTokenizer.from_pretrained(name)
    missing = sorted(info["missing_keys"])
    prefix = model.base_model_prefix + "."
    if any(k.startswith(prefix) for k in missing):
        raise ValueError(f"{name}: encoder weights missing from the checkpoint: {[k for k in missing if k.startswith(prefix)]}")
    summary: Dict = {"source": name, "model_type": model.config.model_type,
                     "parameters": sum(p.numel() for p in model.parameters()),
                     "new_head_parameters": missing}
    if arch == "masked":
        check_tied(model)
    if warmup_steps:
        texts = [t for source in sources for t in iter_texts(source)]
        summary["head_warmup"] = warm_up_head(model, tokenizer, texts, steps=warmup_steps, blocks=warmup_blocks,
                                               learning_rate=warmup_lr, seed=seed)
    with atomic_dir(Path(output)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "msnr_base.json").write_text(json.dumps(summary, indent=2), encoding="utf8")
    return summary
