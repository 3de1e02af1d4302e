"""KID, precision and recall against closed forms on synthetic features, and the coverage of their intervals."""

import numpy as np
import pytest

from vsgm.quality_metrics import METRICS, kid, paired_comparison, precision_recall, quality_metrics


def _poly3_mean(a, p, b, q):
    """E[(x.y/d + 1)^3] for independent x ~ N(a, diag p), y ~ N(b, diag q) (d = len(a)), from the cumulants of
    the sum of the independent products x_i y_i."""
    d = len(a)
    m1 = a * b
    m2 = (a**2 + p) * (b**2 + q)
    m3 = (a**3 + 3 * a * p) * (b**3 + 3 * b * q)
    var = (m2 - m1**2).sum() / d**2
    k3 = (m3 - 3 * m1 * m2 + 2 * m1**3).sum() / d**3
    mu = m1.sum() / d + 1
    return k3 + 3 * mu * var + mu**3


def _kid_truth(a, p, b, q):
    return _poly3_mean(a, p, a, p) + _poly3_mean(b, q, b, q) - 2 * _poly3_mean(a, p, b, q)


D = 4
A, P = np.zeros(D), np.ones(D)
B, Q = np.full(D, 0.5), np.full(D, 1.5)


def _draw(rng, n, mean, var):
    return mean + np.sqrt(var) * rng.standard_normal((n, len(mean)))


def test_kid_of_identical_sets_is_near_zero_and_precision_recall_are_one():
    x = np.random.default_rng(0).standard_normal((200, 8))
    assert abs(kid(x, x)) < 0.02 * kid(x, x + 2.0)
    assert precision_recall(x, x) == (1.0, 1.0)


def test_disjoint_clusters_have_no_precision_or_recall():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((100, 8)), rng.standard_normal((100, 8)) + 20.0
    assert precision_recall(fake, real) == (0.0, 0.0)
    # samples of one of the real set's two far-apart modes: full precision, recall one half
    two_modes = np.concatenate([real, real + 20.0])
    precision, recall = precision_recall(fake, two_modes)
    # (k = 3 balls in 8-d miss some points even of the same distribution: the far mode halves that recall)
    assert precision > 0.7 and recall == 0.5 * precision_recall(fake, real + 20.0)[1]


def test_kid_is_unbiased_for_two_gaussians():
    rng = np.random.default_rng(2)
    truth = _kid_truth(A, P, B, Q)
    estimates = [kid(_draw(rng, 50, A, P), _draw(rng, 60, B, Q)) for _ in range(300)]
    se = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates) - truth) < 4 * se
    # the same for one distribution: truth 0
    same = [kid(_draw(rng, 50, A, P), _draw(rng, 60, A, P)) for _ in range(300)]
    assert abs(np.mean(same)) < 4 * np.std(same) / np.sqrt(len(same))


def test_kid_interval_covers_the_truth_at_about_95_percent():
    rng = np.random.default_rng(3)
    truth = _kid_truth(A, P, B, Q)
    covered = []
    for i in range(100):
        m = quality_metrics(_draw(rng, 80, A, P), _draw(rng, 80, B, Q), n_boot=200, seed=i)
        covered.append(m["kid_lo"] <= truth <= m["kid_hi"])
    # 95% nominal; binomial sd over 100 draws is about 2 points
    assert 0.88 <= np.mean(covered) <= 1.0


def test_the_fd_interval_of_one_distribution_holds_its_point_estimate():
    # resamples with duplicates have a larger FD than the set they come from: the interval is moved back
    rng = np.random.default_rng(5)
    m = quality_metrics(_draw(rng, 100, np.zeros(16), np.ones(16)), _draw(rng, 100, np.zeros(16), np.ones(16)),
                        n_boot=100)
    assert m["fd_lo"] <= m["fd"] <= m["fd_hi"]


def test_quality_metrics_give_every_metric_an_interval_around_the_point():
    rng = np.random.default_rng(4)
    m = quality_metrics(_draw(rng, 60, A, P), _draw(rng, 60, B, Q), n_boot=50)
    for name in ("fd", "kid", "precision", "recall"):
        assert m[f"{name}_lo"] <= m[f"{name}_hi"]
    assert 0 <= m["precision_lo"] <= m["precision"] <= m["precision_hi"] <= 1
    assert 0 <= m["recall_lo"] <= m["recall"] <= m["recall_hi"] <= 1


def test_too_few_features_are_refused():
    with pytest.raises(ValueError, match="at least 4"):
        quality_metrics(np.zeros((3, 2)), np.zeros((10, 2)))


def _width(m, name, kind=""):
    return m[f"{name}{kind}_hi"] - m[f"{name}{kind}_lo"]


def test_the_paired_difference_of_two_samplers_of_one_distribution_covers_zero_at_about_95_percent():
    rng = np.random.default_rng(6)
    covered = {name: [] for name in METRICS}
    for i in range(60):
        r = paired_comparison(_draw(rng, 80, A, P), {"a": _draw(rng, 80, B, Q), "b": _draw(rng, 80, B, Q)},
                              reference="a", n_boot=100, seed=i)
        for name in METRICS:
            covered[name].append(r["b"][f"{name}_diff_lo"] <= 0 <= r["b"][f"{name}_diff_hi"])
    # 95% nominal; binomial sd over 60 draws is about 3 points (precision and recall come out conservative)
    for name in METRICS:
        assert 0.85 <= np.mean(covered[name]) <= 1.0, name


def test_a_shifted_sampler_is_told_apart_from_the_best_one():
    rng = np.random.default_rng(7)
    real, good, shifted = _draw(rng, 200, A, P), _draw(rng, 200, A, P), _draw(rng, 200, A + 1, P)
    r = paired_comparison(real, {"good": good, "shifted": shifted})
    for name in ("fd", "kid", "precision"):
        assert r["shifted"][f"{name}_vs"] == r["good"][f"{name}_vs"] == "good"
        assert r["shifted"][f"{name}_distinct"] and not r["good"][f"{name}_distinct"]
        assert r["good"][f"{name}_diff"] == r["good"][f"{name}_diff_lo"] == 0.0
    assert r["shifted"]["fd_diff_lo"] > 0 and r["shifted"]["precision_diff_hi"] < 0
    # the marginal point estimates are those of quality_metrics, the difference is theirs
    alone = {s: quality_metrics(x, real, n_boot=0) for s, x in (("good", good), ("shifted", shifted))}
    for name in METRICS:
        assert r["shifted"][name] == pytest.approx(alone["shifted"][name])
        assert r["shifted"][f"{name}_diff"] == pytest.approx(alone["shifted"][name] - alone["good"][name])


def test_paired_intervals_are_narrower_than_the_marginal_ones_when_the_reference_set_dominates():
    # a small real set and large sample sets: most of each sampler's marginal interval is the real set's noise,
    # which one shared resample per draw cancels from the difference
    rng = np.random.default_rng(8)
    ratios = {"fd": [], "kid": []}
    for i in range(5):
        r = paired_comparison(_draw(rng, 30, A, P), {"a": _draw(rng, 300, A, P), "b": _draw(rng, 300, A, P)},
                              reference="a", n_boot=100, seed=i)
        for name in ratios:
            ratios[name].append(_width(r["b"], name, "_diff") / min(_width(r["a"], name), _width(r["b"], name)))
    for name, values in ratios.items():
        assert np.median(values) < 0.9, (name, values)


def test_paired_intervals_separate_a_shift_that_the_marginal_intervals_miss():
    rng = np.random.default_rng(9)
    paired = marginal = 0
    for i in range(12):
        r = paired_comparison(_draw(rng, 40, A, P), {"a": _draw(rng, 300, A, P), "b": _draw(rng, 300, A + 0.3, P)},
                              reference="a", n_boot=100, seed=i)
        paired += r["b"]["kid_distinct"] and r["b"]["kid_diff_lo"] > 0
        marginal += r["b"]["kid_lo"] > r["a"]["kid_hi"]
    assert paired >= 3 and marginal == 0


def test_paired_comparison_refuses_an_unknown_reference_and_no_samplers():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="reference sampler 'pc' is not one of"):
        paired_comparison(x, {"em": x}, reference="pc")
    with pytest.raises(ValueError, match="no samplers"):
        paired_comparison(x, {})
