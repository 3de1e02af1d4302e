"""Atomic file output: a file is either absent or complete, never half-written."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same directory (same filesystem, so the
    rename is atomic) and keeps the suffix, so libraries that pick a format by
    extension still work. On any exception the temporary file is removed and
    ``path`` is left untouched.

    Args:
        path: the final destination.

    Yields:
        The temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make every result private to its writer
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sidecar(path: str | os.PathLike, ext: str = ".safetensors") -> Path:
    """The JSON file written beside ``path``: ``x{ext}`` -> ``x.json``; any other name gets ``.json``
    appended, so a name with dots of its own (``run.v2``) does not share ``run.json`` with ``run{ext}``."""
    p = Path(path)
    return p.with_suffix(".json") if p.suffix == ext else p.with_name(p.name + ".json")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted, strict JSON (stable bytes for the same data).

    Raises:
        ValueError: naming the file, when ``obj`` holds NaN or an infinity (not JSON; strict parsers refuse it).
    """
    try:
        text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False)
    except ValueError as err:
        bad = sorted(k for k, v in obj.items() if isinstance(v, float) and not math.isfinite(v)) \
            if isinstance(obj, dict) else []
        raise ValueError(f"{path}: not written: non-finite value(s) {', '.join(bad)} ({err})") from None
    write_text(path, text + "\n")


def write_table(path: str | os.PathLike, df) -> None:
    """Atomically write a pandas table: Parquet for a ``.parquet`` path, else CSV (6 significant digits)."""
    with atomic_path(path) as tmp:
        if Path(path).suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False, float_format="%.6g")
