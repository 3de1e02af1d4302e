"""Out-of-distribution detection metrics and the Frechet distance.

Convention throughout: a **higher score means "more out-of-distribution"**.
OOD samples are the positive class for AUROC/AUPR-out; in-distribution (IN)
samples are the positive class for AUPR-in and FPR@95%TPR.

An AUROC below 0.5 is reported as is, never flipped: it means the scorer
ranks OOD data as *more* in-distribution than the training data, which is a
finding (the classic likelihood failure), not a sign error to hide.

Invalid input (empty arrays, non-finite scores, wrong shapes) raises
``ValueError`` with a message naming the problem; values are never dropped
silently.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score

from .options import option

AUROC_N_BOOT = option("n_boot", "pair").default  # one default: vsgm.options

__all__ = [
    "auroc",
    "aupr_in",
    "aupr_out",
    "fpr_at_tpr",
    "bootstrap_auroc_ci",
    "ood_metrics",
    "frechet_distance",
]

# Bound on the number of float64 cells held at once by the bootstrap (~80 MB).
_BOOT_CELLS = 10_000_000


# --------------------------------------------------------------------------- validation


def _as_scores(x: ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` as a 1-D float64 array, raising ValueError if empty or non-finite."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of scores, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one score")
    n_bad = int(np.count_nonzero(~np.isfinite(arr)))
    if n_bad:
        raise ValueError(
            f"{name} contains {n_bad} non-finite value(s) (NaN/inf) out of {arr.size}; "
            "refusing to drop them silently"
        )
    return arr


def _pair(scores_in: ArrayLike, scores_out: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    return _as_scores(scores_in, "scores_in"), _as_scores(scores_out, "scores_out")


# --------------------------------------------------------------------------- point metrics


def auroc(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Area under the ROC curve with OOD as the positive class.

    Computed as the Mann-Whitney U statistic with mid-ranks, i.e.
    ``P(out > in) + 0.5 * P(out == in)`` over all (in, out) pairs; this equals
    ``sklearn.metrics.roc_auc_score`` with ties counted half. Values below 0.5
    are returned unchanged.

    Args:
        scores_in: 1-D scores of in-distribution samples.
        scores_out: 1-D scores of OOD samples.

    Returns:
        AUROC in [0, 1].
    """
    s_in, s_out = _pair(scores_in, scores_out)
    return _auroc_unchecked(s_in, s_out)


def _auroc_unchecked(s_in: np.ndarray, s_out: np.ndarray) -> float:
    n_in, n_out = s_in.size, s_out.size
    ranks = rankdata(np.concatenate([s_in, s_out]), method="average")
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))


def aupr_in(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Average precision with in-distribution as the positive class.

    Scores are negated so that "more in-distribution" ranks first; uses
    ``sklearn.metrics.average_precision_score`` (step-wise, no interpolation).

    Args:
        scores_in: 1-D scores of in-distribution samples (positives).
        scores_out: 1-D scores of OOD samples (negatives).

    Returns:
        AUPR-in in [0, 1]; a random scorer gets about n_in / (n_in + n_out).
    """
    s_in, s_out = _pair(scores_in, scores_out)
    labels = np.concatenate([np.ones(s_in.size), np.zeros(s_out.size)])
    return float(average_precision_score(labels, -np.concatenate([s_in, s_out])))


def aupr_out(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Average precision with OOD as the positive class (scores used as they are).

    Args:
        scores_in: 1-D scores of in-distribution samples (negatives).
        scores_out: 1-D scores of OOD samples (positives).

    Returns:
        AUPR-out in [0, 1]; a random scorer gets about n_out / (n_in + n_out).
    """
    s_in, s_out = _pair(scores_in, scores_out)
    labels = np.concatenate([np.zeros(s_in.size), np.ones(s_out.size)])
    return float(average_precision_score(labels, np.concatenate([s_in, s_out])))


def fpr_at_tpr(scores_in: ArrayLike, scores_out: ArrayLike, tpr: float = 0.95) -> float:
    """False-positive rate of OOD samples at a given in-distribution true-positive rate.

    Standard OOD definition (Hendrycks & Gimpel 2017; Liang et al. 2018):
    in-distribution is the positive class and a sample is *accepted* as
    in-distribution when ``score <= t``. The threshold ``t`` is the
    **smallest** value such that at least a fraction ``tpr`` of the IN samples
    is accepted, i.e. ``mean(scores_in <= t) >= tpr``. That is exactly the
    k-th smallest IN score with ``k = ceil(tpr * n_in)`` (ties among IN scores
    can only raise the accepted fraction above ``tpr``, never below). The
    result is the fraction of OOD samples that are also accepted,
    ``mean(scores_out <= t)``; OOD scores tied with ``t`` count as accepted.

    Args:
        scores_in: 1-D scores of in-distribution samples.
        scores_out: 1-D scores of OOD samples.
        tpr: target true-positive rate on IN samples, in (0, 1].

    Returns:
        FPR in [0, 1] (lower is better).
    """
    s_in, s_out = _pair(scores_in, scores_out)
    if not (0.0 < tpr <= 1.0):
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    # The tiny tolerance keeps e.g. 0.95 * 20 = 18.999... from becoming k = 20 or
    # 19.000...4 from becoming k = 20; exact products are unaffected.
    k = max(1, math.ceil(tpr * s_in.size - 1e-9))
    threshold = np.partition(s_in, k - 1)[k - 1]
    return float(np.count_nonzero(s_out <= threshold) / s_out.size)


# --------------------------------------------------------------------------- bootstrap


def _resample_counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """(n_boot, n) counts of how often each element is drawn in each resample of size n."""
    idx = rng.integers(0, n, size=(n_boot, n))
    flat = idx + (np.arange(n_boot) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _batched_auroc(
    s_in_sorted: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    order_in: np.ndarray,
    w_in: np.ndarray,
    w_out: np.ndarray,
) -> np.ndarray:
    """AUROC of a batch of weighted resamples.

    For each resample b, with in-weights ``w_in[b]`` (multiplicities) and
    out-weights ``w_out[b]``::

        AUROC_b = sum_j w_out[b, j] * (W_in(< out_j) + 0.5 * W_in(== out_j)) / (n_in * n_out)

    where ``W_in(< x)`` is the total in-weight strictly below x. The strict and
    tied weights come from a cumulative sum over the sorted IN scores and the
    precomputed ``searchsorted`` positions ``left``/``right`` of each OOD score.
    """
    cum = np.zeros((w_in.shape[0], s_in_sorted.size + 1))
    np.cumsum(w_in[:, order_in], axis=1, out=cum[:, 1:])
    below = cum[:, left]
    tied = cum[:, right] - below
    n_in, n_out = s_in_sorted.size, left.size
    return np.einsum("bj,bj->b", w_out, below + 0.5 * tied) / (n_in * n_out)


def bootstrap_auroc_ci(
    scores_in: ArrayLike,
    scores_out: ArrayLike,
    n_boot: int = AUROC_N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the AUROC.

    Each group is resampled independently with replacement (stratified
    bootstrap, group sizes kept) using ``numpy.random.default_rng(seed)``.
    All resamples are evaluated at once with a rank-based (Mann-Whitney,
    ties count half) AUROC, so 1000 resamples of 2 x 2000 scores take a
    fraction of a second.

    Args:
        scores_in: 1-D scores of in-distribution samples.
        scores_out: 1-D scores of OOD samples.
        n_boot: number of bootstrap resamples (>= 1).
        level: two-sided confidence level in (0, 1).
        seed: seed of the numpy Generator; same seed, same interval.

    Returns:
        ``(lo, hi)``, the ``(1-level)/2`` and ``(1+level)/2`` quantiles of the
        bootstrap AUROC distribution.
    """
    s_in, s_out = _pair(scores_in, scores_out)
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level}")
    n_boot = int(n_boot)
    rng = np.random.default_rng(seed)

    order_in = np.argsort(s_in, kind="stable")
    s_in_sorted = s_in[order_in]
    left = np.searchsorted(s_in_sorted, s_out, side="left")
    right = np.searchsorted(s_in_sorted, s_out, side="right")

    chunk = max(1, _BOOT_CELLS // (2 * (s_in.size + s_out.size + 1)))
    aurocs = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        w_in = _resample_counts(rng, s_in.size, b)
        w_out = _resample_counts(rng, s_out.size, b)
        aurocs[start : start + b] = _batched_auroc(s_in_sorted, left, right, order_in, w_in, w_out)

    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(aurocs, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


# --------------------------------------------------------------------------- summary


def ood_metrics(
    scores_in: ArrayLike,
    scores_out: ArrayLike,
    n_boot: int = AUROC_N_BOOT,
    seed: int = 0,
) -> dict[str, float | int]:
    """All OOD metrics for one (scorer, in-dataset, OOD-dataset) triple.

    Args:
        scores_in: 1-D scores of in-distribution samples (higher = more OOD).
        scores_out: 1-D scores of OOD samples.
        n_boot: bootstrap resamples for the AUROC confidence interval.
        seed: seed of the bootstrap.

    Returns:
        Dict with plain-Python values (JSON-serialisable): ``auroc``,
        ``auroc_lo``, ``auroc_hi`` (95% percentile bootstrap), ``aupr_in``,
        ``aupr_out``, ``fpr95`` (FPR at 95% TPR), ``n_in``, ``n_out``.

    Raises:
        ValueError: empty inputs or non-finite scores (the message names how many).
    """
    s_in, s_out = _pair(scores_in, scores_out)
    lo, hi = bootstrap_auroc_ci(s_in, s_out, n_boot=n_boot, level=0.95, seed=seed)
    return {
        "auroc": _auroc_unchecked(s_in, s_out),
        "auroc_lo": lo,
        "auroc_hi": hi,
        "aupr_in": aupr_in(s_in, s_out),
        "aupr_out": aupr_out(s_in, s_out),
        "fpr95": fpr_at_tpr(s_in, s_out, tpr=0.95),
        "n_in": int(s_in.size),
        "n_out": int(s_out.size),
    }


# --------------------------------------------------------------------------- Frechet distance


def _as_features(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) feature matrix, got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows to estimate a covariance, got {arr.shape[0]}")
    n_bad = int(np.count_nonzero(~np.isfinite(arr)))
    if n_bad:
        raise ValueError(f"{name} contains {n_bad} non-finite value(s) (NaN/inf) out of {arr.size}")
    return arr


def _sqrt_psd(mat: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigh route)."""
    vals, vecs = np.linalg.eigh((mat + mat.T) / 2.0)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike) -> float:
    """Frechet distance between Gaussians fitted to two feature matrices.

    ``||mu_a - mu_b||^2 + Tr(C_a + C_b - 2 (C_a C_b)^{1/2})`` with unbiased
    (ddof=1) covariances, in float64. The trace of the matrix square root is
    computed stably as ``sum(sqrt(eig(C_a^{1/2} C_b C_a^{1/2})))``: that matrix
    is symmetric PSD and similar to ``C_a C_b``, so its eigenvalues are real
    and non-negative (tiny negatives from rounding are clipped). A slightly
    negative total from rounding is clamped to 0; identical inputs give
    exactly 0.

    Args:
        feats_a: (N_a, D) features.
        feats_b: (N_b, D) features, same D.

    Returns:
        The (squared-units) Frechet distance, >= 0.
    """
    a = _as_features(feats_a, "feats_a")
    b = _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    if np.array_equal(mu_a, mu_b) and np.array_equal(cov_a, cov_b):
        return 0.0
    sqrt_a = _sqrt_psd(cov_a)
    m = sqrt_a @ cov_b @ sqrt_a
    eig = np.linalg.eigvalsh((m + m.T) / 2.0)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu_a - mu_b
    fd = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)
    return max(fd, 0.0)
