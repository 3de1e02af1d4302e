"""Sampler efficiency: sample quality against cost for every sampler over a range of steps/tolerances.

For each sampler the sweep draws the same number of samples at several settings
(fixed-step samplers: ``steps``; adaptive ODE solvers: ``tolerances``) and records
NFE, seconds and the Frechet distance in the feature classifier's space. From it,
``cost_to_quality`` reads the NFE each sampler needs to come within a margin of the
quality the samplers converge to: the question "how many evaluations for this
quality", asked on a trained model rather than on the Gaussian oracle.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .models import TrainedModel
from .progress import progress
from .quality import SmallClassifier, features
from .metrics import frechet_distance
from .samplers import parse_sampler
from .sampling import draw


def sweep(model: TrainedModel, classifier: SmallClassifier, reference: torch.Tensor, samplers: Sequence[str],
          steps: Sequence[int], tolerances: Sequence[float], num_samples: int, batch_size: int, seed: int = 0,
          device: str = "cpu", model_name: str | None = None) -> pd.DataFrame:
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

    Returns:
        One row per (sampler, setting): sampler, solver, grid, num_steps, tol, nfe, seconds, fd.
    """
    ref_feats = features(classifier, reference).double().numpy()
    rows = []
    settings = [(name, n, None) for name in samplers if not _adaptive(name) for n in steps]
    settings += [(name, None, tol) for name in samplers if _adaptive(name) for tol in tolerances]
    for name, n, tol in progress(settings, desc="sweep", unit="settings"):
        spec = parse_sampler(name)
        samples, cost = draw(model, spec, num_samples, batch_size, num_steps=n or 1, eps=model.options["eps"],
                             atol=tol or 1e-6, rtol=tol or 1e-6, seed=seed, device=device, finite=False)
        fd = np.nan
        if torch.isfinite(samples).all():
            fd = frechet_distance(features(classifier, samples).double().numpy(), ref_feats)
        rows.append({"model": model_name or model.meta.get("dataset"), "sampler": name, "solver": cost["solver"],
                     "grid": cost["grid"], "num_steps": n, "tol": tol, "nfe": cost["nfe"],
                     "seconds": cost["seconds"], "fd": fd})
    return pd.DataFrame(rows)


def _adaptive(name: str) -> bool:
    spec = parse_sampler(name)
    return spec.kind == "ode" and spec.solver.adaptive


def cost_to_quality(table: pd.DataFrame, margin: float = 0.1) -> pd.DataFrame:
    """Per sampler, the cheapest setting whose FD is within ``margin`` (relative) of the converged quality:
    the median over samplers of the FD at each one's costliest setting. (The best single FD is no target:
    with a few hundred samples the FD of converged samplers scatters by tens of percent, and the luckiest
    one would set a bar the others only meet by chance.) A sampler whose costliest setting diverged (FD NaN)
    has no converged quality and stays out of the median. Samplers that never get there have NaN cost.

    Returns:
        model, sampler, target_fd, nfe, seconds, num_steps, tol, fd.
    """
    out = []
    for model, group in table.groupby("model"):
        converged = group.sort_values("nfe").groupby("sampler")["fd"].nth(-1)  # NaN stays NaN
        target = converged.median() * (1 + margin)
        for sampler, rows in group.groupby("sampler", sort=False):
            ok = rows[rows["fd"] <= target].sort_values("nfe")
            best = ok.iloc[0] if len(ok) else None
            out.append({"model": model, "sampler": sampler, "target_fd": target,
                        "nfe": best["nfe"] if best is not None else np.nan,
                        "seconds": best["seconds"] if best is not None else np.nan,
                        "num_steps": best["num_steps"] if best is not None else np.nan,
                        "tol": best["tol"] if best is not None else np.nan,
                        "fd": best["fd"] if best is not None else rows["fd"].min()})
    return pd.DataFrame(out).sort_values(["model", "nfe"]).reset_index(drop=True)
