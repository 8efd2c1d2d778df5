"""Small, randomly initialised Hugging Face models shaped like the real checkpoints."""
from typing import Optional

import torch
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

MASKED_FAMILIES = ("bert", "roberta")
CAUSAL_FAMILIES = ("llama", "qwen2", "gpt2")


def build_config(
    family: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden_size: int = 256,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: Optional[int] = None,
    max_positions: int = 512,
) -> PretrainedConfig:
    """A transformers config of `family` sized by the arguments, with the tokenizer's ids."""
    from transformers import BertConfig, GPT2Config, LlamaConfig, Qwen2Config, RobertaConfig

    ffn = intermediate_size or 4 * hidden_size
    vocab = len(tokenizer)
    if family == "bert":
        return BertConfig(
            vocab_size=vocab, hidden_size=hidden_size, num_hidden_layers=num_layers,
            num_attention_heads=num_heads, intermediate_size=ffn, max_position_embeddings=max_positions,
            pad_token_id=tokenizer.pad_token_id,
        )
    if family == "roberta":
        return RobertaConfig(
            vocab_size=vocab, hidden_size=hidden_size, num_hidden_layers=num_layers,
            num_attention_heads=num_heads, intermediate_size=ffn, max_position_embeddings=max_positions + 2,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, type_vocab_size=1,
        )
    ids = dict(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    if family == "gpt2":
        return GPT2Config(vocab_size=vocab, n_embd=hidden_size, n_layer=num_layers, n_head=num_heads,
                          n_inner=ffn, n_positions=max_positions, **ids)
    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}.get(family)
    if cls is None:
        raise ValueError(f"Unknown model family {family!r}; expected one of {MASKED_FAMILIES + CAUSAL_FAMILIES}")
    return cls(
        vocab_size=vocab, hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2), intermediate_size=ffn, max_position_embeddings=max_positions,
        tie_word_embeddings=True, **ids,
    )


def build_model(family: str, tokenizer: PreTrainedTokenizerBase, *, seed: int = 0, **sizes) -> PreTrainedModel:
    """A randomly initialised masked LM (bert, roberta) or causal LM (llama, qwen2, gpt2)."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    config = build_config(family, tokenizer, **sizes)
    torch.manual_seed(seed)
    auto = AutoModelForMaskedLM if family in MASKED_FAMILIES else AutoModelForCausalLM
    return auto.from_config(config)
