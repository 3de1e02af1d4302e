"""Sample-quality metrics in a feature space, each with a 95% bootstrap interval.

- ``fd``: the Frechet distance (Gaussians fitted to both sets; biased upwards at small counts).
- ``kid``: the kernel inception distance of Binkowski et al. (ICLR 2018): the unbiased estimate of
  MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3; its expectation does not depend
  on the sample count, so it can be compared across counts, and it can be slightly negative.
- ``precision`` / ``recall``: improved precision and recall of Kynkaanniemi et al. (NeurIPS 2019):
  the fraction of samples inside the real manifold (the union of balls around each real feature
  reaching its k-th nearest real neighbour, k = 3), and the fraction of real features inside the
  samples' manifold.

The intervals resample both sets with replacement (the reference set is a sample too). Pairs of
copies of the same point are left out of the within-set terms (KID) and of the nearest-neighbour
radii (precision/recall), so a resample is not rewarded for its duplicates. Percentile intervals,
moved by the bootstrap's bias estimate (see ``_shifted_interval``).

``paired_comparison`` compares samplers of one model: each bootstrap draw resamples the real set once for
all of them, so the difference of two samplers, with its interval, is free of the real set's noise that
makes their marginal intervals overlap.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .metrics import frechet_distance
from .options import option

K_NEAREST = 3
N_BOOT = option("n_boot", "quality").default  # one default: vsgm.options
METRICS = ("fd", "kid", "precision", "recall")
# which direction is better, for tables and the solver decision
FRACTIONS = ("precision", "recall")
HIGHER_IS_BETTER = {"fd": False, "kid": False, "precision": True, "recall": True}
# what paired_comparison adds per metric: the sampler compared with, the difference, its interval, and whether
# the interval excludes 0
DIFF_PARTS = ("_vs", "_diff", "_diff_lo", "_diff_hi", "_distinct")


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for every pair of rows of a and b (float64)."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray, same_x: np.ndarray, same_y: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices; ``same_*`` marks the pairs left out of the within-set means."""
    keep_x, keep_y = ~same_x, ~same_y
    return float(k_xx[keep_x].mean() + k_yy[keep_y].mean() - 2.0 * k_xy.mean())


def kid(fake: np.ndarray, real: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel between two feature sets (>= 2 rows each).

    Args:
        fake: (n, d) features of samples.
        real: (m, d) features of real images.

    Returns:
        The KID (about 0 for sets from one distribution; may be slightly negative).
    """
    fake, real = _check(fake, real)
    return _mmd2(polynomial_kernel(fake, fake), polynomial_kernel(real, real), polynomial_kernel(fake, real),
                 np.eye(len(fake), dtype=bool), np.eye(len(real), dtype=bool))


def _kth_radius(dist: np.ndarray, same: np.ndarray, k: int) -> np.ndarray:
    """Each row's distance to its k-th nearest other point (copies of the point itself left out)."""
    d = np.where(same, np.inf, dist)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def _coverage(dist_to_ref: np.ndarray, radii: np.ndarray) -> float:
    """Fraction of query rows inside at least one reference ball (dist_to_ref: queries x references)."""
    return float((dist_to_ref <= radii[None, :]).any(axis=1).mean())


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def precision_recall(fake: np.ndarray, real: np.ndarray, k: int = K_NEAREST) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-th nearest-neighbour balls.

    Returns:
        (precision: samples inside the real manifold, recall: real features inside the samples' manifold)
    """
    fake, real = _check(fake, real, at_least=k + 1)
    m = _Matrices(fake, real)
    return m.precision_recall(np.arange(len(fake)), np.arange(len(real)), k)


class _Matrices:
    """Kernel and distance matrices of two sets, computed once; every resample indexes into them."""

    def __init__(self, fake: np.ndarray, real: np.ndarray):
        self.fake, self.real = fake, real
        self.k_ff, self.k_rr, self.k_fr = (polynomial_kernel(fake, fake), polynomial_kernel(real, real),
                                           polynomial_kernel(fake, real))
        self.d_ff, self.d_rr, self.d_fr = _pairwise(fake, fake), _pairwise(real, real), _pairwise(fake, real)

    def kid(self, i: np.ndarray, j: np.ndarray) -> float:
        return _mmd2(self.k_ff[np.ix_(i, i)], self.k_rr[np.ix_(j, j)], self.k_fr[np.ix_(i, j)],
                     i[:, None] == i[None, :], j[:, None] == j[None, :])

    def precision_recall(self, i: np.ndarray, j: np.ndarray, k: int) -> tuple[float, float]:
        r_real = _kth_radius(self.d_rr[np.ix_(j, j)], j[:, None] == j[None, :], k)
        r_fake = _kth_radius(self.d_ff[np.ix_(i, i)], i[:, None] == i[None, :], k)
        d_fr = self.d_fr[np.ix_(i, j)]
        return _coverage(d_fr, r_real), _coverage(d_fr.T, r_fake)

    def all(self, i: np.ndarray, j: np.ndarray, k: int) -> dict[str, float]:
        precision, recall = self.precision_recall(i, j, k)
        return {"fd": frechet_distance(self.fake[i], self.real[j]), "kid": self.kid(i, j),
                "precision": precision, "recall": recall}


def _check(fake, real, at_least: int = 2) -> tuple[np.ndarray, np.ndarray]:
    fake, real = np.asarray(fake, dtype=np.float64), np.asarray(real, dtype=np.float64)
    if fake.ndim != 2 or real.ndim != 2 or fake.shape[1] != real.shape[1]:
        raise ValueError(f"features must be (n, d) matrices of one d, got {fake.shape} and {real.shape}")
    if min(len(fake), len(real)) < at_least:
        raise ValueError(f"need at least {at_least} features per set, got {len(fake)} and {len(real)}")
    return fake, real


def quality_metrics(fake: np.ndarray, real: np.ndarray, n_boot: int = N_BOOT, k: int = K_NEAREST,
                    seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """FD, KID, precision and recall of samples against real features, each with a bootstrap interval.

    Args:
        fake: (n, d) features of samples.
        real: (m, d) features of real images.
        n_boot: bootstrap resamples (0: no interval).
        k: nearest neighbour of the precision/recall radii.
        seed: bootstrap seed.
        level: coverage of the percentile interval.

    Returns:
        ``{metric: value, metric_lo: ..., metric_hi: ...}`` for metric in METRICS (bounds NaN without n_boot).
    """
    fake, real = _check(fake, real, at_least=k + 1)
    mats = _Matrices(fake, real)
    point = mats.all(np.arange(len(fake)), np.arange(len(real)), k)
    rng = np.random.default_rng(seed)
    boots = [mats.all(rng.integers(0, len(fake), len(fake)), rng.integers(0, len(real), len(real)), k)
             for _ in range(n_boot)]
    out: dict[str, float] = {}
    for name in METRICS:
        lo, hi = _shifted_interval(np.array([b[name] for b in boots]), point[name], level) if n_boot else (np.nan,) * 2
        if name in FRACTIONS:  # the shift can cross the bounds of a fraction
            lo, hi = max(lo, 0.0), min(hi, 1.0)
        out.update({name: point[name], f"{name}_lo": lo, f"{name}_hi": hi})
    return out


def _shifted_interval(values: np.ndarray, point: float, level: float) -> tuple[float, float]:
    """The percentile interval of bootstrap values, moved by the bootstrap's estimate of the bias (their mean
    minus the point estimate). The FD of a resample is biased upwards by its duplicates (fewer distinct
    points): unshifted, the interval of two samples of one distribution lay wholly above their FD. KID,
    precision and recall, which leave duplicate pairs out, have a bias estimate near 0 and barely move."""
    bias = values.mean() - point
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2]) - bias
    return float(lo), float(hi)



def _candidates(samples: dict, reference: str | None, best_of: Iterable[str] | None) -> list[str]:
    """The samplers the best one is picked from, after checking the names."""
    if not samples:
        raise ValueError("no samplers to compare")
    if reference is not None and reference not in samples:
        raise ValueError(f"reference sampler {reference!r} is not one of {sorted(samples)}")
    candidates = list(samples) if best_of is None else [name for name in best_of if name in samples]
    if not candidates:
        raise ValueError(f"none of the samplers {sorted(best_of or [])} to pick the best of is among {sorted(samples)}")
    return candidates


def paired_comparison(real: np.ndarray, samples: dict[str, np.ndarray], reference: str | None = None,
                      n_boot: int = N_BOOT, k: int = K_NEAREST, seed: int = 0, level: float = 0.95,
                      best_of: Iterable[str] | None = None) -> dict[str, dict[str, object]]:
    """Every metric of several samplers against one real set, and each sampler's difference to a reference
    sampler with a paired bootstrap interval.

    Each bootstrap draw resamples the real set once and every sampler's set on its own, and evaluates all
    samplers against that one resample of the real set. A difference of two samplers on one draw then
    carries no noise of the real set (it is shared): samplers whose marginal intervals overlap, because the
    real set is small, can still be told apart.

    Args:
        real: (m, d) features of real images (the reference set).
        samples: sampler name -> (n, d) features of its samples (counts may differ).
        reference: the sampler every other is compared with; None: per metric, the best one by its point
            estimate (lowest FD/KID, highest precision/recall).
        n_boot: bootstrap draws (0: no intervals).
        k, seed, level: as :func:`quality_metrics`.
        best_of: the samplers the best one is picked from (default all; e.g. all but a set of real images
            compared alongside, whose difference to the best sampler says whether that one is told from data).

    Returns:
        sampler -> ``{metric, metric_lo, metric_hi}`` (marginal, as :func:`quality_metrics`) and
        ``{metric}_vs`` (the sampler compared with), ``{metric}_diff`` (this sampler minus that one),
        ``{metric}_diff_lo``, ``{metric}_diff_hi`` (the paired interval) and ``{metric}_distinct`` (the
        interval excludes 0) for metric in METRICS.
    """
    candidates = _candidates(samples, reference, best_of)
    checked = {name: _check(feats, real, at_least=k + 1) for name, feats in samples.items()}
    real = next(iter(checked.values()))[1]
    mats = {name: _Matrices(fake, real) for name, (fake, _) in checked.items()}
    point = {name: m.all(np.arange(len(m.fake)), np.arange(len(real)), k) for name, m in mats.items()}
    rng = np.random.default_rng(seed)
    boots: dict[str, list[dict[str, float]]] = {name: [] for name in mats}
    for _ in range(n_boot):
        j = rng.integers(0, len(real), len(real))  # one resample of the real set for every sampler
        for name, m in mats.items():
            boots[name].append(m.all(rng.integers(0, len(m.fake), len(m.fake)), j, k))
    out: dict[str, dict[str, object]] = {name: {} for name in mats}
    for metric in METRICS:
        draws = {name: np.array([b[metric] for b in boots[name]]) for name in mats}
        pick = max if HIGHER_IS_BETTER[metric] else min
        vs = reference if reference is not None else pick(candidates, key=lambda name: point[name][metric])
        for name in mats:
            value, diff = point[name][metric], point[name][metric] - point[vs][metric]
            if n_boot:
                lo, hi = _shifted_interval(draws[name], value, level)
                if metric in FRACTIONS:
                    lo, hi = max(lo, 0.0), min(hi, 1.0)
                d_lo, d_hi = _shifted_interval(draws[name] - draws[vs], diff, level) if name != vs else (0.0, 0.0)
            else:
                lo = hi = d_lo = d_hi = np.nan
            out[name].update({metric: value, f"{metric}_lo": lo, f"{metric}_hi": hi, f"{metric}_vs": vs,
                              f"{metric}_diff": diff, f"{metric}_diff_lo": d_lo, f"{metric}_diff_hi": d_hi,
                              f"{metric}_distinct": bool(d_lo > 0 or d_hi < 0)})
    return out
