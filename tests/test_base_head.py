"""An MLM head for an encoder saved without one: tied decoder, untouched encoder, head-only warm-up."""
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertModel
from typer.testing import CliRunner

from spacy_msnr.base.build import save_existing
from spacy_msnr.base.head import head_parameters
from spacy_msnr.cli import app

MINILM = Path(__file__).resolve().parent.parent / "assets" / "models" / "minilm-l6"


@pytest.fixture(scope="module")
def text_file(tmp_path_factory, pubmed_texts):
    path = tmp_path_factory.mktemp("text") / "abstracts.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in pubmed_texts[:60]), encoding="utf8")
    return path


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory, tiny_model_dir):
    """A tiny `BertModel` folder: an encoder saved without any MLM head, like all-MiniLM-L6-v2."""
    source = tiny_model_dir("bert")
    path = tmp_path_factory.mktemp("encoder")
    BertModel.from_pretrained(source, add_pooling_layer=False).save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)
    assert json.loads((path / "config.json").read_text())["architectures"] == ["BertModel"]
    return path


def _assert_tied_and_encoder_unchanged(out: Path, encoder: Path) -> AutoModelForMaskedLM:
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    original = BertModel.from_pretrained(encoder, add_pooling_layer=False).state_dict()
    adapted = model.bert.state_dict()
    assert original.keys() == adapted.keys()
    assert all(torch.equal(original[k], adapted[k]) for k in original)
    return model


def test_warm_up_lowers_mlm_loss_with_the_encoder_frozen(tmp_path, encoder_dir, text_file, one_torch_thread):
    out = tmp_path / "mlm"
    summary = save_existing(str(encoder_dir), out, sources=[text_file], warmup_steps=60, warmup_blocks=64, warmup_lr=5e-2)
    assert "cls.predictions.transform.dense.weight" in summary["new_head_parameters"]
    assert not any(k.startswith("bert.") for k in summary["new_head_parameters"])
    warmup = summary["head_warmup"]
    assert warmup["steps"] == 60 and warmup["blocks"] <= 64 and warmup["eval_blocks"] >= 1
    assert warmup["mlm_loss_after"] < warmup["mlm_loss_before"] - 0.25
    assert warmup["train_loss_last"] < warmup["train_loss_first"]
    assert json.loads((out / "msnr_base.json").read_text())["head_warmup"] == warmup
    model = _assert_tied_and_encoder_unchanged(out, encoder_dir)
    # the warm-up moved the new head away from its initialisation
    save_existing(str(encoder_dir), tmp_path / "cold")
    cold = AutoModelForMaskedLM.from_pretrained(tmp_path / "cold")
    assert not torch.equal(cold.cls.predictions.transform.dense.weight, model.cls.predictions.transform.dense.weight)
    assert sorted(head_parameters(model)) == ["cls.predictions.bias", "cls.predictions.transform.LayerNorm.bias",
                                              "cls.predictions.transform.LayerNorm.weight",
                                              "cls.predictions.transform.dense.bias", "cls.predictions.transform.dense.weight"]


def test_no_warm_up_saves_a_tied_head(tmp_path, encoder_dir):
    summary = save_existing(str(encoder_dir), tmp_path / "mlm")
    assert "head_warmup" not in summary and summary["new_head_parameters"]
    _assert_tied_and_encoder_unchanged(tmp_path / "mlm", encoder_dir)


def test_the_new_head_is_seeded(tmp_path, encoder_dir, text_file, one_torch_thread):
    heads = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        summary = save_existing(str(encoder_dir), tmp_path / name, sources=[text_file], warmup_steps=3,
                                warmup_blocks=16, seed=seed)
        model = AutoModelForMaskedLM.from_pretrained(tmp_path / name)
        heads.append((summary["head_warmup"]["mlm_loss_before"], model.cls.predictions.transform.dense.weight))
    assert heads[0][0] == heads[1][0] and torch.equal(heads[0][1], heads[1][1])  # same seed: the same base
    assert not torch.equal(heads[0][1], heads[2][1])


def test_warm_up_is_for_masked_lms_only(tmp_path, tiny_model_dir, text_file):
    with pytest.raises(ValueError, match="for masked LMs"):
        save_existing(str(tiny_model_dir("llama")), tmp_path / "x", "causal", sources=[text_file], warmup_steps=3)
    assert not (tmp_path / "x").exists()


def test_cli_warmup_reports_the_loss(tmp_path, encoder_dir, text_file, one_torch_thread):
    out = tmp_path / "mlm"
    result = CliRunner().invoke(app, ["init-base", str(out), str(text_file), "--use-model", str(encoder_dir),
                                      "--warmup-steps", "5", "--warmup-blocks", "16"])
    assert result.exit_code == 0, result.output
    assert "held-out MLM loss" in result.output and "New LM-head parameters" in result.output
    assert json.loads((out / "msnr_base.json").read_text())["head_warmup"]["blocks"] <= 16


@pytest.mark.slow
@pytest.mark.skipif(not (MINILM / "model.safetensors").exists(), reason=f"real encoder not unpacked at {MINILM}")
def test_real_minilm_gets_a_tied_head_and_the_warm_up_helps(tmp_path, text_file):
    out = tmp_path / "minilm-mlm"
    summary = save_existing(str(MINILM), out, sources=[text_file], warmup_steps=30, warmup_blocks=48)
    assert summary["model_type"] == "bert" and 22_000_000 < summary["parameters"] < 24_000_000
    warmup = summary["head_warmup"]
    assert warmup["mlm_loss_after"] < warmup["mlm_loss_before"] - 1.0
    _assert_tied_and_encoder_unchanged(out, MINILM)
