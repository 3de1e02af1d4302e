"""Readers of the files the evaluation commands take, each checking the file's shape first: score
tables (``vsgm pair``), samples (``vsgm quality``) and the image space of prepared sets and classifiers
(``vsgm quality`` and ``vsgm sweep`` compare them with check_same_space)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from .guards import check_table, read_json, read_parquet
from .io import sidecar


def read_score_tables(in_scores: str | os.PathLike, out_scores: str | os.PathLike,
                      sanity: str | os.PathLike | None = None):
    """The in-distribution, outlier and sanity score tables of ``vsgm pair``.

    Each must hold ``index`` and the same scorers of vsgm score, finite; one line naming the file otherwise.

    Returns:
        (in, out, sanity or None) DataFrames.
    """
    from .scorer_table import SCORER_NAMES

    if Path(in_scores).resolve() == Path(out_scores).resolve():
        raise ValueError(f"{out_scores}: the outlier scores are the in-distribution scores themselves "
                         "(an AUROC of 0.5 that says nothing)")
    tables = {}
    for path in (in_scores, out_scores, sanity):
        if path:
            tables[path] = df = read_parquet(path)
            check_table(df, path)
            unknown = [c for c in df.columns if c != "index" and c not in SCORER_NAMES]
            if unknown or len(df.columns) < 2:
                raise ValueError(f"{path}: columns {unknown or list(df.columns)} are not scorers "
                                 f"({', '.join(SCORER_NAMES)}) of vsgm score")
    scorers = set(tables[in_scores].columns)
    for path, df in tables.items():
        if set(df.columns) != scorers:
            raise ValueError(f"{path}: scorers {sorted(set(df.columns) - {'index'})} differ from "
                             f"{in_scores}'s {sorted(scorers - {'index'})}")
    return tables[in_scores], tables[out_scores], tables.get(sanity) if sanity else None


def read_samples(path: str | os.PathLike):
    """The samples of a .npz written by vsgm sample and its .json, refused unless finite images in [-1, 1].

    Returns:
        (samples tensor, the .json's dict, describe(...) of them)
    """
    import numpy as np
    import torch

    try:
        with np.load(path, allow_pickle=False) as f:
            samples = torch.from_numpy(f["samples"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a samples .npz written by vsgm sample ({err})") from err
    check_sample_values(samples, path)
    info = read_json(sidecar(path, ".npz"), {"sampler": str, "dataset": (str, type(None))})
    return samples, info, describe(path, info["dataset"], samples.shape[1:])


def prepared_space(path: str | os.PathLike):
    """(uint8 images, describe(...)) of a prepared split."""
    from .data import load_prepared
    data = load_prepared(path)
    return data.images, describe(path, data.meta.get("dataset"), data.images.shape[1:])


def classifier_space(clf: Any, path: str | os.PathLike) -> dict[str, Any]:
    """describe(...) of a feature classifier: its dataset, channels and (when recorded) image size."""
    size = clf.meta.get("size")
    return describe(path, clf.meta.get("dataset"), (clf.meta["channels"], size, size))


def describe(path: Any, dataset: Any, shape: Any) -> dict[str, Any]:
    """One input of an FD, for check_same_space: its file, dataset name (None: unknown) and image shape
    (channels, height, width; None entries: unknown)."""
    return {"file": str(path), "dataset": dataset, "shape": tuple(shape)}


def check_same_space(parts: list[dict[str, Any]]) -> None:
    """Refuse an FD between inputs of different image shapes or datasets: samples of one model against
    another set's reference, or a classifier trained on other images, give a number that looks right.

    Args:
        parts: describe(...) of every input (samples, reference, training reference, classifier, model).

    Raises:
        ValueError: one line naming both files and what differs.
    """
    first = parts[0]
    for other in parts[1:]:
        for key in ("dataset", "shape"):
            a, b = first[key], other[key]
            if key == "shape":
                same = len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))
            else:
                same = a is None or b is None or a == b
            if not same:
                what = "images of shape (channels, height, width)" if key == "shape" else "dataset"
                raise ValueError(f"{first['file']} and {other['file']} do not belong together: {what} "
                                 f"{a} vs {b}")


def check_sample_values(samples: Any, where: Any) -> None:
    """Refuse samples that are not finite images in [-1, 1] (what vsgm sample writes)."""
    if samples.dim() != 4 or not samples.is_floating_point():
        raise ValueError(f"{where}: samples must be a float array (n, channels, height, width), "
                         f"got {samples.dtype} {tuple(samples.shape)}")
    bad = int((~samples.isfinite()).sum())
    if bad:
        raise ValueError(f"{where}: {bad} non-finite sample value(s)")
    lo, hi = float(samples.min()), float(samples.max())
    if lo < -1.0 - 1e-5 or hi > 1.0 + 1e-5:
        raise ValueError(f"{where}: sample values span [{lo:.3g}, {hi:.3g}], not images in [-1, 1]")
