"""The `fewshot_ner` pipe: labels, bad input, overfitting, serialization round trips."""
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import spacy
import torch
from spacy.tokens import Span
from spacy.training import Example
from thinc.api import Adam

import util  # tests/util.py
from spacy_msnr.fewshot.model import get_shim

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = [
    ("Obama visited London .", [(0, 1, "PER"), (2, 3, "LOC")]),
    ("Merkel met Macron .", [(0, 1, "PER"), (2, 3, "PER")]),
    ("Rivers flow through Berlin .", [(3, 4, "LOC")]),
    ("Nothing happened .", []),
    ("Smith lives in Rome .", [(0, 1, "PER"), (3, 4, "LOC")]),
]
#: Settings that let LoRA on a tiny random base overfit 5 sentences quickly and reliably.
#: LoRA on all linear layers and the decoder's choice loss ("constrained"): a random frozen base
#: gives almost no signal through the full-vocabulary LM loss (its logits are tiny).
OVERFIT_MODEL = {
    "answer_loss": "constrained", "lora": {"r": 32, "alpha": 64, "dropout": 0.0, "target_modules": "all-linear"},
    "contrastive": {"layer": 0.75, "temperature": 0.07, "weight": 0.02}, "adversarial": {"epsilon": 0.01},
}




def make_examples(nlp, data=TRAIN):
    return util.make_examples(nlp, data)


def make_nlp(model_dir, labels=None, **model):
    nlp = spacy.blank("en")
    cfg = {"model": {"base_model": str(model_dir), **model}, "max_new_tokens": 32}
    if labels is not None:
        cfg["labels"] = labels
    nlp.add_pipe("fewshot_ner", config=cfg)
    return nlp


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def trained(request, tiny_model_dir):
    """A pipeline trained until it reproduces the 5 training sentences (F1 = 1.0)."""
    nlp = make_nlp(tiny_model_dir(request.param), **OVERFIT_MODEL)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    sgd = Adam(0.005)
    scores = {"ents_f": 0.0}
    for step in range(300):
        nlp.update(examples, sgd=sgd)
        if step % 10 == 9:
            scores = nlp.evaluate(examples)
            if scores["ents_f"] == 1.0:
                break
    return nlp, examples, scores


def test_overfits_five_sentences(trained):
    nlp, examples, scores = trained
    assert scores["ents_f"] == 1.0
    doc = nlp("Smith lives in Rome .")
    assert [(e.text, e.label_) for e in doc.ents] == [("Smith", "PER"), ("Rome", "LOC")]
    group = doc.spans["fewshot_ner"]
    assert list(group) == list(doc.ents)
    assert len(group.attrs["scores"]) == 2 and all(0 < s <= 1 for s in group.attrs["scores"])


def test_default_config_overfits_five_sentences(tiny_model_dir):
    """The paper's path as configs/fewshot.cfg sets it (LM loss over the whole vocabulary,
    contrastive and FGM on, the default LoRA, Adam at 1e-3 with grad_clip 1.0) learns the
    training sentences. With the earlier FGM epsilon of 0.1 this reached only F1 0.83 in 300
    updates (the perturbation of every token outweighed the LM signal); at 0.01 it reaches 1.0
    in about 200."""
    nlp = make_nlp(tiny_model_dir("llama"))
    model_cfg = nlp.config["components"]["fewshot_ner"]["model"]
    assert model_cfg["answer_loss"] == "lm" and model_cfg["contrastive"]["weight"] > 0
    assert model_cfg["adversarial"]["epsilon"] > 0
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    sgd = Adam(learn_rate=0.001, grad_clip=1.0)  # [training.optimizer] of configs/fewshot.cfg
    first = nlp.update(examples, sgd=sgd)["fewshot_ner_lm"]
    scores = {"ents_f": 0.0}
    for step in range(2, 301):
        losses = nlp.update(examples, sgd=sgd)
        if step % 25 == 0:
            scores = nlp.evaluate(examples)
            if scores["ents_f"] == 1.0:
                break
    assert losses["fewshot_ner_lm"] < first
    assert losses["fewshot_ner_adversarial"] > 0 and losses["fewshot_ner_contrastive"] > 0
    assert scores["ents_f"] == 1.0
    doc = nlp("Obama visited London .")
    assert [(e.text, e.label_) for e in doc.ents] == [("Obama", "PER"), ("London", "LOC")]


def test_chat_format_reads_each_text_once_for_the_contrastive_loss(tiny_chat_model_dir):
    """In the chat format the type comes after the text, so a text token's hidden states are the
    same in every type's instruction (causal attention): InfoNCE reads them from one instruction
    per segment instead of n_types identical copies."""
    from spacy_msnr.fewshot.base_model import split_causal_lm
    from spacy_msnr.fewshot.batching import text_token_reps

    nlp = make_nlp(tiny_chat_model_dir)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("fewshot_ner")
    assert ner.builder.text_first
    insts = ner.training_instructions(examples)
    per_segment = {}
    for inst in insts:
        per_segment.setdefault(id(inst.segment), []).append(inst)
    assert len(per_segment) == 5 and all(len(group) == 2 for group in per_segment.values())
    assert all([i.contrastive for i in group] == [True, False] for group in per_segment.values())
    reps, types, groups = text_token_reps(torch.zeros(len(insts), max(len(i.input_ids) for i in insts), 1), insts)
    assert len(types) == len(groups) == sum(sum(b > a for a, b in g[0].segment.offsets) for g in per_segment.values())
    # entity tokens carry their mention (instruction, start char), the others none
    assert all((g is None) == (t == "") for t, g in zip(types, groups))
    # the reason: both types' instructions give the text tokens the same hidden states
    first = next(iter(per_segment.values()))
    backbone, _ = split_causal_lm(get_shim(ner.model).model.eval())
    states = [backbone(input_ids=torch.tensor([i.input_ids]), output_hidden_states=True).hidden_states[-1][0]
              for i in first]
    start, end = first[0].text_range
    assert first[0].text_range == first[1].text_range and first[0].label != first[1].label
    torch.testing.assert_close(states[0][start:end], states[1][start:end])


def _ents(nlp, texts):
    return [[(e.start, e.end, e.label_) for e in d.ents] + [tuple(d.spans["fewshot_ner"].attrs["scores"])]
            for d in nlp.pipe(texts)]


TEXTS = [t for t, _ in TRAIN] + ["Obama met Smith in London and Rome .", ""]


def test_to_disk_and_spacy_load_round_trip(trained, tmp_path):
    nlp = trained[0]
    nlp.to_disk(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "fewshot_ner" / "model" / "adapter.safetensors").exists()
    loaded = spacy.load(tmp_path / "pipe")
    assert loaded.get_pipe("fewshot_ner").label_data == nlp.get_pipe("fewshot_ner").label_data
    assert _ents(loaded, TEXTS) == _ents(nlp, TEXTS)


def test_to_bytes_round_trip(trained):
    nlp = trained[0]
    other = spacy.blank("en")
    cfg = {k: v for k, v in nlp.config["components"]["fewshot_ner"].items() if k != "factory"}
    other.add_pipe("fewshot_ner", config=cfg)
    other.from_bytes(nlp.to_bytes())
    assert _ents(other, TEXTS) == _ents(nlp, TEXTS)


def test_package_round_trip(trained, tmp_path):
    if os.environ.get("MSNR_SKIP_PACKAGE_TEST"):
        pytest.skip("MSNR_SKIP_PACKAGE_TEST is set")
    nlp = trained[0]
    if nlp.get_pipe("fewshot_ner").model.shims[0].meta["model_type"] != "llama":
        pytest.skip("package round trip checked for one architecture (slow)")
    nlp.meta["name"] = "fewshot_test"
    nlp.to_disk(tmp_path / "pipe")
    out = tmp_path / "pkg"
    out.mkdir()
    run = lambda *args: subprocess.run([sys.executable, "-m", *args], check=True, capture_output=True, text=True)
    run("spacy", "package", str(tmp_path / "pipe"), str(out), "--name", "fewshot_test", "--version", "0.0.1", "--build", "wheel")
    (wheel,) = list(out.rglob("*.whl"))
    run("pip", "install", "--no-deps", "--no-index", "--target", str(tmp_path / "site"), str(wheel))
    code = (
        "import sys, json, spacy; sys.path.insert(0, sys.argv[1]); nlp = spacy.load('en_fewshot_test');"
        "print(json.dumps([[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(json.loads(sys.argv[2]))]))"
    )
    import json

    got = subprocess.run([sys.executable, "-c", code, str(tmp_path / "site"), json.dumps(TEXTS)], check=True,
                         capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    expected = [[[e.start, e.end, e.label_] for e in d.ents] for d in nlp.pipe(TEXTS)]
    assert json.loads(got.stdout.strip().splitlines()[-1]) == expected


def test_uninitialized_round_trip(tiny_model_dir, tmp_path):
    nlp = make_nlp(tiny_model_dir("llama"), labels={"PER": "a person"})
    nlp.to_disk(tmp_path / "raw")
    loaded = spacy.load(tmp_path / "raw")
    ner = loaded.get_pipe("fewshot_ner")
    assert ner.labels == ("PER",) and not ner.model.shims[0].loaded
    other = make_nlp(tiny_model_dir("llama"))
    other.from_bytes(nlp.to_bytes())
    assert other.get_pipe("fewshot_ner").labels == ("PER",)


def test_labels_collected_from_data(tiny_model_dir):
    nlp = make_nlp(tiny_model_dir("llama"))
    examples = make_examples(nlp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # collected labels are described by their names, silently
        nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("fewshot_ner")
    assert ner.labels == ("LOC", "PER") and ner.label_data == {"LOC": "LOC", "PER": "PER"}
    # empty and whitespace-only docs: no crash, no entities
    for text in ["", "   "]:
        doc = nlp(text)
        assert doc.ents == () and len(doc.spans["fewshot_ner"]) == 0
    # a text much longer than the model window is split, not truncated: decoding reaches its end
    long_text = " ".join(["Smith lives in Rome and Obama visited London ."] * 40)
    doc = nlp.make_doc(long_text)
    segs = ner.builder.segments(doc, 0, ner._text_budget())
    assert len(segs) > 1 and segs[-1].end_char == len(long_text)
    assert len(nlp(long_text)) == len(doc)
    # a label in the data that the component doesn't know
    bad = make_examples(nlp, [("Apple rose .", [(0, 1, "ORG")])])
    with pytest.raises(ValueError, match="ORG"):
        nlp.update(bad)


def test_configured_labels(tiny_model_dir):
    nlp = make_nlp(tiny_model_dir("gpt2"), labels={"PER": "a person", "LOC": ""})
    examples = make_examples(nlp)
    with pytest.warns(UserWarning, match="LOC"):
        nlp.initialize(lambda: examples)
    assert nlp.get_pipe("fewshot_ner").label_data == {"PER": "a person", "LOC": "LOC"}
    narrow = make_nlp(tiny_model_dir("gpt2"), labels={"PER": "a person"})
    with pytest.raises(ValueError, match=r"'LOC'.*not in the configured"):
        narrow.initialize(lambda: make_examples(narrow))


def test_no_labels_anywhere_is_an_error(tiny_model_dir):
    nlp = make_nlp(tiny_model_dir("llama"))
    with pytest.raises(ValueError, match="No labels"):
        nlp.initialize(lambda: make_examples(nlp, [("Nothing here .", [])]))


def test_negative_rate_drops_none_answers_only(tiny_chat_model_dir):
    """negative_rate keeps every instruction whose type occurs in the text and that share of the
    others ("none" answers), drawn per update; the first kept one per text carries the contrastive states."""
    import random

    nlp = spacy.blank("en")
    nlp.add_pipe("fewshot_ner", config={"model": {"base_model": str(tiny_chat_model_dir)}, "max_new_tokens": 32,
                                        "negative_rate": 0.0})
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("fewshot_ner")
    insts = ner.training_instructions(examples)
    # 5 sentences x 2 types = 10 instructions: 6 whose type occurs in the sentence, 4 "none"
    present = [{e.label_ for e in eg.reference.ents} for eg in examples]
    assert sum(len(labels) for labels in present) == 6 and len(insts) == 6
    assert all(inst.label in present[inst.segment.doc_index] for inst in insts)
    assert sum(i.contrastive for i in insts) == 4  # the sentence without entities has no instruction left
    ner.cfg["negative_rate"] = 1.0
    assert len(ner.training_instructions(examples)) == 10
    ner.cfg["negative_rate"] = 0.5
    random.seed(0)
    counts = [len(ner.training_instructions(examples)) for _ in range(40)]
    assert min(counts) >= 6 and max(counts) <= 10 and 7 < sum(counts) / len(counts) < 9
    with pytest.raises(ValueError, match="negative_rate"):
        nlp.add_pipe("fewshot_ner", name="other", config={"negative_rate": 1.5})


def test_long_answers_split_the_training_text(tiny_model_dir):
    nlp = make_nlp(tiny_model_dir("llama"), labels={"LOC": "a place"})
    nlp.get_pipe("fewshot_ner").cfg["max_new_tokens"] = 8  # leaves room for text, little for answers
    words = ("Rome Paris Berlin Madrid Lisbon Vienna Prague Warsaw Dublin Oslo " * 4).split()
    data = [(" ".join(words), [(i, i + 1, "LOC") for i in range(len(words))])]
    examples = make_examples(nlp, data)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("fewshot_ner")
    insts = ner.training_instructions(examples)
    limit = ner.model.shims[0].model.config.max_position_embeddings
    assert len(insts) > 1 and all(len(x.input_ids) + len(x.answer_ids) <= limit for x in insts)
    covered = "".join(examples[0].reference.text[x.segment.start_char : x.segment.end_char] for x in insts)
    assert covered.replace(" ", "") == "".join(words)  # every word is in exactly one window


def _set_ents(doc, ents):
    doc.ents = [Span(doc, s, e, label=label) for s, e, label in ents]
    return doc


@pytest.mark.parametrize("overwrite", [False, True])
def test_entities_set_earlier_are_kept_unless_overwrite_ents(tiny_model_dir, overwrite):
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("fewshot_ner", config={"model": {"base_model": str(tiny_model_dir("llama"))},
                                              "overwrite_ents": overwrite})
    assert nlp.config["components"]["fewshot_ner"]["overwrite_ents"] is overwrite
    doc = _set_ents(nlp.make_doc("Obama met Smith in New York and Rome ."), [(4, 6, "GPE"), (7, 8, "GPE")])
    # predictions: Obama and Smith (free), York (inside New York), Rome (the same token as Rome)
    cands = [(0, 1, "PER", 0.9), (2, 3, "PER", 0.8), (5, 6, "LOC", 0.7), (7, 8, "LOC", 0.6)]
    ner.set_annotations([doc], [cands])
    got = [(e.start, e.end, e.label_) for e in doc.ents]
    if overwrite:  # predictions win; the earlier entities they overlap are removed (entity_ruler's switch)
        assert got == [(0, 1, "PER"), (2, 3, "PER"), (5, 6, "LOC"), (7, 8, "LOC")]
    else:  # as spaCy's ner: earlier entities stay, overlapping predictions are dropped
        assert got == [(0, 1, "PER"), (2, 3, "PER"), (4, 6, "GPE"), (7, 8, "GPE")]
    group = doc.spans["fewshot_ner"]
    assert [(s.start, s.end, s.label_) for s in group] == [g for g in got if g[2] in ("PER", "LOC")]
    assert group.attrs["scores"] == ([0.9, 0.8, 0.7, 0.6] if overwrite else [0.9, 0.8])


def test_trained_pipe_after_an_entity_ruler(trained):
    nlp = trained[0]
    ner = nlp.get_pipe("fewshot_ner")
    doc = _set_ents(nlp.make_doc("Smith lives in Rome ."), [(3, 4, "GPE")])  # as an entity_ruler would
    doc = ner(doc)
    assert [(e.text, e.label_) for e in doc.ents] == [("Smith", "PER"), ("Rome", "GPE")]


def test_building_and_loading_leave_the_global_rng_alone(tiny_model_dir, tmp_path):
    def draw_after(action):
        torch.manual_seed(123)
        result = action()
        return torch.rand(4), result

    expected = draw_after(lambda: None)[0]

    def build(seed=0):
        nlp = make_nlp(tiny_model_dir("llama"), labels={"PER": "a person"}, seed=seed)
        nlp.initialize()
        return nlp

    drawn, nlp = draw_after(build)
    assert torch.equal(drawn, expected)
    nlp.to_disk(tmp_path / "pipe")
    drawn, loaded = draw_after(lambda: spacy.load(tmp_path / "pipe"))
    assert torch.equal(drawn, expected)
    # LoRA comes from the component's seed, not from the global state
    lora = lambda n: {k: v for k, v in n.get_pipe("fewshot_ner").model.shims[0].model.named_parameters() if "lora_A" in k}
    torch.manual_seed(7)
    again = build()
    other = build(seed=1)
    assert all(torch.equal(v, lora(again)[k]) for k, v in lora(nlp).items())
    assert all(torch.equal(v, lora(loaded)[k]) for k, v in lora(nlp).items())
    assert not any(torch.equal(v, lora(other)[k]) for k, v in lora(nlp).items())


def test_float16_training_is_refused(tiny_model_dir):
    nlp = make_nlp(tiny_model_dir("llama"), dtype="float16")
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    with pytest.raises(ValueError, match=r"float16.*bfloat16"):
        nlp.update(examples)


def _stored_bytes(*dirs):
    """Bytes on disk under `dirs`, counting a hard-linked file once."""
    seen = {}
    for d in dirs:
        for f in Path(d).rglob("*"):
            if f.is_file():
                st = f.stat()
                seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def test_saving_twice_stores_the_base_weights_once(tiny_model_dir, tmp_path):
    base = tiny_model_dir("llama")
    nlp = make_nlp(base, labels={"PER": "a person"})
    nlp.initialize()
    nlp.to_disk(tmp_path / "best")
    one = _stored_bytes(tmp_path / "best")
    weights = (base / "model.safetensors").stat().st_size
    assert one > weights
    nlp.to_disk(tmp_path / "last")
    nlp.to_disk(tmp_path / "best")
    assert _stored_bytes(tmp_path / "best", tmp_path / "last") < one + weights  # the base is on disk once
    stored = [tmp_path / d / "fewshot_ner" / "model" / "base" / "model.safetensors" for d in ("best", "last")]
    assert stored[0].samefile(stored[1]) and not stored[0].samefile(base / "model.safetensors")
    loaded = spacy.load(tmp_path / "last")
    loaded.to_disk(tmp_path / "third")
    assert (tmp_path / "third" / "fewshot_ner" / "model" / "base" / "model.safetensors").samefile(stored[0])
    assert _ents(loaded, TEXTS[:2]) == _ents(nlp, TEXTS[:2])


def test_demonstrations_come_from_initialize_and_are_saved(tiny_chat_model_dir, tmp_path):
    """`demonstrations: N` keeps the first N initialize examples (text and entities per type) as
    solved examples in every prompt, saved with the pipe; prediction runs with them."""
    nlp = spacy.blank("en")
    nlp.add_pipe("fewshot_ner", config={"model": {"base_model": str(tiny_chat_model_dir)}, "max_new_tokens": 8,
                                        "demonstrations": 2})
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("fewshot_ner")
    assert ner.cfg["demonstration_data"] == [["Obama visited London .", {"PER": ["Obama"], "LOC": ["London"]}],
                                             ["Merkel met Macron .", {"PER": ["Merkel", "Macron"]}]]
    prompt = ner.builder.tokenizer.decode(ner.builder.prefix_ids("PER"))
    assert "Text: Merkel met Macron .\nLOC: none\nPER: <<< Merkel >>> <<< Macron >>>" in prompt
    assert "Rivers" not in prompt
    nlp.to_disk(tmp_path / "pipe")
    loaded = spacy.load(tmp_path / "pipe").get_pipe("fewshot_ner")
    assert loaded.builder.prefix_ids("PER") == ner.builder.prefix_ids("PER")
    doc = nlp("Smith lives in Rome .")  # decoding with the longer shared prefix
    assert all(ent.label_ in ("PER", "LOC") for ent in doc.ents)
    none = make_nlp(tiny_chat_model_dir)
    none.initialize(lambda: make_examples(none))
    assert none.get_pipe("fewshot_ner").cfg["demonstration_data"] == []
    assert "Solved examples" not in none.get_pipe("fewshot_ner").builder.tokenizer.decode(
        none.get_pipe("fewshot_ner").builder.prefix_ids("PER"))
    with pytest.raises(ValueError, match="demonstrations"):
        nlp.add_pipe("fewshot_ner", name="other", config={"demonstrations": -1})
    # examples that fill the 256-position window leave no room for text: a clear error, not truncation
    ner.cfg["demonstration_data"] = [["Obama visited London . " * 30, {"PER": ["Obama"]}]]
    ner._builder = None
    with pytest.raises(ValueError, match=r"window \(256 tokens\).*demonstrations=2"):
        nlp("Smith lives in Rome .")


def test_an_episode_doc_trains_only_its_annotated_types(tiny_chat_model_dir):
    """A gold Doc annotated for some types only (`restrict`, an episode's) gets instructions for
    those types alone: no "none" answer for a type whose mentions are simply not marked in it."""
    from spacy_msnr.corpus.episodes import ANNOTATED_LABELS, restrict

    nlp = spacy.blank("en")
    nlp.add_pipe("fewshot_ner", config={"model": {"base_model": str(tiny_chat_model_dir)}, "max_new_tokens": 32})
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("fewshot_ner")
    assert len(ner.training_instructions(examples)) == 10  # 5 sentences x 2 types
    only_loc = [Example(eg.predicted, restrict(eg.reference, ["LOC"])) for eg in examples]
    insts = ner.training_instructions(only_loc)
    assert [inst.label for inst in insts] == ["LOC"] * 5
    # "Obama visited London ." still says London for LOC; Obama (PER) is not asked about
    answers = {inst.segment.doc_index: ner.builder.tokenizer.decode(inst.answer_ids) for inst in insts}
    assert "London" in answers[0] and "Obama" not in answers[0]
    nothing = Example(examples[0].predicted, restrict(examples[0].reference, []))
    assert ner.training_instructions([nothing]) == []  # annotated for no type: no question asked
    unknown = Example(examples[0].predicted, examples[0].reference.copy())
    unknown.reference.user_data[ANNOTATED_LABELS] = ["LOC", "ORG"]
    with pytest.raises(ValueError, match=r"\['ORG'\] not among the labels"):
        ner.training_instructions([unknown])


def test_initialize_collects_annotated_types_without_mentions(tiny_chat_model_dir):
    """A type an episode annotates is a label even where none of its Docs mentions it."""
    from spacy_msnr.corpus.episodes import ANNOTATED_LABELS

    nlp = spacy.blank("en")
    nlp.add_pipe("fewshot_ner", config={"model": {"base_model": str(tiny_chat_model_dir)}, "max_new_tokens": 32})
    examples = make_examples(nlp)
    examples[3].reference.user_data[ANNOTATED_LABELS] = ["LOC", "ORG"]  # "Nothing happened ." has no ORG either
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("fewshot_ner")
    assert ner.labels == ("LOC", "ORG", "PER")
    assert [inst.label for inst in ner.training_instructions([examples[3]])] == ["LOC", "ORG"]
