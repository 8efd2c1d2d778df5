"""The LoRA causal-LM layer: target modules, frozen base, losses, adapter serialization."""
import pytest
import spacy
import torch
from thinc.api import Adam
from transformers import AutoConfig, PretrainedConfig

from spacy_msnr.fewshot.base_model import contrastive_layer, load_adapter, resolve_dtype, target_modules_for
from spacy_msnr.fewshot.model import LoRACausalLMShim, build_lora_instruction_ner

from util import make_examples  # tests/util.py

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTS = [("Obama visited London .", [(0, 1, "PER"), (2, 3, "LOC")]), ("Rivers flow through Berlin .", [(3, 4, "LOC")])]




def test_target_modules_per_architecture(tiny_model_dir):
    assert target_modules_for(AutoConfig.from_pretrained(tiny_model_dir("llama"))) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert target_modules_for(AutoConfig.from_pretrained(tiny_model_dir("gpt2"))) == ["c_attn", "c_proj"]
    from transformers import OPTConfig

    assert set(target_modules_for(OPTConfig())) >= {"q_proj", "v_proj"}  # peft's own table
    odd = PretrainedConfig()
    odd.model_type = "no-such-model"
    with pytest.raises(ValueError, match="target_modules"):
        target_modules_for(odd)


def test_contrastive_layer_rounds_half_up():
    assert [contrastive_layer(f, 2) for f in (0.1, 0.25, 0.5, 0.75, 1.0)] == [1, 1, 1, 2, 2]
    assert [contrastive_layer(f, 32) for f in (0.75, 2 / 3)] == [24, 21]


def test_config_validation():
    with pytest.raises(ValueError, match="Unknown lora"):
        build_lora_instruction_ner("x", lora={"rank": 4})
    with pytest.raises(ValueError, match="layer"):
        build_lora_instruction_ner("x", contrastive={"layer": 1.5})
    with pytest.raises(ValueError, match="epsilon"):
        build_lora_instruction_ner("x", adversarial={"epsilon": -1})
    with pytest.raises(ValueError, match="contrastive.unit"):
        build_lora_instruction_ner("x", contrastive={"unit": "type"})


def test_model_without_causal_lm_head_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="no causal language-model head"):
        LoRACausalLMShim(None).load(str(tiny_model_dir("bert")), {"r": 2, "alpha": 4, "dropout": 0.0}, "float32", None, 0)


def test_missing_base_model_is_a_clear_error():
    with pytest.raises(ValueError, match="No base model"):
        LoRACausalLMShim(None).load(None, {"r": 2, "alpha": 4, "dropout": 0.0}, "float32", None, 0)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_only_lora_parameters_change(tiny_model_dir, family):
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("fewshot_ner", config={"model": {
        "base_model": str(tiny_model_dir(family)), "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
        "contrastive": {"layer": 0.5, "temperature": 0.1, "weight": 0.5}, "adversarial": {"epsilon": 0.5}}})
    examples = make_examples(nlp, SENTS)
    nlp.initialize(lambda: examples)
    model = ner.model.shims[0].model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sgd = Adam(0.01)
    for _ in range(2):
        losses = nlp.update(examples, sgd=sgd)
    assert losses["fewshot_ner_contrastive"] > 0 and losses["fewshot_ner_adversarial"] > 0
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= trainable
    assert any("lora_B" in n for n in changed) and any("lora_A" in n for n in changed)


def test_adapter_round_trip_and_mismatch(tiny_model_dir, tmp_path):
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None}
    shim = LoRACausalLMShim(None)
    shim.load(str(tiny_model_dir("llama")), lora, "float32", None, 0)
    generator = torch.Generator().manual_seed(0)
    adapters = {n: p for n, p in shim.model.named_parameters() if "lora_" in n}
    assert {n.split("lora_")[1][0] for n in adapters} == {"A", "B"}
    assert len(adapters) == 2 * 4 * 2  # lora_A and lora_B of q, k, v, o in both layers
    with torch.no_grad():
        for p in adapters.values():
            p.normal_(generator=generator)
    shim.to_disk(tmp_path / "m")
    assert (tmp_path / "m" / "adapter.safetensors").exists() and (tmp_path / "m" / "base" / "model.safetensors").exists()
    other = LoRACausalLMShim(None).from_disk(tmp_path / "m")
    a = dict(shim.model.named_parameters())
    for n, p in other.model.named_parameters():
        assert torch.equal(p, a[n]), n
    fresh = LoRACausalLMShim(None)
    fresh.load(str(tiny_model_dir("llama")), lora, "float32", None, 0)
    for n, p in fresh.model.named_parameters():  # every adapter tensor had to be restored, lora_A too
        assert torch.equal(p, a[n]) != (n in adapters), n
    wider = LoRACausalLMShim(None)
    wider.load(str(tiny_model_dir("llama")), dict(lora, target_modules=["q_proj", "v_proj", "gate_proj"]), "float32", None, 0)
    with pytest.raises(ValueError, match="do not match"):
        load_adapter(wider.model, tmp_path / "m" / "adapter.safetensors")
    restored = LoRACausalLMShim(None).from_bytes(shim.to_bytes())
    for n, p in restored.model.named_parameters():
        assert torch.equal(p, a[n]), n


def _loss_and_grads(nlp, examples, chunk):
    ner = nlp.get_pipe("fewshot_ner")
    ner.cfg["train_batch_size"] = chunk
    model = ner.model.shims[0].model
    model.zero_grad(set_to_none=True)
    losses = ner.update(examples)  # no optimizer: the gradients stay on the parameters
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return losses, grads


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_shared_prefix_changes_neither_loss_nor_gradient(tiny_chat_model_dir, monkeypatch, epsilon):
    """In the chat format every instruction starts with the same instruction text and a segment's
    types share its text: the training pass runs the instruction once per chunk and each text once
    (caches expanded / indexed to the rows). Chunks hold whole segments, so any chunk size gives
    the same loss and gradients; without FGM they are those of whole rows."""
    from spacy_msnr.fewshot import model as model_module

    nlp = spacy.blank("en")
    nlp.add_pipe("fewshot_ner", config={"model": {
        "base_model": str(tiny_chat_model_dir), "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "contrastive": {"layer": 0.5, "temperature": 0.1, "weight": 0.5}, "adversarial": {"epsilon": epsilon}}})
    examples = make_examples(nlp, SENTS + [("Merkel met Macron in Paris .", [(0, 1, "PER"), (2, 3, "PER"), (4, 5, "LOC")])])
    nlp.initialize(lambda: examples)
    ner = nlp.get_pipe("fewshot_ner")
    assert ner.builder.text_first
    with torch.no_grad():
        for n, p in ner.model.shims[0].model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    seen = []
    collate = model_module.collate

    def spy(*args, **kwargs):
        out = collate(*args, **kwargs)
        seen.append("prefix_ids" in out)
        return out

    monkeypatch.setattr(model_module, "collate", spy)
    shared, g_shared = _loss_and_grads(nlp, examples, 16)
    one, g_one = _loss_and_grads(nlp, examples, 1)  # one segment (its 2 types) a chunk
    assert seen == [True] * 4
    for key in ("fewshot_ner", "fewshot_ner_lm", "fewshot_ner_contrastive", "fewshot_ner_adversarial"):
        assert one[key] == pytest.approx(shared[key], rel=1e-5), key
    assert (shared["fewshot_ner_adversarial"] > 0) == (epsilon > 0)
    # float32 sums run in another order per chunk size: an absolute slack of 1e-5 of the tensor's
    # largest entry (~4e-7 seen on gradients of scale ~0.9); a wrong prefix share moves entries by their size
    for n, g in g_shared.items():
        assert torch.allclose(g_one[n], g, rtol=1e-4, atol=1e-5 * g.abs().max().item()), n
    monkeypatch.setattr(model_module, "collate", lambda *a, **k: collate(*a[:5], share_prefix=False))
    rows, g_rows = _loss_and_grads(nlp, examples, 16)
    if epsilon == 0:  # without FGM, whole rows compute exactly the same
        for key in ("fewshot_ner", "fewshot_ner_lm", "fewshot_ner_contrastive"):
            assert shared[key] == pytest.approx(rows[key], rel=1e-5), key
        for n, g in g_rows.items():
            assert torch.allclose(g_shared[n], g, rtol=1e-4, atol=1e-7), n
    else:  # a shared text is perturbed once, along the gradient summed over its types
        assert shared["fewshot_ner_lm"] == pytest.approx(rows["fewshot_ner_lm"], rel=1e-5)
        assert shared["fewshot_ner_adversarial"] != pytest.approx(rows["fewshot_ner_adversarial"], rel=1e-5)


@pytest.mark.parametrize("epsilon,unit", [(0.0, "token"), (0.1, "token"), (0.0, "span")])
def test_chunk_size_changes_neither_loss_nor_gradient(tiny_model_dir, epsilon, unit):
    nlp = spacy.blank("en")
    nlp.add_pipe("fewshot_ner", config={"model": {
        "base_model": str(tiny_model_dir("llama")), "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "contrastive": {"layer": 0.5, "temperature": 0.1, "weight": 0.5, "unit": unit}, "adversarial": {"epsilon": epsilon}}})
    examples = make_examples(nlp, SENTS + [("Merkel met Macron in Paris .", [(0, 1, "PER"), (2, 3, "PER"), (4, 5, "LOC")])])
    nlp.initialize(lambda: examples)
    with torch.no_grad():  # a non-trivial adapter, so that every LoRA tensor has a gradient
        for n, p in nlp.get_pipe("fewshot_ner").model.shims[0].model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    one, g1 = _loss_and_grads(nlp, examples, 1)
    whole, g16 = _loss_and_grads(nlp, examples, 16)
    assert len(nlp.get_pipe("fewshot_ner").training_instructions(examples)) == 6  # 3 sentences x 2 types
    for key in ("fewshot_ner", "fewshot_ner_lm", "fewshot_ner_contrastive", "fewshot_ner_adversarial"):
        assert one[key] == pytest.approx(whole[key], rel=1e-5), key
    assert (whole["fewshot_ner_adversarial"] > 0) == (epsilon > 0)
    for n, g in g16.items():
        assert torch.allclose(g1[n], g, rtol=1e-4, atol=1e-7), n


def test_span_unit_contrasts_mentions_not_tokens(tiny_model_dir):
    """unit "span" averages each gold mention's tokens into one anchor: with a mention of several
    model tokens the contrastive term differs from the token-level one, while the LM term (the
    same forward pass) does not."""
    from spacy_msnr.fewshot.batching import text_token_reps

    losses = {}
    for unit in ("token", "span"):
        nlp = spacy.blank("en")
        nlp.add_pipe("fewshot_ner", config={"model": {
            "base_model": str(tiny_model_dir("llama")), "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
            "contrastive": {"layer": 0.5, "temperature": 0.1, "weight": 0.5, "unit": unit}, "adversarial": {"epsilon": 0.0}}})
        examples = make_examples(nlp, SENTS + [("Merkel met Macron in Paris .", [(0, 1, "PER"), (2, 3, "PER"), (4, 5, "LOC")])])
        nlp.initialize(lambda: examples)
        insts = nlp.get_pipe("fewshot_ner").training_instructions(examples)
        _, types, groups = text_token_reps(torch.zeros(len(insts), max(len(i.input_ids) for i in insts), 1), insts)
        mentions = [g for g in groups if g is not None]
        assert len(set(mentions)) < len(mentions)  # some mention has several tokens
        losses[unit], _ = _loss_and_grads(nlp, examples, 16)
    assert losses["span"]["fewshot_ner_lm"] == pytest.approx(losses["token"]["fewshot_ner_lm"], rel=1e-6)
    assert losses["span"]["fewshot_ner_contrastive"] > 0
    assert losses["span"]["fewshot_ner_contrastive"] != pytest.approx(losses["token"]["fewshot_ner_contrastive"], rel=1e-3)


def test_bf16_base_trains_fp32_adapters_and_saves_fp32(tiny_model_dir, tmp_path, monkeypatch):
    """dtype "bf16": the frozen base computes in bf16, the
    LoRA weights and their updates stay fp32, the loss falls as in fp32, and what is saved (the
    adapter, a merged base) is fp32."""
    import spacy_msnr.precision as precision
    from safetensors.torch import load_file

    base = tiny_model_dir("llama")
    totals = {}
    for dtype in ("fp32", "bf16"):
        nlp = spacy.blank("en")
        ner = nlp.add_pipe("fewshot_ner", config={"model": {
            "base_model": str(base), "dtype": dtype, "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
            "contrastive": {"layer": 0.5, "temperature": 0.1, "weight": 0.5}, "adversarial": {"epsilon": 0.01}}})
        examples = make_examples(nlp, SENTS)
        nlp.initialize(lambda: examples)
        model = ner.model.shims[0].model
        dtypes = {n: p.dtype for n, p in model.named_parameters()}
        frozen = {d for n, d in dtypes.items() if "lora_" not in n}
        assert frozen == ({torch.bfloat16} if dtype == "bf16" else {torch.float32})
        assert {d for n, d in dtypes.items() if "lora_" in n} == {torch.float32}
        sgd = Adam(0.01)
        totals[dtype] = [sum(nlp.update(examples, sgd=sgd).values()) for _ in range(20)]
        assert totals[dtype][-1] < 0.8 * totals[dtype][0], totals
    assert abs(totals["bf16"][0] - totals["fp32"][0]) < 0.05 * totals["fp32"][0]  # same start, within rounding
    nlp.to_disk(tmp_path / "pipe")
    assert {v.dtype for v in load_file(str(tmp_path / "pipe" / "fewshot_ner" / "model" / "adapter.safetensors")).values()} == {torch.float32}
    ner.model.shims[0].save_merged(tmp_path / "merged")
    assert {v.dtype for v in load_file(str(tmp_path / "merged" / "model.safetensors")).values()} == {torch.float32}
    # "auto" keeps a float32 base on a CPU, even one with native bf16 (bf16 cost F1 on CrossNER);
    # on a GPU with bf16 it is bf16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    auto = spacy.load(tmp_path / "pipe", config={"components": {"fewshot_ner": {"model": {"dtype": "auto"}}}})
    assert next(p for n, p in auto.get_pipe("fewshot_ner").model.shims[0].model.named_parameters() if "lora_" not in n).dtype == torch.float32
    monkeypatch.setattr(precision, "gpu_has_bf16", lambda device: True)
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32 and resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
