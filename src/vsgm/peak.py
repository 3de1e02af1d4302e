"""The machine's limit, measured: the fastest of a large matmul and a large 3x3 convolution.

A benchmark that states a model's speed as a fraction of a peak needs the peak to be the machine's
real limit. On one of our CPUs the 2048^2 fp32 matmul ran at 231 GFLOP/s while oneDNN's channels-last
3x3 convolutions ran at 532: fractions of the matmul peak came out at 1.7-1.9. So the limit is the
fastest of both kernels, each the best of repeated measurements, in fp32 and (where the device has
it natively) in the reduced precision in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .timing import best_time


def matmul_rate(device: torch.device, dtype: torch.dtype, repeats: int, n: int = 2048) -> float:
    """FLOP/s of an n x n matrix product."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    inner = 4 if device.type == "cpu" else 50
    return 2 * n**3 * inner / best_time(lambda: [a @ b for _ in range(inner)], device, repeats)


def conv_rate(device: torch.device, dtype: torch.dtype, repeats: int, batch: int = 32, channels: int = 128,
              size: int = 32) -> float:
    """FLOP/s of a 3x3 convolution, channels-last, as the UNet's (batch x channels x size x size)."""
    x = torch.randn(batch, channels, size, size, device=device).to(dtype, memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device, dtype,
                                                                          memory_format=torch.channels_last)
    inner = 2 if device.type == "cpu" else 50
    flops = 2 * batch * channels * channels * 9 * size * size * inner
    with torch.no_grad():
        return flops / best_time(lambda: [conv(x) for _ in range(inner)], device, repeats)


@dataclass
class Limit:
    """A device's measured limit in one dtype: the best rate of each kernel (FLOP/s), and a model's rate
    when that was higher still (see ``settle``)."""

    dtype: str
    matmul: float
    conv: float
    observed: float = 0.0

    @property
    def flops(self) -> float:
        return max(self.matmul, self.conv, self.observed)

    @property
    def kernel(self) -> str:
        """Which measurement sets the limit."""
        if self.observed > max(self.matmul, self.conv):
            return "a model's own rate (the kernels measured lower every time)"
        return "3x3 conv" if self.conv >= self.matmul else "matmul"

    def remeasure(self, device: torch.device, repeats: int) -> None:
        """Measure both kernels again and keep the higher rates (a neighbour's load lowers a measurement,
        never raises it)."""
        dtype = getattr(torch, self.dtype)
        self.matmul = max(self.matmul, matmul_rate(device, dtype, repeats))
        self.conv = max(self.conv, conv_rate(device, dtype, repeats))


def measure_limit(device: torch.device, dtype: torch.dtype, repeats: int) -> Limit:
    """The fastest of the matmul and the convolution in ``dtype`` on ``device``."""
    name = str(dtype).removeprefix("torch.")
    return Limit(name, matmul_rate(device, dtype, repeats), conv_rate(device, dtype, repeats))


def fraction(rate: float, limit: Limit) -> float:
    """``rate`` as a fraction of the limit; refuses a fraction above 1 (the limit was not the limit)."""
    value = rate / limit.flops
    if value > 1:
        raise ValueError(f"{rate / 1e9:,.1f} GFLOP/s measured above the {limit.dtype} limit of "
                         f"{limit.flops / 1e9:,.1f}: the limit was under-measured")
    return value


def settle(limit: Limit, rates: list[float], remeasure: Callable[[], None], attempts: int = 3) -> bool:
    """Make the limit at least every measured rate: remeasure it (up to ``attempts`` times) while any rate
    is above it. A model cannot outrun the fastest kernel it is made of; if it still does, the kernels'
    measurements were disturbed every time, and the limit becomes the fastest rate seen.

    Returns:
        Whether the limit had to be raised to a measured rate (the table says so).
    """
    for _ in range(attempts):
        if max(rates, default=0.0) <= limit.flops:
            return False
        remeasure()
    if max(rates, default=0.0) <= limit.flops:
        return False
    limit.observed = max(rates)
    return True
