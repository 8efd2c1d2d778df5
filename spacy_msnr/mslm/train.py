"""The MSLM training loop: config in, Hugging Face model directory out, resumable.

`train(config, output)` reads the corpora named in `[paths]`, builds the `[model]` architecture,
finds DS-terms with `[terms]`, and optimises the mask-specific loss for `training.max_steps`
optimizer steps (or `training.max_epochs` epochs). Every `checkpoint_every` steps it writes
`output/checkpoint/` (weights as safetensors; optimizer, scheduler and RNG state as a torch file
loaded with weights_only=True; counters and the log as JSON); `resume=True` continues from it
exactly. The finished model is assembled in a temporary sibling directory and renamed into
place, so `output` is either absent, a bare checkpoint, or a complete `save_pretrained`
directory (safetensors + tokenizer + `mslm_log.json`).
"""
import logging
import shutil
import time
from dataclasses import replace
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import spacy
import srsly
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Config, Model, fix_random_seed

from . import loss as _loss  # noqa: F401  (registers the weightings)
from . import optimizer as _optimizer  # noqa: F401  (registers spacy_msnr.AdamW.v1 in @msnr_optimizers)
from . import terms as _terms  # noqa: F401  (registers the term sources)
from ..corpus.texts import read_docs
from .masking import IGNORE_INDEX, EncodedSeq, encode_doc, split_to_fit
from .metrics import ds_term_sensitivity, pack, tagger_accuracy
from .model import save_pretrained, torch_module
from .terms import TermSource

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
LOG_NAME = "mslm_log.json"


def tag_labels(docs: Sequence[Doc]) -> List[str]:
    """BIO tags of the docs' entity labels, "O" first."""
    labels = sorted({ent.label_ for doc in docs for ent in doc.ents})
    return ["O"] + [f"{p}-{label}" for label in labels for p in ("B", "I")]


def encode(docs: Sequence[Doc], tokenizer, terms: TermSource, max_length: int, tags: Optional[List[str]] = None) -> List[EncodedSeq]:
    """Encode docs into wordpiece sequences aligned to their DS-terms (and tags, if given);
    documents longer than `max_length` wordpieces are split into windows, never truncated."""
    tag_map = {t: i for i, t in enumerate(tags)} if tags else None
    windows = [window for doc in docs for window in split_to_fit(doc, tokenizer, max_length)]
    return [encode_doc(doc, tokenizer, terms(doc), max_length, tag_map) for doc in windows]


def unlabeled_seqs(docs: Sequence[Doc], tokenizer, terms: TermSource, max_length: int, tagged: bool) -> List[EncodedSeq]:
    """Encode unlabeled text (no gold entities) like the training docs: its DS-terms come from
    `terms` (a source that reads gold spans finds none there, so use one with a lexicon, e.g.
    spacy_msnr.corpus_lexicon_terms.v1); with the tagging head on, its pieces carry no tags."""
    seqs = encode(docs, tokenizer, terms, max_length)
    if tagged:
        seqs = [replace(s, tags=np.full(len(s), IGNORE_INDEX, dtype=np.int64)) for s in seqs]
    return seqs


def load_config(path: Union[str, Path], overrides: Optional[Dict[str, Any]] = None) -> Config:
    """Load a config file with `--section.key value` overrides applied (not yet interpolated)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Config not found: {path}")
    return spacy.util.load_config(path, overrides=overrides or {}, interpolate=False)


#: Integer settings of [training] and their smallest allowed value.
_TRAINING_MINIMA = {"batch_size": 1, "accumulate_gradient": 1, "max_length": 1, "eval_frequency": 1,
                    "max_steps": 0, "max_epochs": 0, "checkpoint_every": 0, "seed": 0}


def _check_training(cfg: Dict[str, Any]) -> None:
    """Raise a ValueError naming the setting for any [training] value the loop cannot run with."""
    for key, low in _TRAINING_MINIMA.items():
        value = cfg.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"training.{key} must be an integer >= {low}, got {value!r} (in [training] of the config)")
    if cfg["max_steps"] == 0 and cfg["max_epochs"] == 0:
        raise ValueError("Set training.max_steps or training.max_epochs to a positive number, or training never ends")
    if not isinstance(cfg.get("keep_checkpoint", False), bool):
        raise ValueError(f"training.keep_checkpoint must be true or false, got {cfg['keep_checkpoint']!r}")


_OLD_OPTIMIZER = ("@optimizers", "spacy_msnr.AdamW.v1")


def _moved_optimizer(config: Config) -> Config:
    """A config naming spacy_msnr.AdamW.v1 in thinc's @optimizers (its place before it moved
    to @msnr_optimizers) keeps working, with a warning."""
    settings = config.get("training", {}).get("optimizer", {})
    if settings.get(_OLD_OPTIMIZER[0]) != _OLD_OPTIMIZER[1]:
        return config
    warnings.warn('[training.optimizer] @optimizers = "spacy_msnr.AdamW.v1" is the old name; '
                  'write @msnr_optimizers = "spacy_msnr.AdamW.v1"', DeprecationWarning)
    config = config.copy()
    optimizer = config["training"]["optimizer"]
    del optimizer[_OLD_OPTIMIZER[0]]
    config["training"]["optimizer"] = {"@msnr_optimizers": _OLD_OPTIMIZER[1], **optimizer}
    return config


def _finished(state: Dict[str, Any], max_steps: int, max_epochs: int) -> bool:
    return (max_steps > 0 and state["step"] >= max_steps) or (max_epochs > 0 and state["epoch"] >= max_epochs)


def _save_checkpoint(path: Path, model: Model, optimizer, scheduler, scaler, state: Dict[str, Any], config: Config) -> None:
    """Write a checkpoint into a temporary directory, then swap it in (never half-written)."""
    from safetensors.torch import save_file

    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    module = torch_module(model)
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}, str(tmp / "model.safetensors"))
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng},
        tmp / "training_state.pt",
    )
    srsly.write_json(tmp / "state.json", state)
    config.to_disk(tmp / "config.cfg")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(path: Path, model: Model, optimizer, scheduler, scaler) -> Dict[str, Any]:
    from safetensors.torch import load_file

    module = torch_module(model)
    device = next(module.parameters()).device
    weights = load_file(str(path / "model.safetensors"))
    if any(k.startswith("tagger.") for k in weights) and module.tagger is None:
        module.set_tagger(weights["tagger.weight"].shape[0])
    module.load_state_dict(weights)
    module.to(device)
    blob = torch.load(path / "training_state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    scaler.load_state_dict(blob["scaler"])
    torch.set_rng_state(blob["rng"]["torch"])
    if "cuda" in blob["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["rng"]["cuda"])
    return srsly.read_json(path / "state.json")


def _publish(output: Path, model: Model, log: Dict[str, Any], keep_checkpoint: bool) -> None:
    """Assemble the final directory beside `output` and rename it into place."""
    partial, old = output.with_name(f".{output.name}.partial"), output.with_name(f".{output.name}.old")
    shutil.rmtree(partial, ignore_errors=True)
    save_pretrained(model, partial)
    srsly.write_json(partial / LOG_NAME, log)
    if keep_checkpoint and (output / CHECKPOINT).exists():
        shutil.copytree(output / CHECKPOINT, partial / CHECKPOINT)
    shutil.rmtree(old, ignore_errors=True)
    if output.exists():
        output.rename(old)
    partial.rename(output)
    shutil.rmtree(old, ignore_errors=True)


def _prepare_output(output: Path, resume: bool) -> Optional[Path]:
    """Check `output`; return the checkpoint to resume from, if any."""
    checkpoint = output / CHECKPOINT
    old = output.with_name(f".{output.name}.old")
    if not output.exists() and old.exists():  # interrupted between the two renames of _publish
        old.rename(output)
    if resume:
        if checkpoint.exists():
            return checkpoint
        logger.warning(f"--resume given but no checkpoint in {output}; starting from the beginning"
                       + (" (the model there is replaced only when this run finishes)" if output.exists() else ""))
        return None
    if output.exists() and any(output.iterdir()):
        raise FileExistsError(f"Output directory {output} is not empty; pass --resume to continue its run or choose another directory")
    return None


def train(config: Config, output: Union[str, Path], *, gpu_id: int = -1, resume: bool = False, show_progress: bool = True) -> Dict[str, Any]:
    """Run MSLM adaptation as configured; write the model to `output`; return the run log."""
    output = Path(output)
    config = _moved_optimizer(config)
    interpolated = config.interpolate()
    paths = interpolated["paths"]
    if not paths.get("train"):
        raise ValueError("No training corpus: set paths.train (e.g. --paths.train corpus/train.spacy)")
    if not paths.get("base_model"):
        raise ValueError("No model to adapt: set paths.base_model to a hub id or a local model directory")
    _check_training(interpolated["training"])
    resume_from = _prepare_output(output, resume)
    resolved = registry.resolve(interpolated)
    cfg, model, term_source = resolved["training"], resolved["model"], resolved["terms"]
    seed = int(cfg["seed"])
    fix_random_seed(seed)
    device = torch.device(f"cuda:{gpu_id}" if gpu_id >= 0 else "cpu")
    if gpu_id >= 0 and not torch.cuda.is_available():
        raise ValueError(f"--gpu-id {gpu_id} asked for a GPU but torch sees none")

    tokenizer = model.attrs["tokenizer"]
    if int(cfg["max_length"]) <= tokenizer.num_special_tokens_to_add(pair=False):
        raise ValueError(f"training.max_length = {cfg['max_length']} leaves no room for text beside the "
                         f"{tokenizer.num_special_tokens_to_add(pair=False)} special tokens of {paths['base_model']}")
    train_docs = read_docs(paths["train"])
    tags = tag_labels(train_docs) if model.attrs["ner_weight"] > 0 else None
    if tags is not None and len(tags) == 1:
        raise ValueError("training with ner_weight > 0 needs gold entities in paths.train; none were found")
    train_seqs = encode(train_docs, tokenizer, term_source, int(cfg["max_length"]), tags)
    n_labeled = len(train_seqs)
    if paths.get("unlabeled") and not Path(paths["unlabeled"]).exists():
        logger.warning(f"paths.unlabeled {paths['unlabeled']} not found: adapting on paths.train only")
    elif paths.get("unlabeled"):
        train_seqs += unlabeled_seqs(read_docs(paths["unlabeled"]), tokenizer, term_source, int(cfg["max_length"]), tags is not None)
    dev_seqs = encode(read_docs(paths["dev"]), tokenizer, term_source, int(cfg["max_length"]), tags) if paths.get("dev") else []
    n_terms = sum(s.n_terms for s in train_seqs)
    if n_terms == 0 and model.attrs["masker"].uses_terms:
        source = "gold entities" if term_source.from_gold else "DS-term matches"
        warnings.warn(f"No {source} in {paths['train']}: MSLM falls back to BLM-only masking (no ELM positions)")
    model.attrs["tag_labels"] = tags or []
    model.initialize(X=train_seqs)

    module = torch_module(model).to(device)
    opt_settings = cfg["optimizer"]
    max_steps, max_epochs = int(cfg["max_steps"]), int(cfg["max_epochs"])
    accumulate, batch_size = int(cfg["accumulate_gradient"]), int(cfg["batch_size"])
    lengths = [len(s) for s in train_seqs]
    # the learning-rate schedule decays to 0 at the last step: max_steps, or every epoch's steps
    total_steps = max_steps if max_steps > 0 else sum(
        -(-len(_epoch_batches(lengths, seed, e, batch_size)) // accumulate) for e in range(max_epochs))
    optimizer, scheduler = opt_settings.build(module.parameters(), total_steps)
    shim = model.get_ref("mlm").shims[0]
    fp16 = shim.autocast_dtype() == torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    masking = model.get_ref("masking")

    state: Dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "wordpieces": 0, "seconds": 0.0, "history": [], "running": _fresh()}
    if resume_from is not None:
        state = _load_checkpoint(resume_from, model, optimizer, scheduler, scaler)
        logger.info(f"Resuming from {resume_from} at step {state['step']}")
    eval_every, ckpt_every = int(cfg["eval_frequency"]), int(cfg["checkpoint_every"])
    running = state["running"]
    progress = _progress(show_progress, total_steps, state["step"])
    start = time.perf_counter()
    done = _finished(state, max_steps, max_epochs)  # a resumed run may have finished already
    while not done:
        batches = _epoch_batches(lengths, seed, state["epoch"], batch_size)
        while state["batch"] < len(batches):
            group = range(state["batch"], min(state["batch"] + accumulate, len(batches)))
            for index in group:
                masking.attrs["rng"] = np.random.default_rng([seed, state["epoch"], index])
                stats = update_micro_batch(model, [train_seqs[i] for i in batches[index]], 1.0 / len(group), scaler)
                running["loss"] += stats["loss"]
                running["term_hits"] += stats["term_hits"]
                running["terms"] += stats["terms"]
                state["wordpieces"] += stats["wordpieces"]
            scaler.unscale_(optimizer)
            if opt_settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(module.parameters(), opt_settings.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["batch"] = group.stop
            running["n"] += 1
            progress.update(1)
            progress.set_postfix(loss=f"{running['loss'] / running['n']:.3f}", term_acc=f"{running['term_hits'] / max(1, running['terms']):.3f}")
            done = _finished(state, max_steps, max_epochs)
            if state["step"] % eval_every == 0 or done:
                record = _evaluate(model, dev_seqs, state, running, seed)
                state["history"].append(record)
                progress.write(_format_row(record))
                running = state["running"] = _fresh()
            state["seconds"] += time.perf_counter() - start
            start = time.perf_counter()
            if ckpt_every > 0 and (state["step"] % ckpt_every == 0 or done):
                _save_checkpoint(output / CHECKPOINT, model, optimizer, scheduler, scaler, state, config)
            if done:
                break
        if not done:
            state["epoch"] += 1
            state["batch"] = 0
            done = _finished(state, max_steps, max_epochs)
            if done and (not state["history"] or state["history"][-1]["step"] != state["step"]):
                state["history"].append(_evaluate(model, dev_seqs, state, running, seed))
                if ckpt_every > 0:
                    _save_checkpoint(output / CHECKPOINT, model, optimizer, scheduler, scaler, state, config)
    progress.close()
    log = {
        "config": config.to_str(), "steps": state["step"], "epochs": state["epoch"], "wordpieces": state["wordpieces"],
        "seconds": round(state["seconds"], 3), "wordpieces_per_second": state["wordpieces"] / max(state["seconds"], 1e-9),
        "train_docs": n_labeled, "unlabeled_docs": len(train_seqs) - n_labeled,
        "train_ds_terms": sum(s.n_terms for s in train_seqs[:n_labeled]), "unlabeled_ds_terms": sum(s.n_terms for s in train_seqs[n_labeled:]), "device": str(device),
        "autocast": str(shim.autocast_dtype() or torch.float32).replace("torch.", ""),
        "final_learn_rate": optimizer.param_groups[0]["lr"], "history": state["history"],
    }
    _publish(output, model, log, bool(cfg.get("keep_checkpoint", False)))
    logger.info(f"Saved the adapted model to {output}")
    return log


def update_micro_batch(model: Model, seqs: Sequence[EncodedSeq], scale: float = 1.0, scaler: Optional[torch.amp.GradScaler] = None) -> Dict[str, float]:
    """Forward, loss and backward for one micro-batch (gradients accumulate; no optimizer step).

    The loss gradient is multiplied by `scale` (1/accumulation steps) and by the GradScaler's
    factor when fp16 scaling is on, in float32 before it is cast to the logits' dtype (so small
    fp16 gradients do not underflow). Returns the scaled loss, DS-term hits and counts, wordpieces.
    """
    out, backprop = model.begin_update(seqs)
    grad_scale = torch.tensor(float(scale), device=out.logits.device)
    if scaler is not None and scaler.is_enabled():
        grad_scale = scaler.scale(grad_scale)
    d_logits, value = model.attrs["loss"](out.logits, out.batch, grad_scale)
    d_tags, tag_value = model.attrs["tagger_loss"](out.tag_logits, out.batch, grad_scale)
    backprop((d_logits, d_tags))
    with torch.no_grad():
        terms = out.batch.is_term.to(out.logits.device)
        hits = (out.logits.argmax(-1) == out.batch.labels.to(out.logits.device)) & terms
    return {"loss": (value + tag_value) * scale, "term_hits": int(hits.sum()), "terms": int(terms.sum()), "wordpieces": out.batch.n_pieces}


def _epoch_batches(lengths: Sequence[int], seed: int, epoch: int, batch_size: int) -> List[List[int]]:
    """The micro-batches of one epoch: the corpus in a seeded order, packed by wordpieces."""
    return pack(lengths, np.random.default_rng([seed, epoch]).permutation(len(lengths)), batch_size)


def _fresh() -> Dict[str, float]:
    return {"loss": 0.0, "term_hits": 0, "terms": 0, "n": 0}


def _evaluate(model: Model, dev_seqs: Sequence[EncodedSeq], state: Dict[str, Any], running: Dict[str, float], seed: int) -> Dict[str, Any]:
    record: Dict[str, Any] = {
        "step": state["step"], "epoch": state["epoch"],
        "loss": running["loss"] / max(1, running["n"]),
        "train_term_acc": running["term_hits"] / max(1, running["terms"]),
    }
    if dev_seqs:
        record.update({f"dev_{k}": v for k, v in ds_term_sensitivity(model, dev_seqs, seed=seed).items()})
        if model.attrs["ner_weight"] > 0:
            record["dev_tag_acc"] = tagger_accuracy(model, dev_seqs)
    return record


def _format_row(record: Dict[str, Any]) -> str:
    cells = [f"step {record['step']:>6}", f"loss {record['loss']:.4f}", f"train term acc {record['train_term_acc']:.3f}"]
    for key in ("dev_term_prob", "dev_term_acc", "dev_generic_prob", "dev_generic_acc", "dev_tag_acc"):
        if key in record:
            cells.append(f"{key[4:]} {record[key]:.3f}")
    return " | ".join(cells)


class _NoProgress:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw) -> None: ...
    def write(self, line: str) -> None: ...
    def close(self) -> None: ...


def _progress(show: bool, total: int, initial: int):
    if not show:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total if total > 0 else None, initial=initial, unit="step", desc="MSLM", dynamic_ncols=True)


__all__ = ["train", "load_config", "read_docs", "encode"]
