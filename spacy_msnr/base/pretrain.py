"""Bounded masked-LM or causal-LM pretraining of a base model with HF's Trainer (resumable)."""
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from transformers import (
    DataCollatorForLanguageModeling,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)


class TokenBlocks(torch.utils.data.Dataset):
    """Texts tokenized and cut into blocks of at most `block_size` ids (special tokens added)."""

    def __init__(self, texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, block_size: int):
        inner = block_size - tokenizer.num_special_tokens_to_add(pair=False)
        if inner < 8:
            raise ValueError(f"block_size {block_size} leaves too little room for text")
        ids: List[int] = []
        for text in texts:
            ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
            if tokenizer.eos_token_id is not None and tokenizer.mask_token_id is None:
                ids.append(tokenizer.eos_token_id)
        self.blocks = [
            tokenizer.build_inputs_with_special_tokens(ids[i : i + inner]) for i in range(0, len(ids), inner)
        ]
        self.blocks = [b for b in self.blocks if len(b) > 2]
        if not self.blocks:
            raise ValueError("No text to pretrain on: the corpus is empty")
        self.n_tokens = sum(len(b) for b in self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> Dict[str, List[int]]:
        return {"input_ids": self.blocks[i]}


class TimeBudget(TrainerCallback):
    """Stops training once `max_seconds` of wall-clock time have passed."""

    def __init__(self, max_seconds: float):
        self.max_seconds = max_seconds
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.start > self.max_seconds:
            control.should_training_stop = True
            control.should_save = True
        return control


class StartStep(TrainerCallback):
    """Remembers the step a run starts at (after a checkpoint is loaded), so a resumed run's
    speed counts only the steps it trained itself."""

    step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.step = state.global_step
        return control


def pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    checkpoint_dir: Path,
    *,
    max_steps: int = 1000,
    max_seconds: Optional[float] = None,
    batch_size: int = 16,
    block_size: int = 128,
    learning_rate: float = 5e-4,
    mlm_probability: float = 0.15,
    save_steps: int = 200,
    seed: int = 0,
    gpu: bool = False,
    resume: bool = False,
) -> Dict[str, float]:
    """Train `model` on `texts` (uniform MLM for masked LMs, next-token loss for causal LMs).

    Checkpoints go to `checkpoint_dir` every `save_steps`; `resume=True` continues from the
    latest one. Returns the final training loss, the steps taken and the tokens per second.
    """
    masked = tokenizer.mask_token_id is not None and not model.config.is_decoder and "CausalLM" not in type(model).__name__
    data = TokenBlocks(texts, tokenizer, block_size)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=masked, mlm_probability=mlm_probability)
    args = TrainingArguments(
        output_dir=str(checkpoint_dir), max_steps=max_steps, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, warmup_ratio=0.05, weight_decay=0.01, logging_steps=max(1, min(50, max_steps // 10)),
        save_steps=save_steps, save_total_limit=1, save_safetensors=True, seed=seed, data_seed=seed,
        report_to=[], use_cpu=not gpu, bf16=gpu and torch.cuda.is_bf16_supported(), dataloader_num_workers=0,
        disable_tqdm=False,
    )
    start_step = StartStep()
    callbacks = [start_step] + ([TimeBudget(max_seconds)] if max_seconds else [])
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator, callbacks=callbacks)
    has_checkpoint = resume and any(Path(checkpoint_dir).glob("checkpoint-*"))
    start = time.monotonic()
    output = trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    seconds = time.monotonic() - start
    steps_run = output.global_step - start_step.step
    logged = [(entry["step"], entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    losses = [loss for _, loss in logged]
    return {
        "initial_loss": float(losses[0]) if losses else float(output.training_loss),
        "mean_loss": float(output.training_loss) if not start_step.step else _window_mean(logged),
        "final_loss": float(losses[-1]) if losses else float(output.training_loss),
        "steps": int(output.global_step),
        "steps_this_session": int(steps_run),
        "objective": "masked-lm" if masked else "causal-lm",
        "train_tokens": data.n_tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(steps_run * batch_size * block_size / max(seconds, 1e-9), 1),
    }


def _window_mean(logged: Sequence[Tuple[int, float]]) -> float:
    """Mean loss of a resumed run from its log (restored on resume): each logged value is the
    mean over the steps since the one before, so it is weighted by that window. (Trainer's own
    training_loss divides only this session's loss by all the steps.)"""
    total = steps = 0
    previous = 0
    for step, loss in logged:
        total += loss * (step - previous)
        steps += step - previous
        previous = step
    return float(total / steps) if steps else float("nan")
