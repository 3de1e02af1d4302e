"""Progress of long steps, readable in a terminal and in a job log alike.

On a terminal (stderr is a TTY) a tqdm bar. Otherwise (a Snakemake or SLURM log) tqdm's
carriage-return frames would pile up into a few huge lines, so one newline-terminated line is
written every ``VSGM_PROGRESS_INTERVAL`` seconds (default 30), at each ``line()`` (e.g. an epoch's
end) and at the end, e.g.::

    train: 1200/5000 steps (24%), 3.1 steps/s, elapsed 6m27s, ETA 20m26s, loss=0.512, images/s=397

``VSGM_PROGRESS=bar|lines|off`` overrides the choice.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Iterable, Iterator

from tqdm.auto import tqdm

INTERVAL_ENV = "VSGM_PROGRESS_INTERVAL"
MODE_ENV = "VSGM_PROGRESS"
DEFAULT_INTERVAL = 30.0


def _duration(seconds: float) -> str:
    """3725 -> '1h02m05s'; 65 -> '1m05s'; 4.2 -> '4s'."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _mode() -> str:
    mode = os.environ.get(MODE_ENV, "").strip().lower()
    if mode in ("bar", "lines", "off"):
        return mode
    return "bar" if getattr(sys.stderr, "isatty", lambda: False)() else "lines"


class LineProgress:
    """A tqdm-like counter writing whole lines to stderr at a fixed interval (see the module docstring).

    Args:
        iterable: optional iterable to wrap (iterating it advances the count).
        total: the count at completion, or None (then no percentage or ETA).
        desc: what is counted, e.g. "train".
        unit: the unit's name, e.g. "steps".
        initial: the count already done (a resumed run).
        interval: seconds between lines (default: ``VSGM_PROGRESS_INTERVAL`` or 30).
    """

    def __init__(self, iterable: Iterable | None = None, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, interval: float | None = None, **_: Any):
        self.iterable, self.desc, self.unit = iterable, desc, unit.strip() or "it"
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.initial = total, initial, initial
        self.interval = interval if interval is not None else float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
        self.start = self.last = time.monotonic()
        self.postfix: dict[str, Any] = {}
        self.closed, self.written_at = False, None  # the count of the last line written

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        """Advance the count; write a line when the interval has passed."""
        self.n += n
        if time.monotonic() - self.last >= self.interval:
            self.line()

    def set_postfix(self, **values: Any) -> None:
        """Values shown at the end of the following lines (formatted with 4 significant digits)."""
        self.postfix = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in values.items()}

    def text(self) -> str:
        """The progress line (without newline)."""
        elapsed = time.monotonic() - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else float("nan")
        parts = [f"{self.desc}: {self.n:g}" + (f"/{self.total:g}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * min(self.n / self.total, 1):.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s" if math.isfinite(rate) else f"? {self.unit}/s")
        parts.append(f"elapsed {_duration(elapsed)}")
        if self.total and rate > 0 and math.isfinite(rate):
            parts.append(f"ETA {_duration(max(self.total - self.n, 0) / rate)}")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return ", ".join(parts)

    def line(self) -> None:
        """Write the progress line now (e.g. at an epoch's end)."""
        print(self.text(), file=sys.stderr, flush=True)
        self.written_at = self.n
        self.last = time.monotonic()

    def close(self) -> None:
        """Write the final line (once, unless the last line already said where it ended)."""
        if not self.closed:
            self.closed = True
            if self.written_at != self.n:
                self.line()


class BarProgress(tqdm):
    """tqdm with LineProgress's ``line()`` (a no-op: the bar is always current)."""

    def line(self) -> None:
        self.refresh()


class NoProgress(LineProgress):
    """Counts silently (a disabled bar, other processes than the main one)."""

    def line(self) -> None:
        self.last = time.monotonic()


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
             initial: float = 0, disable: bool = False, mininterval: float = 1.0, **kwargs: Any):
    """A progress counter for a long step: a tqdm bar on a terminal, whole lines in a log.

    Args:
        iterable: optional iterable to wrap.
        total: the count at completion (None: unknown).
        desc: what is counted.
        unit: the unit's name.
        initial: the count already done.
        disable: count silently.
        mininterval: the bar's refresh interval (terminal only).
        kwargs: further tqdm options (terminal only).

    Returns:
        An object with tqdm's ``update``, ``set_postfix``, ``close``, iteration and context manager,
        plus ``line()`` (write a line now in a log).
    """
    mode = "off" if disable else _mode()
    if mode == "bar":
        return BarProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, mininterval=mininterval,
                           **kwargs)
    cls = NoProgress if mode == "off" else LineProgress
    return cls(iterable, total=total, desc=desc, unit=unit, initial=initial)
