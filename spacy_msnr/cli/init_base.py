"""`init-base`: the base model of the workflow, saved from a checkpoint or built here (tokenizer + small LM)."""
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ._app import GPU_ID_OPTION, app, deprecated_alias, user_errors

#: Model families `init-base` can build, by architecture.
FAMILIES = {"masked": ("bert", "roberta"), "causal": ("llama", "qwen2", "gpt2")}


class Arch(str, Enum):
    masked = "masked"
    causal = "causal"


class Family(str, Enum):
    bert = "bert"
    roberta = "roberta"
    llama = "llama"
    qwen2 = "qwen2"
    gpt2 = "gpt2"


@app.command("init-base")
def init_base_cli(
    output: Path = typer.Argument(..., help="Folder for the Hugging Face model directory"),
    sources: List[Path] = typer.Argument(..., help="Text to train on: .spacy, .jsonl, IOB files or folders of .txt (training data only, never dev/test)"),
    arch: Arch = typer.Option(Arch.masked, "--arch", help="masked (BERT-style, for transformer+ner and MSLM) or causal (for fewshot_ner)"),
    family: Optional[Family] = typer.Option(None, "--family", help="Model family: bert or roberta (masked); llama, qwen2 or gpt2 (causal). Default: bert / llama"),
    vocab_size: int = typer.Option(8000, "--vocab-size"),
    hidden_size: int = typer.Option(256, "--hidden-size"),
    num_layers: int = typer.Option(4, "--layers"),
    num_heads: int = typer.Option(4, "--heads"),
    max_steps: int = typer.Option(1000, "--max-steps", help="Pretraining steps (0: random init only)"),
    max_seconds: float = typer.Option(0, "--max-seconds", help="Wall-clock budget for pretraining (0: none)"),
    batch_size: int = typer.Option(16, "--batch-size"),
    block_size: int = typer.Option(128, "--block-size", help="Tokens a training sequence"),
    learning_rate: float = typer.Option(5e-4, "--learning-rate"),
    seed: int = typer.Option(0, "--seed"),
    gpu_id: int = GPU_ID_OPTION,
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in <output>.checkpoints"),
    use_model: str = typer.Option("", "--use-model", help="A hub checkpoint or folder to save at OUTPUT instead of building one"),
    warmup_steps: int = typer.Option(0, "--warmup-steps", help="With --use-model: steps of head-only MLM warm-up on SOURCES, encoder frozen (0: none)"),
    warmup_blocks: int = typer.Option(512, "--warmup-blocks", help="Blocks of --block-size tokens the frozen encoder encodes once for the warm-up"),
    warmup_lr: float = typer.Option(5e-3, "--warmup-lr", help="Peak learning rate of the head-only warm-up"),
    unlabeled: str = typer.Option("", "--unlabeled", help="Extra unlabeled text (.jsonl, folder of .txt) added to SOURCES when it exists ('' for none)"),
) -> None:
    """Save a checkpoint as the workflow's base model, or build one here (a tokenizer and a small
    LM pretrained on local text), with safetensors.

    With --use-model (the project's `vars.base_model`), nothing is trained: that checkpoint,
    with its LM head, is saved at OUTPUT, so later steps read one place whatever the source.
    An encoder without an MLM head gets one (decoder tied to the word embeddings, new transform);
    --warmup-steps trains that head alone on SOURCES first.
    """
    from ..base.build import build_base, save_existing

    arch_name = arch.value
    if unlabeled:
        if Path(unlabeled).exists():
            sources = [*sources, Path(unlabeled)]
        else:
            msg.warn(f"--unlabeled {unlabeled} not found; building from {[str(s) for s in sources]} only")
    if use_model and use_model != "local":
        with user_errors():
            summary = save_existing(use_model, output, arch_name, sources=sources, warmup_steps=warmup_steps,
                                    warmup_blocks=warmup_blocks, warmup_lr=warmup_lr, seed=seed)
        msg.good(f"Saved {use_model} ({summary['model_type']}, {summary['parameters']:,} parameters) to {output}")
        if summary["new_head_parameters"]:
            msg.info(f"New LM-head parameters (not in the checkpoint): {', '.join(summary['new_head_parameters'])}")
        warmup = summary.get("head_warmup")
        if warmup:
            msg.info(f"Head-only warm-up, {warmup['steps']} steps on {warmup['blocks']} blocks: held-out MLM loss "
                     f"{warmup['mlm_loss_before']:.3f} -> {warmup['mlm_loss_after']:.3f} ({warmup['seconds']:.0f} s)")
        return
    family_name = family.value if family is not None else FAMILIES[arch_name][0]
    if family_name not in FAMILIES[arch_name]:
        msg.fail(f"--family {family_name!r} is not a {arch_name} family; choose one of {FAMILIES[arch_name]}", exits=1)
    if gpu_id >= 0:
        import torch

        torch.cuda.set_device(gpu_id)
    with user_errors():
        summary = build_base(
            output, sources, family=family_name, vocab_size=vocab_size, hidden_size=hidden_size, num_layers=num_layers,
            num_heads=num_heads, max_steps=max_steps, max_seconds=max_seconds or None, batch_size=batch_size,
            block_size=block_size, learning_rate=learning_rate, seed=seed, gpu=gpu_id >= 0, resume=resume,
        )
    loss = summary.get("final_loss")
    msg.good(f"Saved {family_name} base model ({summary['parameters']:,} parameters) to {output}"
             + (f"; final {summary['objective']} loss {loss:.3f} after {summary['steps']} steps" if loss is not None else ""))


deprecated_alias("base", "init-base", init_base_cli)
