"""Small random models build, save, reload and give identical outputs."""
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

from spacy_msnr.base.models import build_model


@pytest.mark.parametrize("family", ["bert", "roberta", "llama", "qwen2", "gpt2"])
def test_build_save_reload_same_outputs(tiny_tokenizer, tmp_path, family):
    tok = tiny_tokenizer(family)
    model = build_model(family, tok, hidden_size=32, num_layers=2, num_heads=2, max_positions=64).eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").exists()
    auto = AutoModelForMaskedLM if family in ("bert", "roberta") else AutoModelForCausalLM
    again = auto.from_pretrained(tmp_path).eval()
    ids = torch.tensor([tok("Chronic pressure in APC2 patients.")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, again(input_ids=ids).logits)
    assert model.config.vocab_size == len(tok)


def test_seed_makes_weights_reproducible(tiny_tokenizer):
    tok = tiny_tokenizer("bert")
    a = build_model("bert", tok, seed=3, hidden_size=32, num_layers=1, num_heads=2)
    b = build_model("bert", tok, seed=3, hidden_size=32, num_layers=1, num_heads=2)
    c = build_model("bert", tok, seed=4, hidden_size=32, num_layers=1, num_heads=2)
    wa, wb, wc = (m.bert.embeddings.word_embeddings.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_unknown_family(tiny_tokenizer):
    with pytest.raises(ValueError, match="Unknown model family"):
        build_model("t5", tiny_tokenizer("bert"))
