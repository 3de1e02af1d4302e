"""Tests of vsgm.metrics against sklearn, hand-worked examples and closed forms."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.linalg import sqrtm
from sklearn.metrics import average_precision_score, roc_auc_score

from vsgm.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    bootstrap_auroc_ci,
    fpr_at_tpr,
    frechet_distance,
    ood_metrics,
)


def _labels(n_in: int, n_out: int) -> np.ndarray:
    return np.concatenate([np.zeros(n_in), np.ones(n_out)])


def _cases() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(123)
    continuous = (rng.normal(0, 1, 300), rng.normal(0.7, 1.3, 200))
    heavy_ties = (rng.integers(0, 4, 250).astype(float), rng.integers(1, 5, 180).astype(float))
    binary = (rng.integers(0, 2, 50).astype(float), rng.integers(0, 2, 70).astype(float))
    inverted = (rng.normal(1.0, 1, 100), rng.normal(0.0, 1, 100))  # AUROC < 0.5
    return [continuous, heavy_ties, binary, inverted]


CASES = _cases()


# --------------------------------------------------------------------------- AUROC / AUPR


@pytest.mark.parametrize("s_in,s_out", CASES)
def test_auroc_matches_sklearn(s_in, s_out):
    expected = roc_auc_score(_labels(s_in.size, s_out.size), np.concatenate([s_in, s_out]))
    assert auroc(s_in, s_out) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("s_in,s_out", CASES)
def test_aupr_matches_sklearn(s_in, s_out):
    scores = np.concatenate([s_in, s_out])
    y_out = _labels(s_in.size, s_out.size)
    assert aupr_out(s_in, s_out) == pytest.approx(average_precision_score(y_out, scores), abs=1e-12)
    assert aupr_in(s_in, s_out) == pytest.approx(average_precision_score(1 - y_out, -scores), abs=1e-12)


def test_auroc_ties_count_half():
    # every pair is tied -> 0.5; one strictly greater pair out of 4 plus 3 ties -> (1 + 1.5) / 4
    assert auroc([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert auroc([0.0, 1.0], [1.0, 1.0]) == pytest.approx((2 * 1 + 2 * 0.5) / 4)


def test_auroc_below_half_is_not_flipped():
    s_in, s_out = CASES[3]
    value = auroc(s_in, s_out)
    assert value < 0.5
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 0.0
    assert ood_metrics(s_in, s_out, n_boot=50)["auroc"] == pytest.approx(value)


# --------------------------------------------------------------------------- FPR at TPR


def test_fpr_at_tpr_hand_worked_with_ties():
    # IN  = 0, 1, ..., 16 (17 values) and 18, 18, 18 (three ties) -> n_in = 20.
    # Need at least 95% of 20 = 19 IN samples accepted (score <= t).
    #   t = 16 accepts 17/20 = 85%, t = 17 also 17/20 (no IN score at 17),
    #   t = 18 accepts 20/20 = 100% -> the smallest valid threshold is t = 18
    #   (the tie makes the achieved TPR 100%, not exactly 95%).
    # OOD = 5, 17, 18, 18, 19, 20, 25, 30: accepted (<= 18) are 5, 17, 18, 18
    #   -> FPR = 4 / 8 = 0.5 (OOD scores tied with t count as accepted).
    s_in = np.array(list(range(17)) + [18, 18, 18], dtype=float)
    s_out = np.array([5, 17, 18, 18, 19, 20, 25, 30], dtype=float)
    assert fpr_at_tpr(s_in, s_out) == 0.5
    # Without ties: IN = 0..19, t = 18 (19/20 accepted); OOD <= 18 are 5, 17, 18 -> 3/8.
    assert fpr_at_tpr(np.arange(20.0), [5, 17, 18, 18.5, 19, 20, 25, 30]) == 3 / 8
    # tpr = 1 -> t = max(IN) = 19, so 19 and below (5 of 8) are accepted.
    assert fpr_at_tpr(np.arange(20.0), [5, 17, 18, 18.5, 19, 20, 25, 30], tpr=1.0) == 5 / 8


def _fpr_brute_force(s_in: np.ndarray, s_out: np.ndarray, tpr: float) -> float:
    for t in np.sort(np.unique(s_in)):  # the smallest threshold reaching the TPR is an IN score
        if np.mean(s_in <= t) >= tpr - 1e-12:
            return float(np.mean(s_out <= t))
    raise AssertionError("unreachable")


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tpr", [0.5, 0.9, 0.95, 0.99])
def test_fpr_at_tpr_matches_threshold_sweep(seed, tpr):
    rng = np.random.default_rng(seed)
    n_in, n_out = rng.integers(5, 200, size=2)
    if seed % 2:  # heavy ties
        s_in, s_out = rng.integers(0, 6, n_in).astype(float), rng.integers(0, 8, n_out).astype(float)
    else:
        s_in, s_out = rng.normal(0, 1, n_in), rng.normal(1, 1, n_out)
    assert fpr_at_tpr(s_in, s_out, tpr) == _fpr_brute_force(s_in, s_out, tpr)


def test_fpr_at_tpr_rejects_bad_tpr():
    with pytest.raises(ValueError, match="tpr"):
        fpr_at_tpr([0.0, 1.0], [2.0], tpr=0.0)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_estimate_and_is_reproducible():
    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(0, 1, 400), rng.normal(0.5, 1, 300)
    lo, hi = bootstrap_auroc_ci(s_in, s_out, n_boot=500, seed=7)
    assert 0.0 <= lo < auroc(s_in, s_out) < hi <= 1.0
    assert bootstrap_auroc_ci(s_in, s_out, n_boot=500, seed=7) == (lo, hi)
    assert bootstrap_auroc_ci(s_in, s_out, n_boot=500, seed=8) != (lo, hi)


def test_bootstrap_ci_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    small = bootstrap_auroc_ci(rng.normal(0, 1, 50), rng.normal(0.5, 1, 50), n_boot=400)
    large = bootstrap_auroc_ci(rng.normal(0, 1, 2000), rng.normal(0.5, 1, 2000), n_boot=400)
    assert large[1] - large[0] < 0.5 * (small[1] - small[0])


def test_bootstrap_batched_auroc_matches_direct_resampling():
    # The vectorised count-weighted AUROC must equal the AUROC of the explicit resample.
    from vsgm.metrics import _batched_auroc

    rng = np.random.default_rng(3)
    s_in, s_out = rng.integers(0, 5, 40).astype(float), rng.integers(0, 6, 30).astype(float)
    order = np.argsort(s_in, kind="stable")
    srt = s_in[order]
    left, right = np.searchsorted(srt, s_out, "left"), np.searchsorted(srt, s_out, "right")
    for _ in range(5):
        i_in, i_out = rng.integers(0, 40, 40), rng.integers(0, 30, 30)
        w_in = np.bincount(i_in, minlength=40)[None].astype(float)
        w_out = np.bincount(i_out, minlength=30)[None].astype(float)
        got = _batched_auroc(srt, left, right, order, w_in, w_out)[0]
        assert got == pytest.approx(auroc(s_in[i_in], s_out[i_out]), abs=1e-12)


def test_bootstrap_constant_scores():
    assert bootstrap_auroc_ci([1.0] * 5, [1.0] * 7, n_boot=20) == (0.5, 0.5)


@pytest.mark.parametrize("kwargs", [{"n_boot": 0}, {"level": 1.0}, {"level": 0.0}])
def test_bootstrap_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        bootstrap_auroc_ci([0.0, 1.0], [1.0, 2.0], **kwargs)


# --------------------------------------------------------------------------- ood_metrics


def test_ood_metrics_keys_types_and_json():
    s_in, s_out = CASES[0]
    m = ood_metrics(s_in, s_out, n_boot=100, seed=0)
    assert set(m) == {"auroc", "auroc_lo", "auroc_hi", "aupr_in", "aupr_out", "fpr95", "n_in", "n_out"}
    assert m["n_in"] == s_in.size and m["n_out"] == s_out.size
    assert isinstance(m["n_in"], int) and all(isinstance(m[k], float) for k in m if not k.startswith("n_"))
    assert m["auroc_lo"] <= m["auroc"] <= m["auroc_hi"]
    assert m["fpr95"] == fpr_at_tpr(s_in, s_out, 0.95)
    json.dumps(m)
    assert ood_metrics(s_in, s_out, n_boot=100, seed=0) == m


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_raise_with_count(bad):
    s_in = np.array([0.0, 1.0, bad, 2.0, bad])
    with pytest.raises(ValueError, match=r"scores_in contains 2 non-finite"):
        ood_metrics(s_in, [1.0, 2.0])
    with pytest.raises(ValueError, match=r"scores_out contains 2 non-finite"):
        auroc([1.0, 2.0], s_in)


def test_empty_and_misshaped_inputs_raise():
    with pytest.raises(ValueError, match="scores_in is empty"):
        ood_metrics([], [1.0])
    with pytest.raises(ValueError, match="scores_out is empty"):
        fpr_at_tpr([1.0], [])
    with pytest.raises(ValueError, match="1-D"):
        auroc(np.zeros((3, 2)), [1.0])


# --------------------------------------------------------------------------- Frechet distance


def test_frechet_distance_closed_form_diagonal_gaussians():
    # For diagonal covariances diag(s_a^2), diag(s_b^2) the distance is
    # ||mu_a - mu_b||^2 + sum_i (s_a,i - s_b,i)^2. With N = 200k samples in D = 4
    # the estimation error is ~1e-2 absolute (true value 3.25 + 2.25 = 5.5); tolerance 2%.
    rng = np.random.default_rng(0)
    mu_a, mu_b = np.array([0.0, 1.0, -1.0, 2.0]), np.array([1.0, 1.0, 0.5, 2.0])
    s_a, s_b = np.array([1.0, 0.5, 2.0, 1.0]), np.array([1.0, 1.5, 1.0, 0.5])
    a = mu_a + s_a * rng.standard_normal((200_000, 4))
    b = mu_b + s_b * rng.standard_normal((200_000, 4))
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((s_a - s_b) ** 2)
    assert expected == 5.5
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_frechet_distance_matches_scipy_sqrtm_on_full_covariances():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
    b = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6)) + 0.3
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    d = a.mean(0) - b.mean(0)
    ref = d @ d + np.trace(ca + cb - 2 * np.real(sqrtm(ca @ cb)))
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)


def test_frechet_distance_identical_is_zero_and_symmetric():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((100, 5))
    b = rng.standard_normal((120, 5)) * 2
    assert frechet_distance(a, a.copy()) == 0.0
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    # the same covariance, means 1e-12 apart: 5e-24 by the closed form, not a rounding error that a clamp hides
    assert frechet_distance(a, a + 1e-12) == pytest.approx(0.0, abs=1e-10)
    # rank-deficient covariances (D > N): finite, and Tr (C_a C_b)^(1/2) from the eigenvalues of C_a C_b
    c, d = rng.standard_normal((3, 10)), rng.standard_normal((4, 10)) + 0.5
    ca, cb = np.cov(c, rowvar=False), np.cov(d, rowvar=False)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvals(ca @ cb).real, 0, None)).sum()
    expected = np.sum((c.mean(0) - d.mean(0)) ** 2) + np.trace(ca) + np.trace(cb) - 2 * tr_sqrt
    fd = frechet_distance(c, d)
    assert np.isfinite(fd) and fd == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_bad_inputs():
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.array([[0.0, np.nan], [1.0, 2.0]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2-D"):
        frechet_distance(np.zeros(3), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance(np.zeros((0, 2)), np.zeros((3, 2)))
