"""`fewshot_ner`: few-shot NER with a LoRA-tuned causal LM (CLLMFS) as a trainable spaCy pipe.

Training turns each gold Doc into one instruction per (sentence, entity type) (`prompts.py`) and
optimises LM + contrastive + adversarial losses (`model.py`) with the optimizer `spacy train`
passes to `update`. Prediction decodes each (sentence, type) with span-constrained greedy
generation (`decoding.py`), resolves overlaps across types and sets `doc.ents` and
`doc.spans[spans_key]` (the same entities, with `spans.attrs["scores"]`).
"""
import random
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import srsly
from spacy import util
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer

from ..corpus.episodes import ANNOTATED_LABELS
from .base_model import max_positions
from .decoding import SpanConstraint, generate, repeated_mentions, resolve_overlaps
from .model import get_shim
from .prompts import PROMPT_FORMATS, Instruction, PromptBuilder, Segment

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy_msnr.LoRAInstructionNER.v2"
base_model = null
lora = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
contrastive = {"layer": 0.75, "temperature": 0.07, "weight": 0.1}
adversarial = {"epsilon": 0.01}
answer_loss = "lm"
dtype = "auto"
store_base = null
seed = 0
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]

#: (start token, end token exclusive, label, score) of one predicted entity.
Candidate = Tuple[int, int, str, float]


@Language.factory(
    "fewshot_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type", "doc.spans"],
    default_config={
        "model": DEFAULT_MODEL,
        "labels": None,
        "spans_key": "fewshot_ner",
        "max_new_tokens": 64,
        "prompt_format": "auto",
        "batch_size": 16,
        "train_batch_size": 16,
        "negative_rate": 1.0,
        "demonstrations": 0,
        "overwrite_ents": False,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_fewshot_ner(
    nlp: Language,
    name: str,
    model: Model,
    labels: Optional[Union[Dict[str, Optional[str]], List[str]]],
    spans_key: str,
    max_new_tokens: int,
    prompt_format: str,
    batch_size: int,
    train_batch_size: int,
    negative_rate: float,
    demonstrations: int,
    overwrite_ents: bool,
    scorer: Optional[Callable],
) -> "FewShotNER":
    """Few-shot NER with a LoRA-tuned causal LM. `labels` maps each entity type to a short
    natural-language description (null: collect the types from the training data).
    `train_batch_size`: instructions per forward/backward pass (memory only, not the loss).
    `negative_rate`: share of the training instructions whose answer is "none" (a type absent
    from the sentence) that each update keeps, drawn afresh per update (1.0: all of them).
    `demonstrations`: how many of the initialize examples (in order) every prompt shows as solved
    examples, as spacy-llm's few-shot prompts do (0: none); they are saved with the pipe.
    `overwrite_ents`: let predictions replace overlapping entities set earlier in the pipeline
    (false: keep those, as spaCy's `ner` and `entity_ruler` do)."""
    return FewShotNER(
        nlp.vocab, model, name, labels=labels, spans_key=spans_key, max_new_tokens=max_new_tokens, prompt_format=prompt_format,
        batch_size=batch_size, train_batch_size=train_batch_size, negative_rate=negative_rate, demonstrations=demonstrations,
        overwrite_ents=overwrite_ents, scorer=scorer,
    )


class FewShotNER(TrainablePipe):
    """Entity recognition by instruction-following generation, constrained to input spans."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model,
        name: str = "fewshot_ner",
        *,
        labels: Optional[Union[Dict[str, Optional[str]], List[str]]] = None,
        spans_key: str = "fewshot_ner",
        max_new_tokens: int = 64,
        prompt_format: str = "auto",
        batch_size: int = 16,
        train_batch_size: int = 16,
        negative_rate: float = 1.0,
        demonstrations: int = 0,
        overwrite_ents: bool = False,
        scorer: Optional[Callable] = None,
    ):
        if max_new_tokens < 1 or batch_size < 1 or train_batch_size < 1:
            raise ValueError("max_new_tokens, batch_size and train_batch_size must be >= 1.")
        if not 0.0 <= negative_rate <= 1.0:
            raise ValueError(f"negative_rate must be between 0 and 1, got {negative_rate!r}.")
        if demonstrations < 0:
            raise ValueError(f"demonstrations must be >= 0, got {demonstrations!r}.")
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}.")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": _as_label_dict(labels), "spans_key": spans_key, "max_new_tokens": max_new_tokens, "prompt_format": prompt_format,
            "batch_size": batch_size, "train_batch_size": train_batch_size, "negative_rate": float(negative_rate),
            "demonstrations": int(demonstrations), "demonstration_data": [], "overwrite_ents": bool(overwrite_ents),
        }
        self._builder: Optional[PromptBuilder] = None

    # -- labels -------------------------------------------------------------------------------
    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> Dict[str, str]:
        """Each label's description (its name where none was given)."""
        return {label: desc or label for label, desc in self.cfg["labels"].items()}

    def add_label(self, label: str, description: Optional[str] = None) -> int:
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"Entity labels must be non-empty strings, got {label!r}.")
        if label in self.cfg["labels"]:
            return 0
        self.cfg["labels"][label] = description
        self._builder = None
        return 1

    # -- initialization ---------------------------------------------------------------------------
    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Union[Dict[str, Optional[str]], List[str]]] = None,
    ) -> None:
        """Fix the label set (configured, or collected from the data), keep the first
        `demonstrations` examples as solved examples for the prompts, load the base model and add
        fresh LoRA adapters."""
        validate_get_examples(get_examples, "FewShotNER.initialize")
        configured = _as_label_dict(labels) if labels else dict(self.cfg["labels"])
        found = set()  # one pass over the corpus: entity labels and episode-annotated types
        for eg in get_examples():
            found.update(ent.label_ for ent in eg.reference.ents)
            found.update(eg.reference.user_data.get(ANNOTATED_LABELS) or ())
        seen = sorted(found)
        if configured:
            unknown = [label for label in seen if label not in configured]
            if unknown:
                raise ValueError(
                    f"[{self.name}] The training data has entity label(s) {unknown} that are not in the configured "
                    f"labels {sorted(configured)}; add them (with a description) to [components.{self.name}.labels] "
                    "or remove the labels setting to collect labels from the data."
                )
            undescribed = [label for label, desc in configured.items() if not desc or not str(desc).strip()]
            if undescribed:
                warnings.warn(f"[{self.name}] Label(s) {undescribed} have no description; each is described by its name.")
        else:
            if not seen:
                raise ValueError(
                    f"[{self.name}] No labels configured and no entities in the training examples: "
                    "set [components.{self.name}.labels] or provide annotated examples."
                )
            configured = {label: None for label in seen}
        self.cfg["labels"] = {label: (desc if desc and str(desc).strip() else label) for label, desc in configured.items()}
        self.cfg["demonstration_data"] = demonstrations_of(get_examples(), self.cfg["demonstrations"])
        self._builder = None
        self.model.initialize()

    @property
    def builder(self) -> PromptBuilder:
        if self._builder is None:
            self._builder = PromptBuilder(get_shim(self.model).tokenizer, self.label_data, self.cfg["prompt_format"],
                                          self.cfg["demonstration_data"])
        return self._builder

    def _text_budget(self) -> int:
        shim = get_shim(self.model)
        limit = max_positions(shim.model, shim.tokenizer)
        used = (self.builder.max_prefix_length(self.labels) + self.builder.max_suffix_length(self.labels)
                + self.cfg["max_new_tokens"])
        budget = limit - used
        if budget < 1:
            raise ValueError(
                f"[{self.name}] The model window ({limit} tokens) leaves no room for text after the longest "
                f"instruction and max_new_tokens={self.cfg['max_new_tokens']}; shorten the label descriptions, "
                f"max_new_tokens or the in-context examples (demonstrations={self.cfg['demonstrations']})."
            )
        return budget

    # -- training -------------------------------------------------------------------------------
    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One optimisation step on the instructions built from `examples`' gold entities.
        `train_batch_size` only bounds how many instructions run through the model at once: the
        loss and its gradient are those of all the examples' instructions together."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "FewShotNER.update")
        instructions = self.training_instructions(examples)
        if not instructions:
            return losses
        chunks = training_chunks(instructions, self.cfg["train_batch_size"], self.builder.text_first)
        totals, backprop = self.model.begin_update(chunks)
        backprop(1.0)
        if sgd is not None:
            self.finish_update(sgd)
        weight = float(self.model.attrs["contrastive"]["weight"])
        losses[self.name] += totals["lm"] + weight * totals["contrastive"] + totals["adversarial"]
        for key, value in totals.items():
            losses[f"{self.name}_{key}"] = losses.get(f"{self.name}_{key}", 0.0) + value
        return losses

    def training_instructions(self, examples: List[Example]) -> List[Instruction]:
        """One instruction with its gold answer per (segment, label) of the examples; for a gold Doc
        annotated for some types only (`user_data[ANNOTATED_LABELS]`, an episode's), per those types."""
        known = set(self.labels)
        budget = self._text_budget()
        out: List[Instruction] = []
        for i, eg in enumerate(examples):
            gold = eg.reference
            if len(gold) and not gold.has_annotation("ENT_IOB"):
                continue  # no entity annotation at all: nothing to learn from
            annotated = gold.user_data.get(ANNOTATED_LABELS)  # an episode's Doc: only its types are marked
            unknown = sorted(({ent.label_ for ent in gold.ents} | set(annotated or ())) - known)
            if unknown:
                raise ValueError(
                    f"[{self.name}] Training example {i} has entity label(s) {unknown} not among the labels "
                    f"{sorted(known)}; configure them or let initialize collect them from the data."
                )
            labels = [label for label in self.labels if annotated is None or label in annotated]
            if not labels:
                continue  # annotated for no type: nothing to ask
            out.extend(self._fitting_instructions(gold, i, self.builder.segments(gold, i, budget, protect=gold.ents), budget, labels))
        return out

    def _fitting_instructions(self, gold: Doc, index: int, segments: List[Segment], budget: int,
                              labels: Sequence[str]) -> List[Instruction]:
        """Instructions (with answers) of `segments`; a segment whose prompt + answer would exceed
        the model window (many entities) is split into smaller windows instead of truncated."""
        shim = get_shim(self.model)
        limit = max_positions(shim.model, shim.tokenizer)
        rate = self.cfg.get("negative_rate", 1.0)  # pipes saved before the setting existed keep all
        out: List[Instruction] = []
        for seg in segments:
            insts = [self.builder.instruction(seg, label, gold.ents) for label in labels]
            if max(len(x.input_ids) + len(x.answer_ids) for x in insts) > limit:
                span = gold.char_span(seg.start_char, seg.end_char, alignment_mode="expand")
                if span is not None and len(span) > 1 and budget > 1:
                    smaller = self.builder.segments(gold, index, max(1, len(seg.input_ids) // 2), gold.ents, within=span)
                    out.extend(self._fitting_instructions(gold, index, smaller, budget, labels))
                    continue
            kept = insts
            if rate < 1.0:  # keep every type the segment holds, a `rate` share of the "none" answers
                present = {ent.label_ for ent in gold.ents if seg.start_char <= ent.start_char and ent.end_char <= seg.end_char}
                kept = [inst for inst in insts if inst.label in present or random.random() < rate]
            for k, inst in enumerate(kept):
                constraint = SpanConstraint(seg.input_ids, seg.starts, seg.ends, self.builder.markers)
                inst.answer_allowed = constraint.allowed_along(inst.answer_ids)
                inst.contrastive = k == 0 or not self.builder.text_first  # text states shared by all types
                out.append(inst)
        return out

    # -- prediction -----------------------------------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> List[List[Candidate]]:
        """Entity candidates (start, end, label, score) per Doc, before overlap resolution."""
        docs = list(docs)
        out: List[List[Candidate]] = [[] for _ in docs]
        if not self.labels:
            raise ValueError(f"[{self.name}] The component has no labels; initialize it first.")
        if not any(len(doc) for doc in docs):
            return out
        shim = get_shim(self.model)
        budget = self._text_budget()
        segments: List[Segment] = [seg for i, doc in enumerate(docs) for seg in self.builder.segments(doc, i, budget)]
        if not segments:
            return out
        b, labels, markers = self.builder, self.labels, self.builder.markers
        # constraints[label][k]: the answer for (segments[k], label)
        constraints = {label: [SpanConstraint(s.input_ids, s.starts, s.ends, markers) for s in segments] for label in labels}
        if b.text_first:  # one job per segment: its text's cache serves every type's question
            head = b.prefix_ids(labels[0])
            jobs = [(head + seg.input_ids, [b.suffix_ids(label) for label in labels],
                     [constraints[label][k] for label in labels]) for k, seg in enumerate(segments)]
            shared = len(head)
        else:  # one job per type: its instruction's cache serves every segment
            jobs = [(b.prefix_ids(label), [seg.input_ids + b.suffix_ids(label) for seg in segments], constraints[label])
                    for label in labels]
            shared = 0
        generate(shim.model, jobs, max_new_tokens=self.cfg["max_new_tokens"], batch_size=self.cfg["batch_size"],
                 pad_id=shim.tokenizer.pad_token_id, shared=shared)
        for label in labels:
            unfinished = sum(not c.finished for c in constraints[label])
            if unfinished:
                warnings.warn(
                    f"[{self.name}] {unfinished} answer(s) for {label!r} reached max_new_tokens="
                    f"{self.cfg['max_new_tokens']} before the terminator; the entities completed so far are kept."
                )
            for seg, cons in zip(segments, constraints[label]):
                doc = docs[seg.doc_index]
                for found in cons.spans():
                    span = doc.char_span(seg.offsets[found.first][0], seg.offsets[found.last][1], alignment_mode="expand")
                    if span is None or not len(span):
                        continue
                    mentions = repeated_mentions(doc, span.text, seg.start_char, seg.end_char) or [span]
                    out[seg.doc_index].extend((m.start, m.end, label, found.score) for m in mentions)
        return out

    def set_annotations(self, docs: Iterable[Doc], candidates: List[List[Candidate]]) -> None:
        """Add the non-overlapping candidates to `doc.ents` and set `doc.spans[spans_key]` to the
        entities this component added, with their scores (`spans.attrs["scores"]`).

        As spaCy's `ner` and `entity_ruler` do, entities set earlier in the pipeline are kept: a
        prediction that overlaps one is dropped. With `overwrite_ents` (the `entity_ruler`'s
        switch) predictions win instead, and only the earlier entities they overlap are removed.
        """
        key = self.cfg["spans_key"]
        overwrite = self.cfg["overwrite_ents"]
        for doc, cands in zip(docs, candidates):
            existing = list(doc.ents)
            taken = {i for ent in existing for i in range(ent.start, ent.end)}
            chosen = [c for c in resolve_overlaps(cands) if overwrite or not taken.intersection(range(c[0], c[1]))]
            spans = [Span(doc, s, e, label=label) for s, e, label, _ in chosen]
            mine = {i for s, e, _, _ in chosen for i in range(s, e)}
            kept = [ent for ent in existing if not mine.intersection(range(ent.start, ent.end))]
            doc.ents = sorted(kept + spans, key=lambda span: span.start)
            group = SpanGroup(doc, name=key, spans=spans)
            group.attrs["scores"] = [score for _, _, _, score in chosen]
            doc.spans[key] = group

    # -- serialization ----------------------------------------------------------------------------
    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        serialize = {
            "cfg": lambda p: srsly.write_json(p, self.cfg),
            "vocab": lambda p: self.vocab.to_disk(p, exclude=exclude),
            "model": lambda p: get_shim(self.model).to_disk(p),
        }
        util.to_disk(path, serialize, exclude)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "FewShotNER":
        deserialize = {
            "cfg": lambda p: self.cfg.update(_saved_cfg(srsly.read_json(p))),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: get_shim(self.model).from_disk(p),
        }
        util.from_disk(path, deserialize, exclude)
        self._builder = None
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        serialize = {
            "cfg": lambda: srsly.json_dumps(self.cfg),
            "vocab": lambda: self.vocab.to_bytes(exclude=exclude),
            "model": lambda: get_shim(self.model).to_bytes(),
        }
        return util.to_bytes(serialize, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "FewShotNER":
        deserialize = {
            "cfg": lambda b: self.cfg.update(_saved_cfg(srsly.json_loads(b))),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: get_shim(self.model).from_bytes(b),
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        self._builder = None
        return self


def training_chunks(instructions: List[Instruction], size: int, by_segment: bool) -> List[List[Instruction]]:
    """Consecutive chunks of at most `size` instructions. `by_segment`: a segment's instructions
    (all its types) stay in one chunk, even one larger than `size`, so that its text is run once
    for all of them and the chunking changes nothing (the chat format)."""
    if not by_segment:
        return [instructions[b0 : b0 + size] for b0 in range(0, len(instructions), size)]
    groups: List[List[Instruction]] = []
    for inst in instructions:
        if groups and groups[-1][0].segment is inst.segment:
            groups[-1].append(inst)
        else:
            groups.append([inst])
    chunks: List[List[Instruction]] = []
    for group in groups:
        if chunks and len(chunks[-1]) + len(group) <= size:
            chunks[-1].extend(group)
        else:
            chunks.append(list(group))
    return chunks


def demonstrations_of(examples: Iterable[Example], n: int) -> List[List[Any]]:
    """The first `n` examples with text as [text, {label: entity texts in order}] (JSON as saved);
    whitespace-only texts are skipped."""
    out: List[List[Any]] = []
    for eg in examples:
        if len(out) >= n:
            break
        doc = eg.reference
        if not doc.text.strip():
            continue
        ents: Dict[str, List[str]] = {}
        for ent in doc.ents:
            ents.setdefault(ent.label_, []).append(ent.text)
        out.append([doc.text.strip(), ents])
    return out


def _saved_cfg(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """A saved pipe's settings; pipelines saved before prompt_format existed used the plain format."""
    return {"prompt_format": "plain", **cfg}


def _as_label_dict(labels: Optional[Union[Dict[str, Optional[str]], List[str]]]) -> Dict[str, Optional[str]]:
    if not labels:
        return {}
    if isinstance(labels, dict):
        items = list(labels.items())
    else:
        items = [(label, None) for label in labels]
    for label, desc in items:
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"Entity labels must be non-empty strings, got {label!r}.")
        if desc is not None and not isinstance(desc, str):
            raise ValueError(f"The description of label {label!r} must be a string, got {type(desc).__name__}.")
    return dict(items)
