"""The range of every numeric option, in one place and without torch.

An argparse ``type`` is a :class:`Number`: it parses the text and refuses NaN, infinities and
values outside its range with a message that names the range. The workflow's config check uses
the same objects (``Number.check``), so a value the CLI refuses is refused before any job runs.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

INT_MAX = 2**31 - 1  # counts and sizes: anything larger is a typo, and overflows int32 buffers
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds


class Number:
    """A numeric argparse type with a closed or open range; also a checker for config values.

    Args:
        kind: ``int`` or ``float``.
        lo, hi: the range's ends.
        lo_open, hi_open: whether an end is excluded.
        also: extra allowed values outside the range (``-1`` for "use num_heads").
        name: how argparse calls the type in its messages.
    """

    def __init__(self, kind: type, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False,
                 also: tuple = (), name: str = ""):
        self.kind, self.lo, self.hi, self.lo_open, self.hi_open, self.also = kind, lo, hi, lo_open, hi_open, also
        self.__name__ = name or kind.__name__

    def describe(self) -> str:
        """The range as text: ``in (0, 1]``, ``>= 1`` (ints up to INT_MAX), plus the extra values."""
        if self.kind is int and self.hi == INT_MAX and not self.lo_open:
            text = f">= {self.lo}"
        else:
            text = f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        return text + "".join(f", or {v}" for v in self.also)

    def contains(self, value: Any) -> bool:
        """Whether ``value`` (already a number) is allowed."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if value in self.also:
            return True
        if self.kind is int and (not isinstance(value, int)):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def _problem(self, value: Any) -> str:
        if isinstance(value, (int, float)) and value > self.hi and self.kind is int:
            return f"must be <= {self.hi}, got {value}"
        return f"must be {self.describe()}, got {value!r}"

    def check(self, value: Any, where: str) -> str | None:
        """A one-line problem with a config value, or None when it is allowed."""
        return None if self.contains(value) else f"{where}: {self._problem(value)}"

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}") from None
        if not self.contains(value):
            raise argparse.ArgumentTypeError(self._problem(value))
        return value

    def __repr__(self) -> str:
        return f"Number({self.__name__}: {self.describe()})"


positive_int = Number(int, 1, INT_MAX, name="positive_int")
non_negative_int = Number(int, 0, INT_MAX, name="non_negative_int")
seed = Number(int, 0, SEED_MAX, name="seed")
head_channels = Number(int, 1, INT_MAX, also=(-1,), name="head_channels")
probability = Number(float, 0.0, 1.0, hi_open=True, name="probability")
# a learning rate above 10 diverges at once; sigma must exceed 1 (sigma = 1 makes the VE SDE's std 0/0)
learning_rate = Number(float, 0.0, 10.0, lo_open=True, name="learning_rate")
sigma = Number(float, 1.0, 1e6, lo_open=True, name="sigma")
# below 1e-6 the smallest noise std underflows float32 (sigma**(2 eps) - 1 == 0): infinite scores
eps = Number(float, 1e-6, 1.0, hi_open=True, name="eps")
tolerance = Number(float, 0.0, 1.0, lo_open=True, name="tolerance")
snr = Number(float, 0.0, 10.0, lo_open=True, name="snr")
guidance = Number(float, 0.0, 100.0, name="guidance")
decay = Number(float, 0.0, 1.0, name="decay")

# every numeric option of the CLI and the workflow, by its name (lists: each entry)
OPTIONS: dict[str, Number] = {
    **dict.fromkeys(["model_channels", "num_res_blocks", "attention_resolutions", "channel_mult", "num_heads",
                     "n_classes", "batch_size", "n_epochs", "sample_and_save_freq", "num_steps",
                     "num_samples", "n_draws", "levels", "bpd_steps", "max_images", "max_train_images", "steps",
                     "n_boot", "epochs", "repeats", "sampler_batch"], positive_int),
    **dict.fromkeys(["num_workers", "warmup", "save_every", "micro_batch", "classes"], non_negative_int),
    **dict.fromkeys(["dropout", "ema_rate", "drop_prob"], probability),
    **dict.fromkeys(["atol", "rtol", "tolerances"], tolerance),
    "num_head_channels": head_channels, "sigma": sigma, "eps": eps, "seed": seed, "lr": learning_rate,
    "decay": decay, "snr": snr, "cfg": guidance, "dims": Number(int, 1, 3, name="dims"),
    "channels": Number(int, 1, 4, name="channels"),
    # an image side beyond 4096 is a typo: preparing it would try to allocate terabytes
    **dict.fromkeys(["size", "bottleneck"], Number(int, 1, 4096, name="image_side")),
    # start-up seconds of one job (vsgm estimate): a day is surely a typo
    "startup_s": Number(float, 0.0, 86400.0, name="seconds"),
    # score evaluations per sample (vsgm estimate --nfe NAME=N): the seed's longest run takes 2000
    "nfe": Number(float, 1.0, 1e6, name="nfe"),
}
