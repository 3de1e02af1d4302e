"""KID, precision and recall against closed forms on synthetic features, and the coverage of their intervals."""

import numpy as np
import pytest

from vsgm.quality_metrics import kid, precision_recall, quality_metrics


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
