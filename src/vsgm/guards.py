"""Checks at the door, before any work: outputs that would replace a file, JSON and tables of the wrong
shape. Each failure is one line naming the file and what is wrong (a ValueError or FileExistsError,
which ``vsgm.cli.main`` prints as ``vsgm CMD: error: ...``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

OVERWRITE_FLAG = "--overwrite"


def refuse_existing(paths: Iterable[str | os.PathLike], overwrite: bool) -> None:
    """Refuse to replace an existing output unless ``--overwrite`` was given; refuse an output whose
    place is taken by a directory, or whose parent is a file, in any case.

    Args:
        paths: every file the command will write.
        overwrite: the ``--overwrite`` flag.

    Raises:
        FileExistsError: naming the file and the flag.
    """
    for path in map(Path, paths):
        if path.is_dir():
            raise FileExistsError(f"{path}: is a directory, not a file the output can be written to")
        for parent in path.parents:
            if parent.exists() and not parent.is_dir():
                raise FileExistsError(f"{path}: cannot be written, {parent} is a file, not a directory")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; vsgm does not replace a file unless you give {OVERWRITE_FLAG}")


def check_out_dir(path: str | os.PathLike) -> None:
    """Refuse an output directory that is a file (or lies under one) before any work."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise NotADirectoryError(f"{path}: cannot be an output directory, {p} is a file")


_TYPES = {int: "an integer", float: "a number", str: "a string", dict: "an object", list: "a list",
          bool: "true or false"}


def _is(value: Any, kind: type | tuple) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true is not a count
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, kinds)


def check_fields(obj: Any, fields: Mapping[str, type | tuple], where: str | os.PathLike) -> dict[str, Any]:
    """Refuse a JSON value that is not an object holding ``fields`` with values of the given types
    (numbers must be finite).

    Args:
        obj: the parsed JSON.
        fields: key -> type (or tuple of types; ``type(None)`` allows null).
        where: the file (or file and key) for the message.

    Returns:
        ``obj`` (a dict).
    """
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key, kind in fields.items():
        if key not in obj:
            raise ValueError(f"{where}: has no {key!r} entry")
        value = obj[key]
        if not _is(value, kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            wanted = " or ".join(_TYPES.get(k, "null" if k is type(None) else k.__name__) for k in kinds)
            raise ValueError(f"{where}: {key!r} must be {wanted}, got {json.dumps(value)[:60]}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}: {key!r} must be finite, got {value}")
    return obj


def read_json(path: str | os.PathLike, fields: Mapping[str, type | tuple] = {}) -> dict[str, Any]:
    """Read a JSON object from a file and check its fields (see check_fields); strict JSON only
    (NaN and Infinity are refused)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        obj = json.loads(path.read_text(), parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    except _NonStrict as err:
        raise ValueError(f"{path}: not strict JSON ({err} is not a JSON number)") from None
    return check_fields(obj, fields, path)


class _NonStrict(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NonStrict(name)


def check_table(df, path: str | os.PathLike, required: Iterable[str] = ("index",), finite: bool = True) -> None:
    """Refuse a table without the ``required`` columns, with non-numeric or non-finite values
    (``finite``), or without rows.

    Args:
        df: a pandas DataFrame read from ``path``.
        path: the file, for the message.
        required: columns that must be present.
        finite: whether every numeric value must be finite.
    """
    import numpy as np

    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: has no column(s) {missing} (columns: {list(df.columns)[:12]})")
    if not len(df):
        raise ValueError(f"{path}: has no rows")
    numeric = df.select_dtypes(include="number")
    other = [c for c in df.columns if c not in numeric.columns]
    if other:
        raise ValueError(f"{path}: column(s) {other[:5]} are not numeric")
    bad = ~np.isfinite(numeric.to_numpy(dtype=float))
    if finite and bad.any():
        cols = [c for c, b in zip(numeric.columns, bad.any(0)) if b]
        raise ValueError(f"{path}: {int(bad.sum())} non-finite value(s) in column(s) {cols[:5]}")


def read_parquet(path: str | os.PathLike):
    """pandas.read_parquet with a one-line error naming the file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises its own types for a file that is not Parquet
        raise ValueError(f"{path}: not a readable Parquet table ({type(err).__name__}: {err})") from None
