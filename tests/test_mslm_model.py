"""The thinc layers and the registered architecture, with BERT- and RoBERTa-style tiny models."""
import numpy as np
import pytest
import torch
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Config

from spacy_msnr.corpus.iob import iob_to_docs
from spacy_msnr.mslm.masking import ELM, MaskSpecificMasker, encode_doc, mask_batch
from spacy_msnr.mslm.model import hf_model_of, load_masked_lm, torch_module
from spacy_msnr.mslm.terms import GoldTerms

CONFIG = """
[model]
@architectures = "spacy_msnr.MaskSpecificMLM.v1"
name = null
ner_weight = 0.0

[model.masker]
@msnr_maskers = "spacy_msnr.mask_specific.v1"
elm_rate = 1.0
blm_rate = 0.15

[model.weighting]
@msnr_weightings = "spacy_msnr.softmax_share.v1"
"""


def build(path, **overrides):
    cfg = Config().from_str(CONFIG, overrides={"model.name": str(path), **{f"model.{k}": v for k, v in overrides.items()}})
    return registry.resolve(cfg)["model"]


@pytest.fixture(scope="module")
def docs(data_dir):
    return iob_to_docs(data_dir / "blurb" / "NCBI-disease-IOB" / "devel.tsv", Vocab())[:24]


def seqs_for(model, docs, tags=None):
    gold = GoldTerms()
    tag_map = {t: i for i, t in enumerate(tags)} if tags else None
    return [encode_doc(d, model.attrs["tokenizer"], gold(d), 96, tag_map) for d in docs]


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_logits_at_masked_positions_match_the_full_model(family, tiny_model_dir, docs):
    model = build(tiny_model_dir(family))
    seqs = seqs_for(model, docs[:6])
    model.initialize(X=seqs)
    model.get_ref("masking").attrs["rng"] = np.random.default_rng(0)
    out = model.predict(seqs)
    assert torch_module(model).head_name in ("cls", "lm_head")
    assert out.logits.shape == (len(out.batch.positions), model.attrs["tokenizer"].vocab_size if family == "bert" else out.logits.shape[1])
    hf = hf_model_of(model).eval()
    with torch.no_grad():
        full = hf(input_ids=out.batch.input_ids, attention_mask=out.batch.attention_mask).logits
    assert torch.allclose(full.reshape(-1, full.shape[-1])[out.batch.positions], out.logits, atol=1e-4)
    assert (out.batch.kinds == ELM).sum() == sum(int((s.term_ids >= 0).sum()) for s in seqs)


def test_padding_does_not_change_a_sequences_logits(tiny_model_dir, docs):
    model = build(tiny_model_dir("bert"), masker={"@msnr_maskers": "spacy_msnr.mask_specific.v1", "elm_rate": 1.0, "blm_rate": 0.0})
    seqs = seqs_for(model, docs)
    short = min((s for s in seqs if s.n_terms), key=len)
    long = max(seqs, key=len)
    mlm = model.get_ref("mlm")
    masker, replacer = MaskSpecificMasker(1.0, 0.0), model.get_ref("masking").attrs["replacer"]
    alone = mlm.predict(mask_batch([short], masker, replacer, np.random.default_rng(0))).logits
    together = mlm.predict(mask_batch([short, long], masker, replacer, np.random.default_rng(0))).logits
    assert torch.allclose(alone, together[: len(alone)], atol=1e-4)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_training_steps_lower_the_loss_on_a_fixed_batch(family, tiny_model_dir, docs):
    torch.manual_seed(0)
    model = build(tiny_model_dir(family))
    seqs = seqs_for(model, docs[:4])
    model.initialize(X=seqs)
    module = torch_module(model)
    opt = torch.optim.Adam(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        model.get_ref("masking").attrs["rng"] = np.random.default_rng(0)
        out, backprop = model.begin_update(seqs)
        grad, value = model.attrs["loss"](out.logits, out.batch)
        backprop((grad, None))
        opt.step()
        opt.zero_grad()
        losses.append(value)
    assert losses[-1] < 0.7 * losses[0]


def test_joint_tagging_head_reads_unmasked_input(tiny_model_dir, docs):
    model = build(tiny_model_dir("bert"), ner_weight=0.5)
    tags = ["O", "B-Disease", "I-Disease"]
    seqs = seqs_for(model, docs[:6], tags)
    model.attrs["tag_labels"] = tags
    model.initialize(X=seqs)
    out, backprop = model.begin_update(seqs)
    assert out.tag_logits.shape == (*out.batch.input_ids.shape, 3)
    d_tags, value = model.attrs["tagger_loss"](out.tag_logits, out.batch)
    assert value > 0
    backprop((torch.zeros_like(out.logits), d_tags))
    assert torch_module(model).tagger.weight.grad.abs().sum() > 0
    # serialisation round-trip keeps the head (safetensors bytes)
    clone = build(tiny_model_dir("bert"), ner_weight=0.5)
    clone.from_bytes(model.to_bytes())
    for (k, a), (_, b) in zip(torch_module(model).state_dict().items(), torch_module(clone).state_dict().items()):
        assert torch.equal(a, b), k


def test_causal_lm_is_rejected(tiny_model_dir):
    with pytest.raises(ValueError, match="no mask token|masked-LM head"):
        load_masked_lm(tiny_model_dir("gpt2"))


def test_encoder_without_mlm_head_is_rejected(tiny_model_dir, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    src = tiny_model_dir("bert")
    AutoModel.from_pretrained(src).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(src).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="no trained masked-LM head"):
        load_masked_lm(tmp_path)
