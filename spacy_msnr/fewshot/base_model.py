"""The Hugging Face causal LM under the LoRA adapters: whether a model is one, which modules get
LoRA, the base weights' dtype, fresh LoRA weights from a seeded generator, loading saved adapter
weights, and what the training pass needs to know of the model's structure (backbone and head,
depth, window, the contrastive layer)."""
import math
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from ..precision import check_precision, weights_dtype

#: LoRA target modules for the families we test; others fall back to peft's own table.
TARGET_MODULES = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gpt2": ["c_attn", "c_proj"],
}


def init_lora(peft_model, seed: int) -> None:
    """Fresh LoRA weights as peft initialises them (A: Kaiming-uniform with a = sqrt(5), the
    nn.Linear default; B: zero, so the adapted model starts as the base), drawn from a local
    generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, module in sorted(peft_model.named_modules(), key=lambda item: item[0]):
            if isinstance(getattr(module, "lora_A", None), torch.nn.ModuleDict):
                for adapter in module.lora_A:
                    torch.nn.init.kaiming_uniform_(module.lora_A[adapter].weight, a=math.sqrt(5), generator=generator)
                    torch.nn.init.zeros_(module.lora_B[adapter].weight)


def load_adapter(peft_model, path: Path) -> None:
    """Load LoRA weights from safetensors; error unless every adapter key is present and used."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(path))
    expected = set(get_peft_model_state_dict(peft_model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path}: adapter weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]}); "
            "was it saved with another base model or LoRA configuration?"
        )
    result = set_peft_model_state_dict(peft_model, state)
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"{path}: peft did not use adapter keys {result.unexpected_keys[:5]}.")
    now = get_peft_model_state_dict(peft_model)
    for key, value in state.items():
        if not torch.equal(now[key].detach().cpu().to(value.dtype), value):
            raise ValueError(f"{path}: adapter weight {key} was not loaded.")


def check_causal_lm(config, name: Optional[str]) -> None:
    """Raise a clear error unless `config` describes a model with a causal-LM head."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    encoder = config.model_type in ("bert", "roberta", "xlm-roberta", "camembert", "electra", "deberta", "deberta-v2")
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING or (encoder and not getattr(config, "is_decoder", False)):
        raise ValueError(
            f"Base model {name!r} ({config.model_type}) has no causal language-model head; the few-shot NER "
            "component needs a decoder LM such as Llama, Qwen2, Mistral or GPT-2."
        )


def target_modules_for(config) -> List[str]:
    """LoRA target modules for the architecture of `config`."""
    if config.model_type in TARGET_MODULES:
        return list(TARGET_MODULES[config.model_type])
    try:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_map
    except ImportError:  # pragma: no cover - older/newer peft
        peft_map = {}
    if config.model_type in peft_map:
        return list(peft_map[config.model_type])
    raise ValueError(
        f"No default LoRA target modules for model type {config.model_type!r}: set lora.target_modules "
        "(a list of module names, or \"all-linear\")."
    )


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The base weights' dtype on `device` for the `dtype` setting (see LoRAInstructionNER.v2).
    "auto" is the package's precision setting on a GPU, but float32 on a CPU: there, a bf16 base
    scored lower F1 on the CrossNER episodes (docs/benchmarks.md, table precision-fewshot)."""
    if dtype == "float16":
        return torch.float16
    if check_precision(dtype) == "auto" and device.type == "cpu":
        return torch.float32
    return weights_dtype(dtype, device)


def split_causal_lm(peft_model) -> Tuple[torch.nn.Module, torch.nn.Module]:
    """(backbone, lm head) of a (peft-wrapped) causal LM, so that logits are computed only where needed."""
    hf = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    return getattr(hf, hf.base_model_prefix), hf.get_output_embeddings()


def num_layers(peft_model) -> int:
    config = peft_model.config
    return int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer"))


def max_positions(peft_model, tokenizer=None) -> int:
    config = peft_model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if value:
            return int(value)
    return int(getattr(tokenizer, "model_max_length", 2048))


def contrastive_layer(fraction: float, depth: int) -> int:
    """Hidden-state index round(fraction * depth), rounding halves up, in [1, depth]."""
    return min(depth, max(1, int(math.floor(fraction * depth + 0.5))))
