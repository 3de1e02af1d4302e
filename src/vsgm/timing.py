"""Wall-clock timing that is right on a GPU, and the CUDA determinism settings of training.

CUDA kernels run asynchronously: a clock read right after a call measures the kernel launches, not
the work, and the first call also pays the CUDA context, cuDNN's algorithm search and compiling.
``timed`` synchronises the device before starting and before stopping the clock, and runs an
optional untimed warm-up first. Sampler seconds (samples/*.json, results/solvers.csv) and every
``vsgm bench`` row go through it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

# how each device type waits for its queued work (CPU work is synchronous)
SYNCHRONIZE: dict[str, Callable[[], None]] = {
    "cuda": lambda: torch.cuda.synchronize(),
    "mps": lambda: torch.mps.synchronize(),
}


def synchronize(device: torch.device | str) -> None:
    """Wait until ``device`` has finished its queued work (a no-op on the CPU)."""
    wait = SYNCHRONIZE.get(torch.device(device).type)
    if wait is not None:
        wait()


def timed(fn: Callable[[], Any], device: torch.device | str, warmup: Callable[[], Any] | None = None,
          clock: Callable[[], float] = time.perf_counter) -> tuple[Any, float]:
    """Call ``fn`` once and time it, the device's queued work included.

    Args:
        fn: the work to time.
        device: where it runs (synchronised before and after on CUDA).
        warmup: called first, untimed (e.g. one batch: CUDA start-up, cuDNN autotuning, compiling).
        clock: the clock (seconds).

    Returns:
        (fn's result, seconds)
    """
    if warmup is not None:
        warmup()
    synchronize(device)
    start = clock()
    out = fn()
    synchronize(device)
    return out, clock() - start


def best_time(fn: Callable[[], Any], device: torch.device | str, repeats: int, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Best time of ``repeats`` timed calls after ``warmup`` untimed ones (the least disturbed run)."""
    for _ in range(warmup):
        fn()
    return min(timed(fn, device, clock=clock)[1] for _ in range(repeats))


# cuBLAS needs a fixed workspace to be deterministic (CUDA >= 10.2); read when cuBLAS starts
CUBLAS_WORKSPACE = ":4096:8"


def deterministic_cuda(device: torch.device | str) -> bool:
    """On CUDA, make training reproducible: deterministic cuDNN and cuBLAS algorithms and
    ``torch.use_deterministic_algorithms`` (warn-only: an op without a deterministic kernel warns
    instead of failing the run). ``VSGM_DETERMINISTIC=0`` switches this off (for speed).

    Call before the first CUDA matmul (cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` once).

    Returns:
        whether the settings were applied.
    """
    if torch.device(device).type != "cuda" or os.environ.get("VSGM_DETERMINISTIC", "1") == "0":
        return False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    return True
