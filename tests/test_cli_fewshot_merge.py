"""`fewshot-merge` writes the base with the trained adapters merged in: the same logits as the pipeline's model."""
import pytest
import spacy
import torch
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from spacy_msnr.cli import app
from spacy_msnr.fewshot.model import get_shim

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trained_pipeline(base, path):
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("fewshot_ner", config={"labels": ["PER"], "model": {
        "base_model": str(base), "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}})
    nlp.initialize()
    model = get_shim(ner.model).model
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # stand-in for training: every adapter weight non-zero
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(std=0.1, generator=generator)
    nlp.to_disk(path)
    return model


def test_merged_model_gives_the_adapted_logits(tiny_model_dir, tmp_path):
    base = tiny_model_dir("llama")
    model = trained_pipeline(base, tmp_path / "pipeline")
    result = CliRunner().invoke(app, ["fewshot-merge", str(tmp_path / "pipeline"), str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", use_safetensors=True).eval()
    plain = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True).eval()
    ids = torch.tensor([[5, 17, 42, 99, 3, 250]])
    model.eval()
    with torch.no_grad():
        adapted, got, original = model(input_ids=ids).logits, merged(input_ids=ids).logits, plain(input_ids=ids).logits
    assert (adapted - original).abs().max() > 1e-2  # the adapters change the output ...
    assert torch.allclose(got, adapted, atol=1e-4)  # ... and the merged folder reproduces it
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert (tmp_path / "merged" / "tokenizer.json").exists()
    # merging works on a copy: the live model keeps its adapters and its output
    reloaded = spacy.load(tmp_path / "pipeline").get_pipe("fewshot_ner").model
    get_shim(reloaded).save_merged(tmp_path / "again")
    live = get_shim(reloaded).model.eval()
    assert any("lora_" in n for n, _ in live.named_parameters())
    with torch.no_grad():
        assert torch.allclose(live(input_ids=ids).logits, adapted, atol=1e-5)


def test_unknown_component_is_named(tiny_model_dir, tmp_path):
    trained_pipeline(tiny_model_dir("llama"), tmp_path / "pipeline")
    result = CliRunner().invoke(app, ["fewshot-merge", str(tmp_path / "pipeline"), str(tmp_path / "m"), "-c", "ner"])
    assert result.exit_code == 1 and "no component 'ner'" in " ".join(result.output.split())
    assert not (tmp_path / "m").exists()
