"""An MLM head for an encoder saved without one (e.g. sentence-transformers' all-MiniLM-L6-v2, a
plain `BertModel`): the decoder is tied to the word embeddings, the transform is new, and an
optional head-only warm-up trains the new parts with the encoder frozen."""
import math
import time
from typing import Dict, List, Sequence

import torch
from transformers import DataCollatorForLanguageModeling, PreTrainedModel, PreTrainedTokenizerBase

from .pretrain import TokenBlocks


def head_module(model: PreTrainedModel) -> torch.nn.Module:
    """The masked-LM head of `model` (BERT's `cls`, RoBERTa's `lm_head`): its one child that is
    not the encoder."""
    children = [m for name, m in model.named_children() if name != model.base_model_prefix]
    if len(children) != 1:
        raise ValueError(
            f"{type(model).__name__}: expected one LM-head module beside '{model.base_model_prefix}', "
            f"found {[n for n, _ in model.named_children()]}"
        )
    return children[0]


def head_parameters(model: PreTrainedModel) -> Dict[str, torch.nn.Parameter]:
    """The head's own parameters by name: the decoder weight is tied to the word embeddings, so
    it belongs to the encoder and is not among them."""
    tied = {id(model.get_input_embeddings().weight)}
    prefix = model.base_model_prefix + "."
    return {n: p for n, p in model.named_parameters() if not n.startswith(prefix) and id(p) not in tied}


def check_tied(model: PreTrainedModel) -> None:
    """Raise unless the output (decoder) weight is the word-embedding matrix itself."""
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise ValueError(f"{type(model).__name__}: the MLM decoder is not tied to the word embeddings")


def masked_features(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, blocks: Sequence[List[int]], *,
    mlm_probability: float, seed: int, batch_size: int = 16,
) -> Dict[str, torch.Tensor]:
    """Mask `blocks` once (BERT's 80/10/10 scheme, seeded) and run the frozen encoder over them:
    the last hidden state at each masked position and the id it must predict."""
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mlm_probability)
    generator = torch.get_rng_state()
    torch.manual_seed(seed)
    hidden, labels = [], []
    encoder = model.base_model
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(blocks), batch_size):
                batch = collator([{"input_ids": b} for b in blocks[start : start + batch_size]])
                attention = (batch["input_ids"] != tokenizer.pad_token_id).long()
                states = encoder(input_ids=batch["input_ids"], attention_mask=attention).last_hidden_state
                where = batch["labels"] != -100
                hidden.append(states[where])
                labels.append(batch["labels"][where])
    finally:
        encoder.train(was_training)
        torch.set_rng_state(generator)
    return {"hidden": torch.cat(hidden), "labels": torch.cat(labels)}


def head_loss(model: PreTrainedModel, features: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the head's predictions at the masked positions in `features`."""
    logits = head_module(model)(features["hidden"])
    return torch.nn.functional.cross_entropy(logits, features["labels"])


def warm_up_head(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    steps: int,
    blocks: int = 512,
    eval_blocks: int = 64,
    block_size: int = 128,
    batch_positions: int = 512,
    learning_rate: float = 5e-3,
    mlm_probability: float = 0.15,
    seed: int = 0,
) -> Dict[str, float]:
    """Train only the head's own parameters (transform and output bias) for `steps` steps with the
    encoder and the tied decoder frozen.

    The encoder runs once, in eval mode, over `blocks` masked blocks of `texts` (plus
    `eval_blocks` held-out ones); the head then trains on batches of `batch_positions` masked
    positions from those features. Returns the held-out MLM loss before and after.
    """
    if steps < 1:
        raise ValueError(f"warm-up steps must be >= 1, not {steps}")
    check_tied(model)
    data = TokenBlocks(texts, tokenizer, block_size).blocks
    if len(data) < 2:
        raise ValueError("Warm-up needs at least two blocks of text (one to train on, one to hold out)")
    held_out = max(1, min(eval_blocks, len(data) // 10))
    step_of = max(1, len(data) // held_out)
    eval_ids = set(range(0, len(data), step_of)[:held_out])
    train = [b for i, b in enumerate(data) if i not in eval_ids][:blocks]
    evaluate = [data[i] for i in sorted(eval_ids)]
    start = time.monotonic()
    trained = masked_features(model, tokenizer, train, mlm_probability=mlm_probability, seed=seed)
    held = masked_features(model, tokenizer, evaluate, mlm_probability=mlm_probability, seed=seed + 1)
    encode_seconds = time.monotonic() - start
    params = head_parameters(model)
    frozen = [p for p in model.parameters() if all(p is not q for q in params.values())]
    flags = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    head = head_module(model)
    was_training = head.training
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(params.values(), lr=learning_rate, weight_decay=0.0)
    n = trained["labels"].shape[0]
    try:
        head.eval()
        with torch.no_grad():
            before = float(head_loss(model, held))
        head.train()
        losses = []
        for step in range(steps):
            rate = learning_rate * min(1.0, (step + 1) / max(1, steps // 10)) * (1 - step / steps)
            for group in optimizer.param_groups:
                group["lr"] = rate
            pick = torch.randint(0, n, (min(batch_positions, n),), generator=generator)
            loss = head_loss(model, {"hidden": trained["hidden"][pick], "labels": trained["labels"][pick]})
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        head.eval()
        with torch.no_grad():
            after = float(head_loss(model, held))
    finally:
        head.train(was_training)
        for p, flag in zip(frozen, flags):
            p.requires_grad_(flag)
    if not (math.isfinite(before) and math.isfinite(after)):
        raise FloatingPointError(f"MLM warm-up loss is not finite (before {before}, after {after})")
    return {
        "steps": steps,
        "blocks": len(train),
        "masked_positions": int(n),
        "eval_blocks": len(evaluate),
        "learning_rate": learning_rate,
        "mlm_loss_before": round(before, 4),
        "mlm_loss_after": round(after, 4),
        "train_loss_first": round(losses[0], 4),
        "train_loss_last": round(losses[-1], 4),
        "encode_seconds": round(encode_seconds, 2),
        "seconds": round(time.monotonic() - start, 2),
    }
