"""Sampler efficiency: sample quality against cost for every sampler over a range of steps/tolerances.

For each sampler the sweep draws the same number of samples at several settings
(fixed-step samplers: ``steps``; adaptive ODE solvers: ``tolerances``) and records
NFE, seconds and the quality metrics of :mod:`vsgm.quality_metrics` (FD, KID, precision,
recall, each with its 95% bootstrap interval) in the feature classifier's space. From it,
``cost_to_quality`` reads, per metric, the NFE each sampler needs before its interval
overlaps the interval of the quality the samplers converge to: the question "how many
evaluations for this quality", asked on a trained model rather than on the Gaussian oracle.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .models import TrainedModel
from .progress import progress
from .quality import SmallClassifier, classifier_features
from .quality_metrics import HIGHER_IS_BETTER, METRICS, N_BOOT, quality_metrics
from .samplers import SamplerSettings, method, parse_sampler
from .sample_batches import draw


def sweep(model: TrainedModel, classifier: SmallClassifier, reference: torch.Tensor, samplers: Sequence[str],
          steps: Sequence[int], tolerances: Sequence[float], num_samples: int, batch_size: int, seed: int = 0,
          device: str = "cpu", model_name: str | None = None, denoise: bool = False,
          n_boot: int = N_BOOT) -> pd.DataFrame:
    """Quality and cost of every (sampler, setting).

    Args:
        model: a trained model.
        classifier: the feature classifier of the model's dataset.
        reference: in-distribution test images in [-1, 1].
        samplers: sampler names.
        steps: num_steps values for em, pc and fixed-step ODE solvers.
        tolerances: atol = rtol values for adaptive ODE solvers.
        num_samples, batch_size, seed: as for ``vsgm sample``.
        device: where to sample.
        model_name: the model's key in the tables (default: its dataset).
        denoise: end every sampler with the Tweedie denoising step.
        n_boot: bootstrap resamples of the metrics' intervals.

    Returns:
        One row per (sampler, setting): sampler, solver, grid, num_steps, tol, denoise, nfe, seconds, and
        each metric with its ``_lo`` and ``_hi`` bounds (NaN where the samples are not finite).
    """
    ref_feats = classifier_features(classifier, reference).double().numpy()
    rows = []
    base = SamplerSettings(eps=model.options["eps"], denoise=denoise)
    # each sampler over the setting it varies (num_steps, or atol = rtol of the adaptive ones), fixed-step ones first
    runs = [(name, n, None) for name in samplers if not method(name).adaptive for n in steps]
    runs += [(name, None, tol) for name in samplers if method(name).adaptive for tol in tolerances]
    for name, n, tol in progress(runs, desc="sweep", unit="settings"):
        spec = parse_sampler(name)
        settings = method(spec).vary(base, tol if method(spec).adaptive else n)
        samples, cost = draw(model, spec, num_samples, batch_size, settings, seed=seed, device=device, finite=False)
        quality = {f"{m}{b}": np.nan for m in METRICS for b in ("", "_lo", "_hi")}
        if torch.isfinite(samples).all():
            feats = classifier_features(classifier, samples).double().numpy()
            quality = quality_metrics(feats, ref_feats, n_boot=n_boot, seed=seed)
        rows.append({"model": model_name or model.meta.get("dataset"), "sampler": name, "solver": cost["solver"],
                     "grid": cost["grid"], "num_steps": n, "tol": tol, "denoise": denoise, "nfe": cost["nfe"],
                     "seconds": cost["seconds"], **quality})
    return pd.DataFrame(rows)


def _converged(group: pd.DataFrame, metric: str) -> pd.Series | None:
    """The converged quality of one model for one metric: among the samplers' costliest settings (a diverged
    one, NaN, left out), the one with the median value. (Not the best one: at a few hundred samples the
    converged samplers scatter, and the luckiest would set a bar the others meet only by chance.)"""
    last = group.sort_values("nfe").groupby("sampler").tail(1).dropna(subset=[metric])
    if last.empty:
        return None
    return last.sort_values(metric).iloc[(len(last) - 1) // 2]


def _overlaps(rows: pd.DataFrame, metric: str, target: pd.Series | None) -> pd.Series:
    """Whether each row's interval of ``metric`` overlaps the target's."""
    if target is None:
        return pd.Series(False, index=rows.index)
    return (rows[f"{metric}_lo"] <= target[f"{metric}_hi"]) & (rows[f"{metric}_hi"] >= target[f"{metric}_lo"])


def cost_to_quality(table: pd.DataFrame) -> pd.DataFrame:
    """Per model, metric and sampler, the cheapest setting whose 95% interval overlaps the interval of the
    converged quality (see ``_converged``), and under metric ``all`` the cheapest setting where every metric's
    does. A sampler that never gets there has NaN cost (its ``value`` is then its best one).

    Returns:
        model, metric, sampler, target, target_lo, target_hi, target_sampler, nfe, seconds, num_steps, tol,
        value, lo, hi.
    """
    out = []
    for model, group in table.groupby("model"):
        metrics = [m for m in METRICS if {m, f"{m}_lo", f"{m}_hi"} <= set(group.columns)]
        targets = {m: _converged(group, m) for m in metrics}
        reached = pd.DataFrame({m: _overlaps(group, m, targets[m]) for m in metrics}, index=group.index)
        reached["all"] = reached.all(axis=1)
        for sampler, rows in group.groupby("sampler", sort=False):
            for metric in [*metrics, "all"]:
                out.append({"model": model, "metric": metric, "sampler": sampler,
                            **_reach_row(rows, reached.loc[rows.index, metric], metric, targets.get(metric))})
    return pd.DataFrame(out).sort_values(["model", "metric", "nfe"]).reset_index(drop=True)


def _reach_row(rows: pd.DataFrame, ok: pd.Series, metric: str, target: pd.Series | None) -> dict:
    """One row of cost_to_quality: the target and the cheapest setting of one sampler that reaches it."""
    best = rows[ok].sort_values("nfe").iloc[0] if ok.any() else None
    row = {"target": np.nan, "target_lo": np.nan, "target_hi": np.nan, "target_sampler": None}
    if target is not None:
        row.update(target=target[metric], target_lo=target[f"{metric}_lo"], target_hi=target[f"{metric}_hi"],
                   target_sampler=target["sampler"])
    for key in ("nfe", "seconds", "num_steps", "tol"):
        row[key] = best[key] if best is not None else np.nan
    if metric in rows:
        pick = best if best is not None else rows.sort_values(metric, ascending=not HIGHER_IS_BETTER[metric]).iloc[0]
        row.update(value=pick[metric], lo=pick[f"{metric}_lo"], hi=pick[f"{metric}_hi"])
    return row
