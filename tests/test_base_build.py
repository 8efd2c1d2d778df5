"""The base builder: tokenizer + bounded pretraining + safetensors directory, resumable."""
import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer
from typer.testing import CliRunner

from spacy_msnr.base.build import build_base
from spacy_msnr.base.pretrain import TimeBudget
from spacy_msnr.cli import app

SIZES = dict(vocab_size=600, hidden_size=32, num_layers=2, num_heads=2, max_positions=64, block_size=64, batch_size=8)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory, pubmed_texts):
    path = tmp_path_factory.mktemp("text") / "abstracts.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in pubmed_texts), encoding="utf8")  # 60 abstracts
    return path


def test_pretraining_lowers_loss_and_saves_safetensors(tmp_path, text_file):
    out = tmp_path / "base"
    summary = build_base(out, [text_file], max_steps=60, learning_rate=2e-3, **SIZES)
    assert summary["objective"] == "masked-lm" and summary["steps"] == 60
    assert summary["final_loss"] < summary["initial_loss"] - 0.2
    assert (out / "model.safetensors").exists() and not list(out.glob("*.bin"))
    assert json.loads((out / "msnr_base.json").read_text())["final_loss"] == summary["final_loss"]
    model = AutoModelForMaskedLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.mask_token == "[MASK]" and model.config.vocab_size == len(tok)


def test_resume_continues_from_the_checkpoint(tmp_path, text_file, monkeypatch):
    """An interrupted run resumes at its checkpoint: it trains only the missing steps and its
    weights move on from the checkpoint. (HF Trainer's resume is not bit-exact here: the
    collator's random masks differ, so the weights are not compared with the straight run.)"""
    straight = tmp_path / "straight"
    build_base(straight, [text_file], max_steps=16, save_steps=8, **SIZES)

    def interrupt_at_step_8(self, args, state, control, **kwargs):
        if state.global_step == 8:
            control.should_training_stop = True
        return control

    resumed = tmp_path / "resumed"
    with monkeypatch.context() as patch:
        patch.setattr(TimeBudget, "on_step_end", interrupt_at_step_8)
        first = build_base(resumed, [text_file], max_steps=16, save_steps=8, max_seconds=1e9, **SIZES)
    assert first["steps"] == 8
    halfway = AutoModelForMaskedLM.from_pretrained(resumed).state_dict()
    checkpoints = tmp_path / "resumed.checkpoints"
    first_log = json.loads((checkpoints / "checkpoint-8" / "trainer_state.json").read_text())["log_history"]
    second = build_base(resumed, [text_file], max_steps=16, save_steps=8, resume=True, **SIZES)
    assert second["steps"] == 16 and second["steps_this_session"] == 8
    # the resumed session's speed counts its own 8 steps: 8 * batch * block tokens over its time
    assert second["tokens_per_second"] == pytest.approx(8 * 8 * 64 / second["seconds"], rel=0.01)
    # one log entry a step here, so the window-weighted mean is the plain mean of the 16 entries
    logged = [e["loss"] for e in json.loads((checkpoints / "checkpoint-16" / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert len(logged) == 16
    assert second["mean_loss"] == pytest.approx(sum(logged) / len(logged)) and second["initial_loss"] == logged[0]

    a = AutoModelForMaskedLM.from_pretrained(straight).state_dict()
    b = AutoModelForMaskedLM.from_pretrained(resumed).state_dict()
    assert a.keys() == b.keys()
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(b[key], halfway[key])
    state = json.loads((checkpoints / "checkpoint-16" / "trainer_state.json").read_text())
    assert state["global_step"] == 16
    assert state["log_history"][: len(first_log)] == first_log


def test_window_mean_weights_each_logged_loss_by_its_steps():
    from spacy_msnr.base.pretrain import _window_mean

    # losses logged at steps 30, 60 and 71 (a time limit stopped the run at an odd step)
    assert _window_mean([(30, 6.0), (60, 5.0), (71, 4.0)]) == pytest.approx((30 * 6 + 30 * 5 + 11 * 4) / 71)


def test_causal_family_from_cli(tmp_path, text_file):
    out = tmp_path / "causal"
    result = CliRunner().invoke(app, [
        "init-base", str(out), str(text_file), "--arch", "causal", "--family", "qwen2", "--vocab-size", "600",
        "--hidden-size", "32", "--layers", "1", "--heads", "2", "--max-steps", "3", "--block-size", "64",
    ])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen2"
    assert json.loads((out / "msnr_base.json").read_text())["objective"] == "causal-lm"


def test_use_model_saves_an_existing_checkpoint(tmp_path, tiny_model_dir):
    source = tiny_model_dir("bert")
    out = tmp_path / "base"
    result = CliRunner().invoke(app, ["init-base", str(out), "unused.jsonl", "--use-model", str(source)])
    assert result.exit_code == 0, result.output
    a = AutoModelForMaskedLM.from_pretrained(source).state_dict()
    b = AutoModelForMaskedLM.from_pretrained(out).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    result = CliRunner().invoke(app, ["init-base", str(tmp_path / "x"), "unused.jsonl", "--use-model", str(tiny_model_dir("llama"))])
    assert result.exit_code == 1 and "Traceback" not in result.output and not (tmp_path / "x").exists()
    result = CliRunner().invoke(app, ["init-base", str(tmp_path / "x"), "none.jsonl", "--arch", "masked", "--family", "llama"])
    assert result.exit_code == 1 and "not a masked family" in result.output
    result = CliRunner().invoke(app, ["init-base", str(tmp_path / "x"), "none.jsonl", "--arch", "encoder"])
    assert result.exit_code == 2 and "'encoder' is not one of" in result.output  # choices are checked by the parser
    # the old name still works, and says what to use instead
    result = CliRunner().invoke(app, ["base", str(tmp_path / "x"), "none.jsonl", "--arch", "masked", "--family", "llama"])
    assert result.exit_code == 1 and "`base` is deprecated" in result.output and "not a masked family" in result.output


def test_empty_corpus_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "  "}) + "\n", encoding="utf8")
    with pytest.raises(ValueError, match="No text found"):
        build_base(tmp_path / "out", [empty], **SIZES)
