"""Instruction prompts and answers for the few-shot NER component, built at the token level.

A prompt for one (sentence, entity type) pair is the concatenation of token ids
prefix(type) | <the sentence's own tokens> | suffix | <answer>, in one of two formats:

- "plain" (base models)::

    [bos] "### Instruction: Please extract the entities of type <label> from the input. <description>
    ### Input:" | sentence | "
    ### Answer:" | answer + eos

- "chat" (tokenizers with a chat template): the instruction, the sentence and the entity type
  are the user turn and the answer is the assistant turn, both rendered by the tokenizer's own
  template. The text comes first and the type last, so that the prefix up to the end of the
  sentence is the same for every type::

    <template up to the user content> "Find the entities of one type ... Text: " | sentence |
    "\nType: <label> (<description>)" <template from the end of the user turn to the assistant
    content> | answer + <end of turn>

  The terminator is the template's first token after an assistant message (``<|im_end|>`` for
  ChatML), so an answer is exactly the assistant turn's content and its closing token.

With demonstrations (solved examples, as in spacy-llm's few-shot prompts), the instruction is
preceded by them: in the chat format every demonstration text with the answer for each type
(shared by all types, so the key/value cache still serves every question), in the plain format
each demonstration text with the answer for the instruction's type::

    "Solved examples:\nText: <text>\n<label>: <<< a >>>\n<label2>: none\n\n" ... "Now the task.\n"

"auto" picks "chat" when the tokenizer has a chat template. The answer is `` <<< a >>> <<< b >>>``
+ terminator, or the explicit empty answer `` none`` + terminator. Entity tokens in an answer
are copied from the tokenized input, never re-tokenized, so that training targets and the
span-constrained decoder (`decoding.py`) agree exactly. The decoder computes the key/value cache
of what instructions share once: in the plain format the prefix of each type; in the chat format
(`PromptBuilder.text_first`) the instruction once and each sentence once for all its types, which
makes the (sentence-length) prefill per type a few tokens of question instead of the sentence.
"""
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span

INSTRUCTION = "### Instruction:\nPlease extract the entities of type {label} from the input."
DEFINITION = " Definition: {description}"
INPUT_HEADER = "\n### Input:\n"
ANSWER_HEADER = "\n### Answer:"
OPEN_MARK = " <<<"
CLOSE_MARK = " >>>"
NONE_MARK = " none"
CHAT_INSTRUCTION = (
    "Find the entities of one type in the text below. Write each one as <<< entity >>>, "
    "or write none if there is none.\nText: "
)
CHAT_QUESTION = "\nType: {label}"
CHAT_DEFINITION = " ({description})"
DEMO_HEADER = "Solved examples:\n"
DEMO_TEXT = "Text: {text}\n"
DEMO_ANSWER = "{label}:{answer}\n"
DEMO_FOOTER = "Now the task.\n"
PLAIN_DEMO = "\n### Example input:\n{text}\n### Example answer:{answer}"
PROMPT_FORMATS = ("auto", "chat", "plain")
#: A demonstration: a text and the entity texts of each type in it.
Demonstration = Tuple[str, Dict[str, List[str]]]
_SLOT = "\u2063SLOT\u2063"  # invisible separator: never produced by a chat template itself


def resolve_prompt_format(tokenizer, prompt_format: str) -> str:
    """"chat" or "plain" for `tokenizer` ("auto": chat exactly when it has a chat template)."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}.")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if prompt_format == "chat" and not has_template:
        raise ValueError(
            f"prompt_format = \"chat\" but the base model's tokenizer ({type(tokenizer).__name__}) has no chat "
            "template; use \"plain\" or \"auto\"."
        )
    if prompt_format == "auto":
        return "chat" if has_template else "plain"
    return prompt_format


def chat_pieces(tokenizer) -> Tuple[str, str, str]:
    """(text before the user content, text between the user content and the assistant content,
    text after the assistant content) of the tokenizer's chat template, for one user turn."""
    user = tokenizer.apply_chat_template([{"role": "user", "content": _SLOT}], tokenize=False,
                                         add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": _SLOT}, {"role": "assistant", "content": _SLOT}], tokenize=False
    )
    if user.count(_SLOT) != 1 or full.count(_SLOT) != 2 or not full.startswith(user):
        raise ValueError(
            "The base model's chat template does not render a user turn followed by an assistant turn as "
            "prefix + content + generation prompt; use prompt_format = \"plain\"."
        )
    head, between = user.split(_SLOT)
    after = full[len(user):].split(_SLOT)
    if after[0] or not after[1]:
        raise ValueError("The base model's chat template adds text before or nothing after an assistant message; "
                         "use prompt_format = \"plain\".")
    return head, between, after[1]


@dataclass(frozen=True)
class Markers:
    """Token ids of the answer's markers: span open/close, the empty answer and the terminator."""

    open: Tuple[int, ...]
    close: Tuple[int, ...]
    none: Tuple[int, ...]
    end: int


@dataclass
class Segment:
    """A piece of a Doc (a sentence, or a window of a long sentence) tokenized once.

    `offsets` are character offsets into the Doc's text with surrounding whitespace trimmed;
    `starts`/`ends` are the token positions at which an entity may begin / finish, i.e. tokens
    that contain the first / last character of a spaCy token.
    """

    doc_index: int
    start_char: int
    end_char: int
    input_ids: List[int]
    offsets: List[Tuple[int, int]]
    starts: FrozenSet[int]
    ends: FrozenSet[int]


@dataclass
class Instruction:
    """One training/decoding item: a segment, an entity type and (for training) its answer."""

    segment: Segment
    label: str
    prefix_ids: List[int]
    suffix_ids: List[int]
    #: Whether the contrastive loss reads this instruction's text tokens (once per segment when
    #: their hidden states do not depend on the type: the chat format puts the type after the text).
    contrastive: bool = True
    answer_ids: List[int] = field(default_factory=list)
    #: Token ids the span-constrained decoder allows before each answer token (training only).
    answer_allowed: List[List[int]] = field(default_factory=list)
    #: Entity type per input token ("" = not an entity), over all types: for the contrastive loss.
    token_types: List[str] = field(default_factory=list)
    #: The start character of the gold mention each input token belongs to (-1 = none): span-level contrast.
    token_spans: List[int] = field(default_factory=list)

    @property
    def input_ids(self) -> List[int]:
        return self.prefix_ids + self.segment.input_ids + self.suffix_ids

    @property
    def text_range(self) -> Tuple[int, int]:
        """Positions of the segment's tokens inside `input_ids`."""
        start = len(self.prefix_ids)
        return start, start + len(self.segment.input_ids)


class PromptBuilder:
    """Turns Docs into segments and (sentence, type) instructions for one tokenizer."""

    def __init__(self, tokenizer, descriptions: Dict[str, str], prompt_format: str = "auto",
                 demonstrations: Sequence[Demonstration] = ()):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                "The few-shot NER component needs a fast (Rust) Hugging Face tokenizer, because it maps "
                f"tokens back to characters with offsets; got {type(tokenizer).__name__}."
            )
        if tokenizer.eos_token_id is None:
            raise ValueError("The base model's tokenizer has no eos token, which the answer format uses as terminator.")
        self.tokenizer = tokenizer
        self.descriptions = dict(descriptions)
        self.prompt_format = resolve_prompt_format(tokenizer, prompt_format)
        self.demonstrations = [(str(text), {k: list(v) for k, v in ents.items()}) for text, ents in demonstrations]
        if self.prompt_format == "chat":
            self._chat_head, self._between, after = chat_pieces(tokenizer)
            end = self._encode(after)[0]
        else:
            self._answer_header = self._encode(ANSWER_HEADER)
            end = int(tokenizer.eos_token_id)
        self.markers = Markers(
            open=tuple(self._encode(OPEN_MARK)),
            close=tuple(self._encode(CLOSE_MARK)),
            none=tuple(self._encode(NONE_MARK)),
            end=end,
        )
        self._prefixes: Dict[str, List[int]] = {}
        self._suffixes: Dict[str, List[int]] = {}

    @property
    def text_first(self) -> bool:
        """Whether the prompt is the same for every type up to the end of the text (chat format)."""
        return self.prompt_format == "chat"

    def _encode(self, text: str) -> List[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def suffix_ids(self, label: str) -> List[int]:
        """Token ids between the text and the answer: in the chat format the question naming
        `label` (with its description) and the template's turn change; in the plain format the
        answer header."""
        if self.prompt_format != "chat":
            return self._answer_header
        if label not in self._suffixes:
            description = self.descriptions.get(label) or label
            text = CHAT_QUESTION.format(label=label)
            if description != label:
                text += CHAT_DEFINITION.format(description=description)
            self._suffixes[label] = self._encode(text + self._between)
        return self._suffixes[label]

    def max_suffix_length(self, labels: Iterable[str]) -> int:
        return max((len(self.suffix_ids(label)) for label in labels), default=0)

    def prefix_ids(self, label: str) -> List[int]:
        """Token ids before the text: the instruction for `label` up to the input header (the
        same for every label in the chat format)."""
        if label not in self._prefixes:
            description = self.descriptions.get(label) or label
            if self.prompt_format == "chat":
                self._prefixes[label] = self._encode(self._chat_head + self._chat_demonstrations() + CHAT_INSTRUCTION)
            else:
                text = INSTRUCTION.format(label=label)
                if description != label:
                    text += DEFINITION.format(description=description)
                text += "".join(PLAIN_DEMO.format(text=demo, answer=self.answer_text(ents.get(label, ())))
                                for demo, ents in self.demonstrations)
                bos = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
                self._prefixes[label] = bos + self._encode(text + INPUT_HEADER)
        return self._prefixes[label]

    def _chat_demonstrations(self) -> str:
        """The demonstrations block of the chat format: each text with every type's answer."""
        if not self.demonstrations:
            return ""
        blocks = [DEMO_TEXT.format(text=text) + "".join(
            DEMO_ANSWER.format(label=label, answer=self.answer_text(ents.get(label, ()))) for label in self.descriptions)
            for text, ents in self.demonstrations]
        return DEMO_HEADER + "\n".join(blocks) + "\n" + DEMO_FOOTER

    @staticmethod
    def answer_text(entities: Iterable[str]) -> str:
        """The answer format as text: `` <<< a >>> <<< b >>>`` (each text once) or `` none``."""
        unique = list(dict.fromkeys(entities))
        return "".join(f"{OPEN_MARK} {e}{CLOSE_MARK}" for e in unique) if unique else NONE_MARK

    def max_prefix_length(self, labels: Iterable[str]) -> int:
        return max((len(self.prefix_ids(label)) for label in labels), default=0)

    # -- segmentation ---------------------------------------------------------------------------
    def segments(self, doc: Doc, doc_index: int, max_tokens: int, protect: Sequence[Span] = (),
                 within: Optional[Span] = None) -> List[Segment]:
        """Split `doc` (or the span `within` of it) into sentences (when it has sentence
        boundaries) and then into windows of at most `max_tokens` model tokens. Windows end at
        spaCy token boundaries, outside the spans in `protect` where possible; nothing is
        truncated. A Doc without tokens gives no segment."""
        if max_tokens < 1:
            raise ValueError(f"No room for input text in the model window (budget {max_tokens} tokens).")
        if within is not None:
            units = [within]
        else:
            units = list(doc.sents) if doc.has_annotation("SENT_START") else [doc[:]]
        inside = set()
        for span in protect:
            inside.update(range(span.start + 1, span.end))  # token i starts inside an entity
        out: List[Segment] = []
        for unit in units:
            start = unit.start
            while start < unit.end:
                end = self._window_end(doc, start, unit.end, max_tokens, inside)
                seg = self._segment(doc, doc_index, start, end)
                if seg is not None:
                    out.append(seg)
                start = end
        return out

    def _window_end(self, doc: Doc, start: int, stop: int, max_tokens: int, inside: set) -> int:
        """The largest end <= stop such that doc[start:end] fits into `max_tokens` model tokens."""
        if self._n_tokens(doc, start, stop) <= max_tokens:
            return stop
        lo, hi = start + 1, stop  # invariant: doc[start:lo] fits (checked below), doc[start:hi+1] may not
        if self._n_tokens(doc, start, lo) > max_tokens:
            raise ValueError(
                f"The token {doc[start].text[:40]!r} alone needs more than {max_tokens} model tokens, "
                "the room left in the model window; use a base model with a longer window."
            )
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._n_tokens(doc, start, mid) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        end = lo
        while end - 1 > start and end in inside:  # don't cut through a (gold) entity if avoidable
            end -= 1
        return end if end not in inside else lo

    def _n_tokens(self, doc: Doc, start: int, end: int) -> int:
        text = doc.text[doc[start].idx : doc[end - 1].idx + len(doc[end - 1].text)]
        return len(self._encode(text))

    def _segment(self, doc: Doc, doc_index: int, start: int, end: int) -> Optional[Segment]:
        start_char = doc[start].idx
        end_char = doc[end - 1].idx + len(doc[end - 1].text)
        text = doc.text[start_char:end_char]
        if not text.strip():
            return None
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        token_starts = {t.idx for t in doc[start:end] if not t.is_space}
        token_ends = {t.idx + len(t.text) for t in doc[start:end] if not t.is_space}
        offsets: List[Tuple[int, int]] = []
        starts, ends = set(), set()
        for k, (a, b) in enumerate(enc["offset_mapping"]):
            piece = text[a:b]
            a2 = a + (len(piece) - len(piece.lstrip()))
            b2 = b - (len(piece) - len(piece.rstrip()))
            a2, b2 = a2 + start_char, max(a2, b2) + start_char  # whitespace-only: empty at a2
            offsets.append((a2, b2))
            if b2 > a2:
                if any(a2 <= s < b2 for s in token_starts):
                    starts.add(k)
                if any(a2 < e <= b2 for e in token_ends):
                    ends.add(k)
        return Segment(doc_index, start_char, end_char, list(enc["input_ids"]), offsets, frozenset(starts), frozenset(ends))

    # -- instructions -------------------------------------------------------------------------
    def token_span(self, segment: Segment, start_char: int, end_char: int) -> Optional[Tuple[int, int]]:
        """The model-token positions (first, last) covering the characters [start_char, end_char)."""
        hits = [k for k, (a, b) in enumerate(segment.offsets) if b > a and a < end_char and b > start_char]
        return (hits[0], hits[-1]) if hits else None

    def instruction(self, segment: Segment, label: str, gold: Optional[Sequence[Span]] = None) -> Instruction:
        """The instruction for (`segment`, `label`); with `gold` entities also its answer and token types."""
        inst = Instruction(segment, label, self.prefix_ids(label), self.suffix_ids(label))
        if gold is None:
            return inst
        types = [""] * len(segment.input_ids)
        spans = [-1] * len(segment.input_ids)
        mine: List[Tuple[int, int]] = []
        for ent in gold:
            if ent.end_char <= segment.start_char or ent.start_char >= segment.end_char:
                continue
            span = self.token_span(segment, ent.start_char, ent.end_char)
            if span is None:
                continue
            for k in range(span[0], span[1] + 1):
                types[k] = ent.label_
                spans[k] = ent.start_char
            if ent.label_ == label:
                mine.append(span)
        inst.token_types = types
        inst.token_spans = spans
        inst.answer_ids = self.answer_ids(segment, mine)
        return inst

    def answer_ids(self, segment: Segment, spans: Sequence[Tuple[int, int]]) -> List[int]:
        """`` <<< a >>> <<< b >>>`` + terminator for token spans in order of appearance; an entity
        whose text occurs again is listed once (the component marks every mention of the text)."""
        m = self.markers
        seen = set()
        out: List[int] = []
        for first, last in sorted(set(spans)):
            text = self.tokenizer.decode(segment.input_ids[first : last + 1]).strip()
            if text in seen:
                continue
            seen.add(text)
            out.extend(m.open + tuple(segment.input_ids[first : last + 1]) + m.close)
        if not out:
            out.extend(m.none)
        out.append(m.end)
        return out
