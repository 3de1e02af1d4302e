"""Figures: sample grids, score histograms, ROC curves, AUROC heatmaps, sample montages.

Every figure is drawn on a standalone :class:`matplotlib.figure.Figure` (not
registered with pyplot, so nothing accumulates in pyplot's figure manager and
no GUI backend is touched) and explicitly cleared after saving. Every file is
written through :func:`vsgm.io.atomic_path`: a killed job leaves either the
complete PNG or nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from vsgm.io import atomic_path  # noqa: E402
from vsgm.metrics import _as_scores, auroc  # noqa: E402

__all__ = [
    "image_grid",
    "save_image_grid",
    "plot_score_histograms",
    "plot_roc_curves",
    "plot_auroc_heatmap",
    "montage",
]

PathLike = str | os.PathLike
MIN_GRID_WIDTH = 256  # save_image_grid upscales (nearest) to at least this many pixels wide
_DPI = 120
_MAX_BINS = 100


# --------------------------------------------------------------------------- helpers


def _save_figure(fig: Figure, path: PathLike) -> None:
    """Write ``fig`` as PNG atomically, then release its artists."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=_DPI, bbox_inches="tight")
    finally:
        fig.clear()


def _save_png(array: np.ndarray, path: PathLike) -> None:
    """Write a uint8 HxW or HxWx{1,3} array as PNG atomically."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")


# --------------------------------------------------------------------------- sample grids


def _to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C); clamped, NaN -> 0 (black)."""
    if isinstance(images, torch.Tensor):
        arr = images.detach().to("cpu", torch.float64).numpy()
    else:
        arr = np.asarray(images, dtype=np.float64)
    if arr.ndim != 4 or arr.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, C, H, W) with C in (1, 3), got {tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError("images is empty: need at least one image")
    arr = np.nan_to_num(arr, nan=-1.0, posinf=1.0, neginf=-1.0)
    arr = np.rint((np.clip(arr, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return arr.transpose(0, 2, 3, 1)


def image_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None) -> np.ndarray:
    """Tile a batch of images into one uint8 image with 1-pixel black padding.

    Layout follows ``torchvision.utils.make_grid``: ``nrow`` images per row,
    padding between and around tiles, so a grid of ``r`` rows and ``nrow``
    columns of HxW images is ``(r*(H+1)+1) x (nrow*(W+1)+1)`` pixels. Unlike
    ``make_grid`` a single image is padded too, and grayscale stays 1 channel.

    Args:
        images: tensor or array (N, C, H, W), C in {1, 3}, values in [-1, 1]
            (clamped; -1 -> 0, +1 -> 255; NaN is drawn black).
        nrow: images per row; default ``ceil(sqrt(N))``.

    Returns:
        uint8 array (H_grid, W_grid, C).
    """
    tiles = _to_uint8(images)
    n, h, w, c = tiles.shape
    if nrow is None:
        nrow = math.ceil(math.sqrt(n))
    if int(nrow) != nrow or nrow < 1:
        raise ValueError(f"nrow must be a positive integer, got {nrow}")
    ncol = min(int(nrow), n)
    nrows = math.ceil(n / ncol)
    grid = np.zeros((nrows * (h + 1) + 1, ncol * (w + 1) + 1, c), dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        y, x = 1 + r * (h + 1), 1 + q * (w + 1)
        grid[y : y + h, x : x + w] = tiles[i]
    return grid


def save_image_grid(images: torch.Tensor | np.ndarray, path: PathLike, nrow: int | None = None) -> None:
    """Save :func:`image_grid` as a PNG, upscaled so small images stay readable.

    The grid is enlarged by an integer nearest-neighbour factor
    ``ceil(256 / width)`` when it is narrower than 256 px (e.g. 8x8 images),
    so pixels stay sharp. Grayscale is saved as mode "L", colour as "RGB".

    Args:
        images: (N, C, H, W) in [-1, 1], see :func:`image_grid`.
        path: destination .png (written atomically).
        nrow: images per row; default ``ceil(sqrt(N))``.
    """
    grid = image_grid(images, nrow=nrow)
    factor = max(1, math.ceil(MIN_GRID_WIDTH / grid.shape[1]))
    if factor > 1:
        grid = grid.repeat(factor, axis=0).repeat(factor, axis=1)
    _save_png(grid, path)


# --------------------------------------------------------------------------- score plots


def _shared_bins(*arrays: np.ndarray) -> np.ndarray:
    edges = np.histogram_bin_edges(np.concatenate(arrays), bins="auto")
    if edges.size - 1 > _MAX_BINS:
        edges = np.linspace(edges[0], edges[-1], _MAX_BINS + 1)
    return edges


def plot_score_histograms(
    scores_in: ArrayLike,
    scores_out: ArrayLike,
    path: PathLike,
    title: str,
    label_in: str,
    label_out: str,
) -> None:
    """Overlaid density histograms of IN and OOD scores on shared bins.

    Args:
        scores_in: 1-D in-distribution scores (finite, non-empty).
        scores_out: 1-D OOD scores (finite, non-empty).
        path: destination .png (written atomically).
        title: figure title.
        label_in: legend label of the in-distribution data (n is appended).
        label_out: legend label of the OOD data (n is appended).
    """
    s_in, s_out = _as_scores(scores_in, "scores_in"), _as_scores(scores_out, "scores_out")
    bins = _shared_bins(s_in, s_out)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for scores, label, color in ((s_in, label_in, "tab:blue"), (s_out, label_out, "tab:orange")):
        ax.hist(scores, bins=bins, density=True, alpha=0.5, color=color, label=f"{label} (n={scores.size})")
        ax.hist(scores, bins=bins, density=True, histtype="step", color=color)
    ax.set_xlabel("score (higher = more OOD)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    _save_figure(fig, path)


def plot_roc_curves(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: PathLike,
    title: str,
) -> None:
    """ROC curves (OOD = positive) of several scorers on one axis.

    Args:
        curves: ``{scorer name: (scores_in, scores_out)}``, at least one entry.
        path: destination .png (written atomically).
        title: figure title.
    """
    if not curves:
        raise ValueError("curves is empty: need at least one scorer")
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for name, (scores_in, scores_out) in curves.items():
        s_in, s_out = _as_scores(scores_in, f"{name}: scores_in"), _as_scores(scores_out, f"{name}: scores_out")
        labels = np.concatenate([np.zeros(s_in.size), np.ones(s_out.size)])
        fpr, tpr, _ = roc_curve(labels, np.concatenate([s_in, s_out]))
        ax.plot(fpr, tpr, label=f"{name} (AUROC={auroc(s_in, s_out):.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("false-positive rate (IN flagged as OOD)")
    ax.set_ylabel("true-positive rate (OOD flagged)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    _save_figure(fig, path)


def _heatmap_values(table: pd.DataFrame, name: str) -> np.ndarray:
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{name}: expected a pandas DataFrame, got {type(table).__name__}")
    if table.empty:
        raise ValueError(f"{name}: table is empty")
    values = table.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = values[np.isfinite(values)]
    if np.any(np.isinf(values)) or np.any((finite < 0.0) | (finite > 1.0)):
        raise ValueError(f"{name}: AUROC values must lie in [0, 1] (NaN allowed)")
    return values


def _draw_heatmap(ax: Any, table: pd.DataFrame, values: np.ndarray, cmap: Any, norm: Normalize) -> Any:
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            color = "white" if abs(v - 0.5) > 0.3 else "black"
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color=color, fontsize="small")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in table.columns], rotation=45, ha="right")
    ax.set_yticks(range(values.shape[0]), [str(r) for r in table.index])
    ax.set_xlabel("OOD dataset")
    ax.set_ylabel("in-distribution dataset")
    return image


def plot_auroc_heatmap(tables: pd.DataFrame | Mapping[str, pd.DataFrame], path: PathLike, title: str) -> None:
    """Annotated AUROC heatmap(s): rows = in-distribution, columns = OOD dataset.

    A diverging colormap centred at 0.5 (white) makes below-chance AUROCs
    (red) stand out from good ones (blue). NaN cells are left blank and
    unannotated.

    Args:
        tables: one DataFrame (index = in-distribution dataset, columns = OOD
            dataset, values = AUROC in [0, 1] or NaN), or ``{scorer: DataFrame}``
            to draw one subplot per scorer, titled with the scorer name.
        path: destination .png (written atomically).
        title: figure title.
    """
    named = {"": tables} if isinstance(tables, pd.DataFrame) else dict(tables)
    if not named:
        raise ValueError("tables is empty: need at least one DataFrame")
    values = {name: _heatmap_values(t, name or "table") for name, t in named.items()}
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="white")
    norm = Normalize(vmin=0.0, vmax=1.0)

    shapes = [v.shape for v in values.values()]
    cell_w = 0.9 * max(s[1] for s in shapes) + 2.0
    cell_h = 0.6 * max(s[0] for s in shapes) + 2.0
    fig = Figure(figsize=(cell_w * len(named) + 1.0, cell_h), layout="constrained")
    axes = fig.subplots(1, len(named), squeeze=False)[0]
    image = None
    for ax, (name, table) in zip(axes, named.items()):
        image = _draw_heatmap(ax, table, values[name], cmap, norm)
        if name:
            ax.set_title(name)
    fig.colorbar(image, ax=list(axes), label="AUROC (0.5 = chance)")
    fig.suptitle(title)
    _save_figure(fig, path)


# --------------------------------------------------------------------------- montage


def _load_cell(source: PathLike | np.ndarray) -> np.ndarray:
    if isinstance(source, (str, os.PathLike)):
        with Image.open(Path(source)) as img:
            return np.asarray(img.convert("RGB") if img.mode not in ("L", "RGB") else img)
    arr = np.asarray(source)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"montage cell must be an HxW or HxWxC image, got shape {arr.shape}")
    return arr


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def montage(
    grids: Mapping[tuple[str, str], PathLike | np.ndarray],
    path: PathLike,
    row_label: str = "dataset",
    col_label: str = "sampler",
    title: str | None = None,
    captions: Mapping[tuple[str, str], str] | None = None,
) -> None:
    """One figure with a table of sample-grid images (e.g. results/samples.png).

    Rows are the first key element (e.g. dataset), columns the second (e.g.
    sampler), both in order of first appearance in ``grids``. Each cell is
    titled "row / col" (and its caption below, e.g. its quality metrics); cells
    without an entry are left blank.

    Args:
        grids: ``{(row, col): PNG path or uint8 image array (HxW or HxWxC)}``.
        path: destination .png (written atomically).
        row_label: what rows are (shown in the figure title).
        col_label: what columns are (shown in the figure title).
        title: optional figure title; default "rows: <row_label>, columns: <col_label>".
        captions: optional text per cell, shown under its title.
    """
    if not grids:
        raise ValueError("grids is empty: need at least one sample grid")
    rows = _unique([r for r, _ in grids])
    cols = _unique([c for _, c in grids])
    captions = captions or {}
    lines = max((c.count("\n") + 1 for c in captions.values()), default=0)
    fig = Figure(figsize=(2.6 * len(cols), (2.8 + 0.16 * lines) * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            ax = axes[i][j]
            ax.axis("off")
            if (r, c) not in grids:
                continue
            img = _load_cell(grids[(r, c)])
            if img.ndim == 2:
                vmax = 255 if img.dtype == np.uint8 else 1.0
                ax.imshow(img, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
            else:
                ax.imshow(img, interpolation="nearest")
            caption = f"\n{captions[(r, c)]}" if (r, c) in captions else ""
            ax.set_title(f"{r} / {c}{caption}", fontsize="x-small" if caption else "small")
    fig.suptitle(title if title is not None else f"rows: {row_label}, columns: {col_label}")
    _save_figure(fig, path)


QUALITY_LABELS = {"fd": "Frechet distance", "kid": "KID", "precision": "precision", "recall": "recall"}


def plot_quality_vs_nfe(table: pd.DataFrame, path: PathLike, title: str) -> None:
    """Sample quality against NFE: one row of panels per model, one panel per metric (FD, KID, precision,
    recall, those the table has), one line per sampler with its 95% interval as a band.

    Args:
        table: rows with model, sampler, nfe and each metric with ``_lo``/``_hi`` (the solver sweep).
        path: destination .png (written atomically).
        title: figure title.
    """
    models = list(dict.fromkeys(table["model"]))
    if not models:
        raise ValueError("the sweep table is empty")
    metrics = [m for m in QUALITY_LABELS if m in table]
    fig = Figure(figsize=(4.2 * len(metrics), 3.6 * len(models)), layout="constrained")
    for i, model in enumerate(models):
        sub = table[table["model"] == model]
        for j, metric in enumerate(metrics):
            ax = fig.add_subplot(len(models), len(metrics), i * len(metrics) + j + 1)
            for sampler, rows in sub.groupby("sampler", sort=False):
                rows = rows.sort_values("nfe")
                line, = ax.plot(rows["nfe"], rows[metric], marker="o", markersize=3, label=sampler)
                if f"{metric}_lo" in rows:
                    ax.fill_between(rows["nfe"], rows[f"{metric}_lo"], rows[f"{metric}_hi"], alpha=0.15,
                                    color=line.get_color(), linewidth=0)
            ax.set_xscale("log")
            ax.set_xlabel("score evaluations (NFE)")
            ax.set_ylabel(f"{QUALITY_LABELS[metric]} (classifier features)")
            ax.set_title(f"{model}: {QUALITY_LABELS[metric]}", fontsize="small")
            if j == 0:
                ax.legend(fontsize="x-small")
    fig.suptitle(title)
    _save_figure(fig, path)


def plot_loss_curves(histories: Mapping[str, pd.DataFrame], path: PathLike, title: str) -> None:
    """The training loss per epoch of every model (the ``train.csv`` histories), one line each.

    Args:
        histories: ``{model: table with epoch and loss}``.
        path: destination .png (written atomically).
        title: figure title.
    """
    if not histories:
        raise ValueError("no training histories to plot")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    for model, table in histories.items():
        ax.plot(table["epoch"], table["loss"], marker="o", markersize=2, label=str(model))
    ax.set_xlabel("epoch")
    ax.set_ylabel("denoising score-matching loss (epoch mean)")
    ax.legend(fontsize="x-small")
    fig.suptitle(title)
    _save_figure(fig, path)
