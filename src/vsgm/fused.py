"""A fused CPU kernel for the UNet's ``silu(group_norm(x + shift))`` (float32 or bfloat16), compiled on first use.

PyTorch runs GroupNorm, SiLU and the time embedding's add as separate passes over memory, and its
channels-last GroupNorm backward is several times slower than its contiguous one: together 10-12% of
a training step of the seed's UNet on a CPU. The kernel in ``csrc/group_norm_silu.cpp`` does the
forward in two passes and the backward in two, 2-3.5x faster than PyTorch's ops at the UNet's shapes.

It is built with ``torch.utils.cpp_extension`` (a C++ compiler and ninja) into a folder per torch
version and CPU capability, once (processes that start together wait for one build). Without a
compiler, or with ``VSGM_FUSED_KERNELS=0``, the UNet runs PyTorch's ops (a warning says why).
GPUs, 1-D and 3-D models, other dtypes and ``torch.compile`` always take PyTorch's ops. Under bf16 autocast
the kernel reads and writes bf16 activations itself; PyTorch's autocast would instead run GroupNorm in
float32, a conversion pass over memory on each side of every normalisation.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

SOURCE = Path(__file__).with_name("csrc") / "group_norm_silu.cpp"
NAME = "vsgm_group_norm_silu"
SWITCH = "VSGM_FUSED_KERNELS"
# instruction sets by torch's CPU capability; a build folder per capability, so that a cluster's nodes
# that share a home folder never load code for a CPU they lack
ISA_FLAGS = {"AVX512": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma"],
             "AVX2": ["-mavx2", "-mfma"]}


@functools.cache
def native():
    """The compiled kernel module, or None when switched off or when it cannot be built."""
    if os.environ.get(SWITCH, "1") == "0":
        return None
    # torch logs, on importing cpp_extension, that a CUDA build of torch finds no CUDA runtime: true, and
    # irrelevant for a CPU kernel
    logging.disable(logging.WARNING)
    try:
        from torch.utils.cpp_extension import get_default_build_root, load

        capability = torch.backends.cpu.get_cpu_capability()
        root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())
        folder = root / f"vsgm-torch{torch.__version__}-{capability.lower()}"
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / f"{NAME}.so").exists():
            print("vsgm: compiling the fused GroupNorm+SiLU CPU kernel (once, about 30 s)", file=sys.stderr)
        # torch holds an OS lock on the folder while it builds: processes that start together build once
        return load(name=NAME, sources=[str(SOURCE)], build_directory=str(folder),
                    extra_cflags=["-O3", "-fopenmp", *ISA_FLAGS.get(capability, [])], extra_ldflags=["-fopenmp"])
    except Exception as err:  # no compiler, no ninja, a failed build: the UNet falls back to PyTorch's ops
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        warnings.warn(f"vsgm: the fused GroupNorm+SiLU kernel could not be built ({reason}); using PyTorch's "
                      f"ops, slower on a CPU. {SWITCH}=0 skips the attempt.", stacklevel=2)
        return None
    finally:
        logging.disable(logging.NOTSET)


def applies(x: torch.Tensor) -> bool:
    """Whether ``group_norm_silu`` takes x: float32 or bfloat16, 4-D, channels-last, on a CPU, outside
    torch.compile."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and x.dim() == 4 and x.numel() > 0
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.compiler.is_compiling() and native() is not None)


class _GroupNormSiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, shift, weight, bias, groups, eps):
        y, mean, rstd = native().forward(x, shift, weight, bias, groups, eps)
        ctx.save_for_backward(x, shift, weight, bias, mean, rstd)
        ctx.groups = groups
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, shift, weight, bias, mean, rstd = ctx.saved_tensors
        dy = dy.contiguous(memory_format=torch.channels_last)
        dx, dshift, dweight, dbias = native().backward(dy, x, shift, weight, bias, mean, rstd, ctx.groups)
        return dx, (dshift if shift.numel() else None), dweight, dbias, None, None


def group_norm_silu(x: torch.Tensor, shift: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
                    groups: int, eps: float) -> torch.Tensor:
    """silu(group_norm(x + shift)) for an x that ``applies`` takes; shift is None or one value per image and
    channel (any shape holding batch x channels values, e.g. (N, C, 1, 1)). The result has x's dtype; the
    statistics, weight, bias and shift are float32 (a bf16 autocast run keeps float32 master weights)."""
    shift = (x.new_empty(0, dtype=torch.float32) if shift is None
             else shift.reshape(x.shape[0], x.shape[1]).float().contiguous())
    return _GroupNormSiLU.apply(x, shift, weight.float().contiguous(), bias.float().contiguous(), groups, eps)
