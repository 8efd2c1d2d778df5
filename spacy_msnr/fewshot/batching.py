"""One chunk of instructions in the training pass: its tensors (`collate`: whole rows, or the shared
instruction prefix, each segment's text and each row's question + answer apart), its forward pass
through the backbone with those caches (`forward_chunk`, `run_chunk`), the answer tokens'
cross-entropy (`answer_loss`) and the hidden states of its text tokens for the contrastive loss
(`text_token_reps`). `model.forward` combines the chunks of an update batch into its loss."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .prompts import Instruction


@dataclass
class ChunkPass:
    """One chunk's forward pass: its tensors, input embeddings, summed answer-token
    cross-entropy, and the contrastive representations of its text tokens with their types."""

    tensors: Dict[str, torch.Tensor]
    #: Input embeddings: (shared prefix (1 x P), rest of every row) or (whole rows,).
    embeds: Tuple[torch.Tensor, ...]
    lm_sum: torch.Tensor
    reps: Optional[torch.Tensor]
    types: List[str]
    #: Per representation: (instruction, mention start) for entity tokens, None otherwise.
    groups: List[Optional[Tuple[int, int]]]


#: The embedded parts of a chunk in order, and the mask of the positions FGM may move in each
#: (the instruction prefix, shared by every row, is never moved).
PARTS = (("prefix_ids", None), ("stem_ids", "stem_mask"), ("input_ids", "perturb_mask"))


def run_chunk(backbone, head, embed, chunk: List[Instruction], tensors: Dict[str, torch.Tensor], layer: Optional[int],
              grad: bool, embed_grad: bool) -> ChunkPass:
    """The forward pass of one collated chunk (with a graph when `grad`; its movable input
    embeddings collect gradients when `embed_grad`, for FGM), with the contrastive
    representations of its text tokens when `layer` is set."""
    embeds = tuple(embed(tensors[key]).detach().requires_grad_(embed_grad and movable is not None)
                   for key, movable in PARTS if key in tensors)
    with torch.set_grad_enabled(grad):
        hidden, states = forward_chunk(backbone, embeds, tensors, layer)
        lm_sum = answer_loss(hidden, head, tensors, reduction="sum")
        if layer is None:
            reps, types, groups = None, [], []
        elif "stem_ids" in tensors:  # the text tokens are in the stems, one per segment
            reps, types, groups = text_token_reps(states, chunk, tensors["prefix_ids"].shape[1], tensors["row_stem"].tolist())
        else:
            reps, types, groups = text_token_reps(states, chunk)
    return ChunkPass(tensors, embeds, lm_sum, reps, types, groups)


def forward_chunk(backbone, embeds: Sequence[torch.Tensor], tensors: Dict[str, torch.Tensor],
                  layer: Optional[int]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Last hidden states of every row's own part and, with `layer`, that layer's hidden states
    of the text: of the whole rows, or of the stems. With a shared prefix (`collate`), the prefix
    runs once as one row, each stem (a segment) once after it, and each row (question + answer)
    after its stem's cache; the caches are expanded / indexed, so gradients add up over the rows
    that read them, as with whole rows."""
    mask = tensors["attention_mask"]
    want = layer is not None
    if len(embeds) == 1:
        out = backbone(inputs_embeds=embeds[0], attention_mask=mask, output_hidden_states=want)
        return out.last_hidden_state, (out.hidden_states[layer] if want else None)
    from transformers import DynamicCache

    def legacy(cache):
        return cache.to_legacy_cache() if hasattr(cache, "to_legacy_cache") else cache

    prefix, stems, rest = embeds
    n_prefix, n_stems, stem_len = prefix.shape[1], stems.shape[0], stems.shape[1]
    stem_mask, row_stem = tensors["stem_mask"], tensors["row_stem"]
    device = stems.device
    past = legacy(backbone(inputs_embeds=prefix, use_cache=True).past_key_values)
    cache = DynamicCache.from_legacy_cache(tuple((k.expand(n_stems, -1, -1, -1), v.expand(n_stems, -1, -1, -1)) for k, v in past))
    positions = torch.arange(n_prefix, n_prefix + stem_len, device=device)[None].expand(n_stems, -1)
    out_s = backbone(inputs_embeds=stems, attention_mask=torch.cat([stem_mask.new_ones((n_stems, n_prefix)), stem_mask], dim=1),
                     position_ids=positions, past_key_values=cache, use_cache=True, output_hidden_states=want)
    rows = rest.shape[0]
    cache = DynamicCache.from_legacy_cache(tuple((k[row_stem], v[row_stem]) for k, v in legacy(out_s.past_key_values)))
    full_mask = torch.cat([mask.new_ones((rows, n_prefix)), stem_mask[row_stem], mask], dim=1)
    start = n_prefix + stem_mask.sum(dim=1)[row_stem]
    positions = start[:, None] + torch.arange(rest.shape[1], device=device)[None]
    out = backbone(inputs_embeds=rest, attention_mask=full_mask, position_ids=positions, past_key_values=cache, use_cache=True)
    return out.last_hidden_state, (out_s.hidden_states[layer] if want else None)


def rng_state(device: torch.device) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """torch's random state (CPU, and `device`'s on a GPU), to replay a chunk's dropout masks."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_rng_state(state: Tuple[torch.Tensor, Optional[torch.Tensor]], device: torch.device) -> None:
    """Restore a state from `rng_state`."""
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def collate(batch: List[Instruction], pad_id: int, device, limit: int, constrained: bool = False,
            share_prefix: bool = False) -> Dict[str, torch.Tensor]:
    """Right-padded ids and attention mask of the rows, the (row, position) pairs whose next-token
    prediction is an answer token, with those targets, `perturb_mask` (the positions after the
    instruction prefix: what FGM may move) and (`constrained`) the (answer token, allowed id) pairs
    of the decoder's choice sets.

    Whole rows are prompt + answer. With `share_prefix`, when every instruction has the same
    prefix (the chat format's instruction), the chunk is split in three: `prefix_ids` (1 x P), run
    once; `stem_ids`/`stem_mask` (one row per segment: its text), run once after the prefix; and
    the rows (`input_ids`: suffix + answer, the question in the chat format) after their stem
    (`row_stem`). All of a segment's types then read one pass over its text."""
    full = [inst.input_ids + inst.answer_ids for inst in batch]
    longest = max(len(s) for s in full)
    if longest > limit:
        raise ValueError(
            f"An instruction with its answer needs {longest} tokens, more than the model's window of {limit}; "
            "lower max_new_tokens or use a base model with a longer window."
        )
    prefix = batch[0].prefix_ids
    stems: Dict[int, int] = {}
    if share_prefix and prefix and all(inst.prefix_ids == prefix for inst in batch):
        for inst in batch:
            stems.setdefault(id(inst.segment), len(stems))
        seqs = [inst.suffix_ids + inst.answer_ids for inst in batch]
        skip = [len(inst.input_ids) - len(inst.suffix_ids) for inst in batch]  # prefix + text
    else:
        seqs, skip = full, [0] * len(batch)
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    perturb = torch.zeros((len(seqs), longest), dtype=torch.long)
    rows, cols, targets, choice_rows, choice_ids = [], [], [], [], []
    for r, (inst, seq) in enumerate(zip(batch, seqs)):
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : len(seq)] = 1
        perturb[r, max(0, len(inst.prefix_ids) - skip[r]) : len(seq)] = 1
        start = len(inst.input_ids) - skip[r]
        if constrained and len(inst.answer_allowed) != len(inst.answer_ids):
            raise ValueError("answer_loss='constrained' needs the allowed token sets of every answer token.")
        for k, tok in enumerate(inst.answer_ids):
            if constrained:
                choice_rows.extend([len(targets)] * len(inst.answer_allowed[k]))
                choice_ids.extend(inst.answer_allowed[k])
            rows.append(r)
            cols.append(start + k - 1)
            targets.append(tok)
    out = {
        "input_ids": ids.to(device), "attention_mask": mask.to(device), "perturb_mask": perturb.to(device),
        "rows": torch.tensor(rows, device=device), "cols": torch.tensor(cols, device=device),
        "targets": torch.tensor(targets, device=device),
    }
    if stems:
        texts = {stems[id(inst.segment)]: inst.segment.input_ids for inst in batch}
        stem_len = max(len(t) for t in texts.values())
        stem_ids = torch.full((len(stems), stem_len), pad_id, dtype=torch.long)
        stem_mask = torch.zeros((len(stems), stem_len), dtype=torch.long)
        for k, text in texts.items():
            stem_ids[k, : len(text)] = torch.tensor(text)
            stem_mask[k, : len(text)] = 1
        out["prefix_ids"] = torch.tensor([prefix], dtype=torch.long, device=device)
        out["stem_ids"], out["stem_mask"] = stem_ids.to(device), stem_mask.to(device)
        out["row_stem"] = torch.tensor([stems[id(inst.segment)] for inst in batch], dtype=torch.long, device=device)
    if constrained:
        out["choice_rows"] = torch.tensor(choice_rows, device=device, dtype=torch.long)
        out["choice_ids"] = torch.tensor(choice_ids, device=device, dtype=torch.long)
    return out


def answer_loss(hidden: torch.Tensor, head: torch.nn.Module, tensors: Dict[str, torch.Tensor],
                reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the answer tokens only, their mean or sum (`reduction`), over the allowed
    tokens when the batch has choice sets."""
    logits = head(hidden[tensors["rows"], tensors["cols"]]).float()
    if "choice_rows" in tensors:
        allowed = torch.zeros_like(logits, dtype=torch.bool)
        allowed[tensors["choice_rows"], tensors["choice_ids"]] = True
        logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, tensors["targets"], reduction=reduction)


def text_token_reps(hidden: torch.Tensor, batch: List[Instruction], offset: int = 0,
                    row_of: Optional[List[int]] = None) -> Tuple[torch.Tensor, List[str], List[Optional[Tuple[int, int]]]]:
    """Hidden states of every non-whitespace input-text token of each instruction that has
    `contrastive` set (once per segment when the text comes before the type), with its gold entity
    type ("" for none) and its mention, (instruction index, mention start) or None. `hidden` starts
    at position `offset` of the instructions, and instruction r's states are row `row_of[r]` of it
    (default r): the stems of `collate`."""
    rows, cols, types, groups = [], [], [], []
    for i, inst in enumerate(batch):
        if not inst.contrastive:
            continue
        start = inst.text_range[0] - offset
        r = row_of[i] if row_of is not None else i
        for k, (a, b) in enumerate(inst.segment.offsets):
            if b > a:
                rows.append(r)
                cols.append(start + k)
                types.append(inst.token_types[k] if inst.token_types else "")
                mention = inst.token_spans[k] if inst.token_spans else -1
                groups.append((i, mention) if mention >= 0 else None)
    device = hidden.device
    return (hidden[torch.tensor(rows, device=device, dtype=torch.long), torch.tensor(cols, device=device, dtype=torch.long)],
            types, groups)
