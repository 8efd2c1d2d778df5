"""DS-term sensitivity: how well a masked LM restores masked domain terms versus generic words.

Held-out docs are masked deterministically (from `seed`) with every DS-term masked whole
(ELM rate 1.0) and other wordpieces with probability `blm_rate`, always with the mask token.
For DS-term positions and generic positions separately we report the mean probability of the
gold wordpiece and top-1 accuracy. The same seed and tokenizer give the same masks, so two
models sharing a tokenizer are compared on identical inputs.
"""
from typing import Dict, List, Sequence

import numpy as np
import torch
from thinc.api import Model

from .masking import ELM, BLM, UNMASKED, EncodedSeq, Masker, MaskSpecificMasker, mask_batch


def pack(lengths: Sequence[int], order: Sequence[int], batch_size: int) -> List[List[int]]:
    """Greedily group items (in `order`) into batches of at most `batch_size` wordpieces
    (padding included; a longer item forms a batch of its own)."""
    batches: List[List[int]] = []
    current: List[int] = []
    width = 0
    for i in order:
        new_width = max(width, lengths[i])
        if current and new_width * (len(current) + 1) > batch_size:
            batches.append(current)
            current, new_width = [], lengths[i]
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    return batches


def ds_term_sensitivity(
    model: Model, seqs: Sequence[EncodedSeq], *, blm_rate: float = 0.15, seed: int = 0, batch_size: int = 4096
) -> Dict[str, float]:
    """term_prob, term_acc, generic_prob, generic_acc (and counts) on `seqs`, in eval mode."""
    masker = MaskSpecificMasker(elm_rate=1.0, blm_rate=blm_rate, replacement="mask")
    replacer = model.get_ref("masking").attrs["replacer"]
    mlm = model.get_ref("mlm")
    rng = np.random.default_rng(seed)
    sums = {"term_prob": 0.0, "term_acc": 0.0, "generic_prob": 0.0, "generic_acc": 0.0}
    counts = {"term": 0, "generic": 0}
    for group in pack([len(s) for s in seqs], range(len(seqs)), batch_size):
        batch = mask_batch([seqs[i] for i in group], masker, replacer, rng)
        if not len(batch.positions):
            continue
        logits = mlm.predict(batch).logits.float()
        labels = batch.labels.to(logits.device)
        probs = torch.softmax(logits, dim=-1).gather(1, labels[:, None])[:, 0]
        hits = (logits.argmax(dim=-1) == labels).float()
        for name, kind in (("term", ELM), ("generic", BLM)):
            where = batch.kinds.to(logits.device) == kind
            sums[f"{name}_prob"] += float(probs[where].sum())
            sums[f"{name}_acc"] += float(hits[where].sum())
            counts[name] += int(where.sum())
    result = {k: (v / counts[k.split("_")[0]] if counts[k.split("_")[0]] else float("nan")) for k, v in sums.items()}
    result.update(n_term=counts["term"], n_generic=counts["generic"])
    return result


class _NoMask(Masker):
    def __init__(self):
        super().__init__("mask")

    def sample(self, seq: EncodedSeq, rng: np.random.Generator) -> np.ndarray:
        return np.full(len(seq), UNMASKED, dtype=np.int8)


def tagger_accuracy(model: Model, seqs: Sequence[EncodedSeq], batch_size: int = 4096) -> float:
    """Token accuracy of the joint tagging head on UNMASKED input (nan without a head)."""
    mlm = model.get_ref("mlm")
    replacer = model.get_ref("masking").attrs["replacer"]
    right = total = 0
    rng = np.random.default_rng(0)
    for group in pack([len(s) for s in seqs], range(len(seqs)), batch_size):
        batch = mask_batch([seqs[i] for i in group], _NoMask(), replacer, rng)
        out = mlm.predict(batch)
        if out.tag_logits is None or batch.tag_labels is None:
            return float("nan")
        labels = batch.tag_labels.to(out.tag_logits.device)
        keep = labels >= 0
        right += int((out.tag_logits.argmax(-1) == labels)[keep].sum())
        total += int(keep.sum())
    return right / total if total else float("nan")
