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
    return [encode_doc(d, model.attrs["tokenizer"], gold(d), 160, tag_map) for d in docs]


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
    """Training feeds the head the masked batch; evaluation (tagger_accuracy) feeds it the
    unmasked sequence: the two runs give different tag logits, and the logged accuracy is the
    one of the unmasked run."""
    from spacy_msnr.mslm.metrics import tagger_accuracy

    model = build(tiny_model_dir("bert"), ner_weight=0.5)
    tags = ["O", "B-Disease", "I-Disease"]
    seqs = seqs_for(model, docs[:6], tags)
    model.attrs["tag_labels"] = tags
    model.initialize(X=seqs)
    module = torch_module(model)
    with torch.no_grad():  # a sharp head, so that its argmax follows what it reads
        module.tagger.weight.mul_(50.0)
    model.get_ref("masking").attrs["rng"] = np.random.default_rng(0)
    out, backprop = model.begin_update(seqs)
    assert out.tag_logits.shape == (*out.batch.input_ids.shape, 3)
    assert (out.batch.input_ids == model.attrs["tokenizer"].mask_token_id).sum() >= len(out.batch.positions) > 0
    d_tags, value = model.attrs["tagger_loss"](out.tag_logits, out.batch)
    assert value > 0
    backprop((torch.zeros_like(out.logits), d_tags))
    assert module.tagger.weight.grad.abs().sum() > 0
    # the same sequences, unmasked (the gold ids), through the encoder and the head in eval mode
    gold = out.batch.input_ids.clone().reshape(-1)
    gold[out.batch.positions] = out.batch.labels
    gold = gold.reshape(out.batch.input_ids.shape)
    with torch.no_grad():
        module.eval()
        unmasked = module.tagger(module.hf.base_model(input_ids=gold, attention_mask=out.batch.attention_mask)[0])
        masked = module.tagger(module.hf.base_model(input_ids=out.batch.input_ids, attention_mask=out.batch.attention_mask)[0])
        module.train()
    labels, keep = out.batch.tag_labels, out.batch.tag_labels >= 0
    unmasked_acc = float((unmasked.argmax(-1) == labels)[keep].float().mean())
    masked_acc = float((masked.argmax(-1) == labels)[keep].float().mean())
    assert not torch.allclose(masked, unmasked, atol=1e-3) and masked_acc != pytest.approx(unmasked_acc, abs=1e-6)
    assert tagger_accuracy(model, seqs) == pytest.approx(unmasked_acc, abs=1e-6)
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


def test_update_micro_batch_scales_gradients_by_share_and_grad_scaler(tiny_model_dir, docs):
    """The GradScaler's factor and the accumulation share both reach the parameters' gradients."""
    from spacy_msnr.mslm.train import update_micro_batch

    model = build(tiny_model_dir("bert"))
    seqs = seqs_for(model, docs[:4])
    model.initialize(X=seqs)
    module = torch_module(model)

    def grads(scale, scaler=None):
        torch.manual_seed(0)
        model.get_ref("masking").attrs["rng"] = np.random.default_rng(0)
        stats = update_micro_batch(model, seqs, scale, scaler)
        out = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
        module.zero_grad(set_to_none=True)
        return out, stats["loss"]

    plain, loss = grads(1.0)
    scaled, scaled_loss = grads(0.5, torch.amp.GradScaler("cpu", init_scale=1024.0))
    assert scaled_loss == pytest.approx(0.5 * loss) and plain.keys() == scaled.keys() and len(plain) > 10
    for name in plain:
        assert torch.allclose(scaled[name], 512.0 * plain[name], rtol=1e-4, atol=1e-6), name


def test_v2_in_bf16_gives_logits_close_to_fp32(tiny_model_dir, docs):
    """MaskSpecificMLM.v2's precision: the masked-LM forward in bf16 autocast on CPU, the same masks
    and weights as fp32, logits within bf16's rounding; v1 keeps fp32 on CPU even with mixed_precision."""
    path = tiny_model_dir("bert")
    out = {}
    for name in ("fp32", "bf16"):
        model = build(path, **{"@architectures": "spacy_msnr.MaskSpecificMLM.v2", "precision": name})
        seqs = seqs_for(model, docs[:6])
        model.initialize(X=seqs)
        model.get_ref("masking").attrs["rng"] = np.random.default_rng(0)
        out[name] = model.predict(seqs).logits
    assert out["fp32"].dtype == torch.float32 and out["bf16"].dtype == torch.bfloat16
    diff = (out["bf16"].float() - out["fp32"]).abs()
    assert diff.max() < 0.1 and diff.mean() < 0.02
    assert (out["bf16"].float().argmax(-1) == out["fp32"].argmax(-1)).float().mean() > 0.9
    v1 = build(path, mixed_precision=True)
    assert v1.get_ref("mlm").shims[0].autocast_dtype() is None  # bf16 only on GPU, as before
    with pytest.raises(ValueError, match="precision must be one of"):
        build(path, **{"@architectures": "spacy_msnr.MaskSpecificMLM.v2", "precision": "fp16"})
