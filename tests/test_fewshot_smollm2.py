"""`fewshot_ner` on the converted SmolLM2-135M-Instruct (slow; run with `-m slow`; skipped when
assets/models/smollm2-135m-instruct is absent)."""
import math
from pathlib import Path

import pytest
import spacy
from thinc.api import Adam

import util  # tests/util.py

SMOLLM2 = Path(__file__).resolve().parent.parent / "assets" / "models" / "smollm2-135m-instruct"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not (SMOLLM2 / "config.json").exists(), reason=f"{SMOLLM2} is not there (fetch-model)"),
]

TRAIN = [
    ("Barack Obama met Angela Merkel in Berlin .", [(0, 2, "politician"), (3, 5, "politician"), (6, 7, "location")]),
    ("The Labour Party lost the election in London .", [(1, 3, "party"), (7, 8, "location")]),
]


def test_smollm2_chat_prompts_train_and_predict_real_spans():
    nlp = spacy.blank("en")
    nlp.add_pipe("fewshot_ner", config={"model": {"base_model": str(SMOLLM2)}, "max_new_tokens": 16})
    examples = util.make_examples(nlp, TRAIN)
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("fewshot_ner")
    assert pipe.builder.prompt_format == "chat"  # the instruct model's template is used
    tok = pipe.builder.tokenizer
    assert tok.convert_ids_to_tokens(pipe.builder.markers.end) == "<|im_end|>"
    first = pipe.training_instructions(examples)[0]
    assert tok.decode(first.input_ids).endswith("<|im_end|>\n<|im_start|>assistant\n")
    sgd = Adam(0.002)
    losses = [nlp.update(examples, sgd=sgd)["fewshot_ner"] for _ in range(3)]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    doc = nlp("Angela Merkel spoke in Berlin .")
    assert all(ent.label_ in {"politician", "party", "location"} for ent in doc.ents)
    assert all(doc.char_span(e.start_char, e.end_char) is not None for e in doc.ents)
