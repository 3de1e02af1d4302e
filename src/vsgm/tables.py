"""Benchmark tables: one out-of-distribution pair, and the aggregates over all models."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .guards import read_json
from .metrics import AUROC_N_BOOT, ood_metrics
from .quality_metrics import DIFF_PARTS, METRICS
from .replicates import base_of
from .scorer_table import SCORER_NAMES

PAIR_COLUMNS = ["model", "in", "out", "comparison", "scorer", "auroc", "auroc_lo", "auroc_hi", "aupr_in", "aupr_out",
                "fpr95", "n_in", "n_out", "nfe"]
SANITY = "train_vs_test"
OOD = "test_vs_ood"
# the quality JSON's FIDs (vsgm.quality.FID_KINDS): torchvision's Inception-v3, and the FID graph's
FID_KEYS = ("fid_inception", "fid_tf_inception")


def pair_table(model: str, out_name: str, in_scores: pd.DataFrame, out_scores: pd.DataFrame,
               sanity_scores: pd.DataFrame | None = None, nfe: dict[str, float] | None = None,
               n_boot: int = AUROC_N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Metrics for one (model, outlier set) pair, one row per scorer, plus the train-vs-test sanity rows.

    Args:
        model: the in-distribution dataset key.
        out_name: the outlier set key.
        in_scores: scores of the in-distribution test images (one column per scorer).
        out_scores: scores of the outlier images.
        sanity_scores: scores of held-out in-distribution *training* images; they play the outlier
            role against the test images (AUROC near 0.5 expected).
        nfe: network evaluations per image for each scorer.
        n_boot, seed: bootstrap settings for the AUROC interval.

    Returns:
        DataFrame with PAIR_COLUMNS.
    """
    scorers = [c for c in in_scores.columns if c != "index"]
    missing = [s for s in scorers if s not in out_scores.columns]
    if missing:
        raise ValueError(f"outlier scores lack scorer column(s) {missing}")
    rows = []
    comparisons = [(OOD, out_name, out_scores)]
    if sanity_scores is not None:
        comparisons.append((SANITY, f"{model}_train", sanity_scores))
    for comparison, name, other in comparisons:
        for s in scorers:
            m = ood_metrics(in_scores[s].to_numpy(), other[s].to_numpy(), n_boot=n_boot, seed=seed)
            rows.append({"model": model, "in": model, "out": name, "comparison": comparison, "scorer": s, **m,
                         "nfe": (nfe or {}).get(s, np.nan)})
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def _read_pair_csv(path: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({err})") from None
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a pair table of vsgm pair (no column(s) {missing[:5]})")
    return df


def collect_pairs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate pair CSVs into the long AUROC table (sanity rows de-duplicated per model)."""
    frames = [_read_pair_csv(p) for p in sorted(map(str, paths))]
    if not frames:
        raise ValueError("no pair tables to aggregate")
    df = pd.concat(frames, ignore_index=True)
    return df.drop_duplicates(subset=["model", "out", "comparison", "scorer"]).reset_index(drop=True)


def scorer_order(names: Iterable[str]) -> list[str]:
    """Scorers in the registry's order (the seed's loss first, the combinations after what they combine);
    unknown names last, alphabetically."""
    order = list(SCORER_NAMES)
    return sorted(set(names), key=lambda s: (order.index(s) if s in order else len(order), s))


def auroc_matrix(long: pd.DataFrame, scorer: str) -> pd.DataFrame:
    """In-distribution x outlier AUROC matrix for one scorer (outlier pairs only)."""
    sub = long[(long["scorer"] == scorer) & (long["comparison"] == OOD)]
    return sub.pivot(index="model", columns="out", values="auroc").sort_index().sort_index(axis=1)


def auroc_markdown(long: pd.DataFrame) -> str:
    """Markdown: one in x out table per scorer, with a sanity column and the best scorer per pair marked."""
    lines = ["# AUROC (higher = better separated; 0.5 = chance; values below 0.5 are reported as they are)", ""]
    ood = long[long["comparison"] == OOD]
    best = ood.loc[ood.groupby(["model", "out"])["auroc"].idxmax(), ["model", "out", "scorer"]]
    best_set = set(map(tuple, best.to_numpy()))
    for scorer in scorer_order(long["scorer"]):
        mat = auroc_matrix(long, scorer)
        sanity = long[(long["scorer"] == scorer) & (long["comparison"] == SANITY)].set_index("model")["auroc"]
        nfe = long.loc[long["scorer"] == scorer, "nfe"].dropna()
        lines.append(f"## {scorer}" + (f" ({nfe.iloc[0]:g} network evaluations per image)" if len(nfe) else ""))
        lines.append("")
        header = ["in \\ out", *mat.columns, "train vs test"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for model, row in mat.iterrows():
            cells = []
            for out, v in row.items():
                cell = "" if pd.isna(v) else f"{v:.3f}"
                cells.append(f"**{cell}**" if (model, out, scorer) in best_set else cell)
            san = sanity.get(model, np.nan)
            cells.append("" if pd.isna(san) else f"{san:.3f}")
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += _replicate_lines(long, scorer)
    lines.append("Bold: the best scorer for that pair. `train vs test`: held-out training images against "
                 "test images of the same dataset (near 0.5 when the detector does not overfit).")
    return "\n".join(lines) + "\n"


# what the aggregate reads of vsgm sample's and vsgm quality's JSON files
SAMPLE_FIELDS = {"sampler": str, "nfe": float, "seconds": float, "samples_per_s": float, "num_samples": int}
QUALITY_FIELDS = {"sampler": str, "fd": float, "dataset": (str, type(None))}


REAL_ROW = "real (train vs test)"


def _quality_columns(q: dict, suffix: str = "") -> dict:
    """The metrics (with their intervals) of a quality JSON, ``suffix`` picking the real-vs-real copies."""
    return {f"{m}{b}": q.get(f"{m}{b}{suffix}") for m in METRICS for b in ("", "_lo", "_hi")}


def _replicate_lines(long: pd.DataFrame, scorer: str) -> list[str]:
    """Markdown lines: the mean +- sd of one scorer's AUROC over replicates (none with one replicate)."""
    if "replicates" not in long or long["replicates"].max() < 2:
        return []
    sub = long[(long["scorer"] == scorer) & (long["comparison"] == OOD)].assign(model=lambda d: d["model"].map(base_of))
    sub = sub.drop_duplicates(["model", "out"])
    cell = sub["auroc_rep_mean"].map("{:.3f}".format) + " ± " + sub["auroc_rep_sd"].map("{:.3f}".format)
    mat = sub.assign(cell=cell).pivot(index="model", columns="out", values="cell").sort_index().sort_index(axis=1)
    n = int(long["replicates"].max())
    lines = [f"Mean ± sd over {n} replicates:", "", "| in \\ out | " + " | ".join(mat.columns) + " |",
             "|" + "---|" * (len(mat.columns) + 1)]
    lines += [f"| {model} | " + " | ".join(row.fillna("")) + " |" for model, row in mat.iterrows()]
    return lines + [""]


def solvers_table(sample_jsons: Iterable[str | Path], quality_jsons: Iterable[str | Path] = (),
                  paired_csvs: Iterable[str | Path] = ()) -> pd.DataFrame:
    """One row per (model, sampler): NFE, seconds, samples/s and the sample-quality metrics with their 95%
    intervals (FD, KID, precision, recall in the feature classifier's space; FID where Inception weights
    were on disk), plus one ``real (train vs test)`` row per model: the same metrics for as many real
    training images as samples, the floor a perfect sampler would reach. With the models' paired tables
    (vsgm.paired_quality), each row also gets, per metric, its difference to the model's best sampler with
    the paired 95% interval (``{metric}_vs``, ``_diff``, ``_diff_lo``, ``_diff_hi``, ``_distinct``)."""
    quality = {}
    for q in quality_jsons:
        d = read_json(q, QUALITY_FIELDS)
        quality[(d.get("model") or d["dataset"], d["sampler"])] = d
    rows, reals = [], {}
    for p in sample_jsons:
        d = read_json(p, SAMPLE_FIELDS)
        model = d.get("model") or d.get("dataset")
        q = quality.get((model, d["sampler"]), {})
        rows.append({"model": model, "sampler": d["sampler"], "solver": d.get("solver"),
                     "grid": d.get("grid"), "denoise": d.get("denoise", False), "nfe": d["nfe"],
                     "seconds": d["seconds"], "samples_per_s": d["samples_per_s"], "num_samples": d["num_samples"],
                     **_quality_columns(q), **{k: q.get(k) for k in FID_KEYS}})
        if q.get("fd_test_vs_train") is not None and model not in reals:
            reals[model] = {"model": model, "sampler": REAL_ROW, "num_samples": d["num_samples"],
                            **_quality_columns(q, "_test_vs_train"),
                            **{k: q.get(f"{k}_test_vs_train") for k in FID_KEYS}}
    table = pd.DataFrame(rows).sort_values(["model", "nfe", "sampler"])
    if reals:
        table = pd.concat([table, pd.DataFrame(list(reals.values()))])
    table = table.sort_values(["model"], kind="stable").reset_index(drop=True)
    paired = [_read_paired_csv(p) for p in paired_csvs]
    if paired:
        diffs = pd.concat(paired, ignore_index=True)[["model", "sampler", *PAIRED_DIFF_COLUMNS]]
        table = table.merge(diffs, on=["model", "sampler"], how="left", validate="one_to_one")
    return table


PAIRED_DIFF_COLUMNS = [f"{m}{part}" for m in METRICS for part in DIFF_PARTS]


def _read_paired_csv(path: str | Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({err})") from None
    missing = [c for c in ["model", "sampler", *PAIRED_DIFF_COLUMNS] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: not a paired comparison of vsgm.paired_quality (no column(s) {missing[:5]})")
    return df


def with_replicate_spread(table: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    """Add ``{value}_rep_mean``, ``{value}_rep_sd`` and ``replicates`` to every row: the mean and standard
    deviation of the value over the replicates of the row's model (rows that agree on ``by``, with
    replicate names mapped to their model's; sd NaN for a single replicate).

    Args:
        table: rows with a ``model`` column (replicate names such as ``digits-r1``).
        by: the other columns that identify a row within a model (``out``-like names are mapped too).
        values: the columns to summarise.

    Returns:
        A copy of the table with the added columns.
    """
    keys = [table[c] if pd.api.types.is_numeric_dtype(table[c]) else table[c].map(base_of) for c in ["model", *by]]
    groups = table.groupby(keys, dropna=False, sort=False)
    out = table.copy()
    for v in values:
        out[f"{v}_rep_mean"] = groups[v].transform("mean")
        out[f"{v}_rep_sd"] = groups[v].transform("std")
    out["replicates"] = groups["model"].transform("count")
    return out
