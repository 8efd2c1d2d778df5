"""One numeric-precision setting for every job of the package: "auto", "fp32" or "bf16".

bf16 here means torch's mixed precision: master weights, optimizer state, losses and softmaxes
stay fp32, and matmuls run in bf16 (autocast), where the hardware does them natively:
- "auto": bf16 on a GPU that supports it and on a CPU that reports native bf16 (AVX-512 BF16
  or AMX), fp32 elsewhere: on CPUs without it bf16 is emulated and slower than fp32;
- "bf16": bf16 wherever the job runs (slow where emulated);
- "fp32": no autocast.
The choice is made where the job runs, not where a pipeline was trained: a pipeline saved with
"auto" scores in bf16 on a machine that has it and in fp32 on one that does not. Weights are
always saved in fp32.
"""
import contextlib
import functools
from typing import Any, ContextManager, Optional

import torch

PRECISIONS = ("auto", "fp32", "bf16")
#: Other spellings accepted for the same settings (the torch dtype names).
ALIASES = {"float32": "fp32", "bfloat16": "bf16"}


def check_precision(precision: str) -> str:
    """The canonical name of a precision setting; a ValueError naming the choices otherwise."""
    name = ALIASES.get(precision, precision)
    if name not in PRECISIONS:
        choices = ", ".join(repr(p) for p in PRECISIONS + tuple(ALIASES))
        raise ValueError(f"precision must be one of {choices}, got {precision!r}")
    return name


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX-512 BF16 or AMX tiles), as torch sees it."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


def gpu_has_bf16(device: torch.device) -> bool:
    """Whether the CUDA device supports bf16."""
    return device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def autocast_dtype(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype that `precision` means on `device`, or None for plain fp32."""
    name = check_precision(precision)
    if name == "fp32" or device.type not in ("cpu", "cuda"):
        return None
    if name == "bf16":
        return torch.bfloat16
    native = gpu_has_bf16(device) if device.type == "cuda" else cpu_has_native_bf16()
    return torch.bfloat16 if native else None


def autocast(precision: str, device: torch.device) -> ContextManager:
    """`torch.autocast` for `precision` on `device` (a no-op context for fp32)."""
    return autocast_to(autocast_dtype(precision, device), device)


def autocast_to(dtype: Optional[torch.dtype], device: torch.device) -> ContextManager:
    """`torch.autocast` to an already resolved `dtype` on `device` (None: a no-op context)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def weights_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype for frozen weights under `precision`: bf16 where autocast would use it, else fp32.
    (Frozen weights stored in bf16 spare autocast a cast per call; trainable ones stay fp32.)"""
    return autocast_dtype(precision, device) or torch.float32


def to_fp32(value: Any) -> Any:
    """`value` with every floating tensor in it (nested in tuples, lists, dicts or a transformers
    ModelOutput) cast to fp32; autograd follows the casts."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
    if isinstance(value, (tuple, list)):
        return type(value)(to_fp32(v) for v in value)
    if isinstance(value, dict):  # ModelOutput is an OrderedDict whose keys mirror its attributes
        for key in list(value.keys()):
            value[key] = to_fp32(value[key])
        return value
    return value


__all__ = ["PRECISIONS", "check_precision", "cpu_has_native_bf16", "autocast_dtype", "autocast", "autocast_to",
           "weights_dtype", "to_fp32"]
