"""Which reduced precision a device runs natively, and the fallback when it does not.

A CPU without native bf16 (no AVX512-BF16, no AMX) emulates bf16 arithmetic: its bf16 matmul ran at
0.3 GFLOP/s on one of our machines, a thousand times slower than fp32. Asking for bf16 there must not
silently make a run a thousand times slower: it falls back to fp32 with a one-line warning that says
why. fp16 autocast needs CUDA (accelerate has no CPU fp16 autocast).

``VSGM_CPU_BF16=0`` makes this CPU count as one without native bf16 (for tests, and to compare).
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)

SWITCH = "VSGM_CPU_BF16"
DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16), as torch reports it."""
    if os.environ.get(SWITCH, "1") == "0":
        return False
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def native_precision(precision: str, device: torch.device | str) -> tuple[str, str | None]:
    """The precision a run on ``device`` uses when ``precision`` is asked for.

    Args:
        precision: ``no``, ``bf16`` or ``fp16`` (accelerate's names).
        device: where the model runs.

    Returns:
        ``(precision, reason)``: the precision to use, and why it differs from the one asked for
        (None when it does not).
    """
    device = torch.device(device)
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(DTYPES)}")
    if device.type != "cpu" or precision == "no":
        return precision, None
    if precision == "fp16":
        return "no", "needs a CUDA device; this CPU run uses fp32 (bf16 works on CPUs with native bf16)"
    if not cpu_native_bf16():
        return "no", ("needs native bf16 (AVX512-BF16 or AMX), which this CPU lacks (emulated bf16 runs far "
                      "slower than fp32); this run uses fp32")
    return precision, None


def launch_device() -> torch.device:
    """The device ``accelerate`` will train on, read before the Accelerator exists (building accelerate's
    shared state first would fix its options before the Accelerator's own: under ``accelerate launch
    --cpu`` the processes would no longer join into one distributed run)."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return torch.device("cpu")
    return torch.accelerator.current_accelerator(check_available=True) or torch.device("cpu")


def resolve_precision(precision: str, device: torch.device | str, what: str = "--mixed_precision") -> str:
    """``native_precision``, logging the reason of a fallback as one warning line."""
    used, reason = native_precision(precision, device)
    if reason:
        log.warning("%s %s %s", what, precision, reason)
    return used


def autocast(device: torch.device | str, precision: str):
    """``torch.autocast`` for ``precision`` on ``device`` (a no-op context for ``no``)."""
    device = torch.device(device)
    dtype = DTYPES[precision]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
