"""Small helpers shared by the tests (imported as `from util import ...`)."""
from pathlib import Path
from typing import List, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example

#: Committed slices of the real corpora (see tests/fixtures/README.md), laid out like assets/.
FIXTURES = Path(__file__).resolve().parent / "fixtures"

#: (text with space-separated tokens, [(start token, end token, label), ...])
Annotated = Tuple[str, Sequence[Tuple[int, int, str]]]


def make_examples(nlp: Language, data: Sequence[Annotated]) -> List[Example]:
    """Examples with gold entities from whitespace-tokenized sentences."""
    out = []
    for text, ents in data:
        words = text.split()
        ref = Doc(nlp.vocab, words=words)
        ref.ents = [Span(ref, s, e, label=label) for s, e, label in ents]
        out.append(Example(Doc(nlp.vocab, words=words), ref))
    return out


#: A chat template made of tokens the tiny causal models already have (their bos/eos).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<s>' + message['role'] + '\\n' + message['content'] + '</s>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant\\n' }}{% endif %}"
)
