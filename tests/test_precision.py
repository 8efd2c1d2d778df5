"""The package's precision setting: names, what "auto" picks per device, fp32 outputs."""
import pytest
import torch

import spacy_msnr.precision as precision
from spacy_msnr.precision import autocast, autocast_dtype, check_precision, to_fp32, weights_dtype

CPU = torch.device("cpu")


def test_names_and_aliases():
    assert [check_precision(p) for p in ("auto", "fp32", "bf16", "float32", "bfloat16")] == [
        "auto", "fp32", "bf16", "fp32", "bf16"]
    with pytest.raises(ValueError, match="precision must be one of .*'fp16'"):
        check_precision("fp16")


def test_auto_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert autocast_dtype("auto", CPU) == torch.bfloat16 and weights_dtype("auto", CPU) == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)  # emulated bf16 is slower: fp32
    assert autocast_dtype("auto", CPU) is None and weights_dtype("auto", CPU) == torch.float32
    assert weights_dtype("auto", CPU) == torch.float32
    # an explicit choice is taken whatever the CPU
    assert autocast_dtype("bf16", CPU) == torch.bfloat16 and weights_dtype("bf16", CPU) == torch.bfloat16
    assert autocast_dtype("fp32", CPU) is None


def test_auto_on_a_gpu_without_bf16_is_fp32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "gpu_has_bf16", lambda device: False)
    assert autocast_dtype("auto", torch.device("cuda", 0)) is None
    monkeypatch.setattr(precision, "gpu_has_bf16", lambda device: True)
    assert autocast_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16


def test_autocast_runs_matmuls_in_bf16_only_when_asked():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    with autocast("bf16", CPU):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("fp32", CPU):
        assert (a @ b).dtype == torch.float32
    with autocast("auto", CPU):  # the tests resolve auto to fp32 (conftest)
        assert (a @ b).dtype == torch.float32


def test_to_fp32_casts_nested_outputs_and_keeps_the_gradient():
    from transformers.modeling_outputs import BaseModelOutput

    w = torch.ones(3, requires_grad=True)
    hidden = (w * 2).to(torch.bfloat16)
    out = to_fp32(BaseModelOutput(last_hidden_state=hidden, hidden_states=(hidden, hidden)))
    assert out.last_hidden_state.dtype == out[0].dtype == torch.float32
    assert [h.dtype for h in out.hidden_states] == [torch.float32, torch.float32]
    assert to_fp32([torch.zeros(1, dtype=torch.long)])[0].dtype == torch.long  # integers untouched
    out.last_hidden_state.sum().backward()
    assert w.grad.tolist() == [2.0, 2.0, 2.0]
