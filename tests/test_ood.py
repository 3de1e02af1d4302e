"""Scorers on a closed-form case, the DSM loss against its analytic value, and the pair table."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from vsgm.losses import dsm_loss, expected_oracle_loss
from vsgm.metrics import auroc
from vsgm.models import TrainedModel
from vsgm.ood import (BPD_STREAM, FeatureConfig, FisherScorer, KNNScorer, outlier_features, fit_split, image_noise,
                      score_table, tail_p_values)
from vsgm.options import defaults
from vsgm.sde import VESDE
from vsgm.tables import OOD, SANITY, pair_table

DATA_STD = 0.25  # in the [-1, 1] image scale


class OracleNet(nn.Module):
    """Exact std(t) * score for data N(0, DATA_STD^2 I), called like the UNet: net(x, 1000 t, y)."""

    def __init__(self, sde):
        super().__init__()
        self.sde = sde

    def forward(self, x, timesteps, y=None):
        std = self.sde.marginal_std(timesteps / 1000).reshape(-1, 1, 1, 1)
        return -std * x / (DATA_STD**2 + std**2)


def oracle_model(size=4):
    sde = VESDE(25)
    opts = defaults()
    opts.update(dims=2)
    return TrainedModel(OracleNet(sde), opts, {"channels": 1, "size": size})


def gaussian_images(std, n, seed, size=4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g) * std
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def test_dsm_loss_of_the_oracle_matches_its_analytic_value():
    sde = VESDE(25)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 1, 2, 2, generator=g) * DATA_STD
    loss = dsm_loss(OracleNet(sde), sde, x, eps=1e-3, generator=g)
    ts = torch.linspace(1e-3, 1, 20001, dtype=torch.float64)
    expected = expected_oracle_loss(sde, DATA_STD, 4, ts).mean().item()  # E over t ~ U(eps, 1)
    stderr = loss.std().item() / len(loss) ** 0.5
    assert abs(loss.mean().item() - expected) < 4 * stderr


def test_msma_detects_outliers_in_both_directions_loss_only_one():
    model = oracle_model()
    cfg = FeatureConfig(n_draws=4)
    feats = {name: outlier_features(model, gaussian_images(std, 600, seed), cfg, progress=False)
             for name, std, seed in [("train", DATA_STD, 0), ("test", DATA_STD, 1), ("narrow", 0.08, 2),
                                     ("wide", 0.6, 3)]}
    fit_rows, _ = fit_split(len(feats["train"]))
    scores = {k: score_table(feats["train"].iloc[fit_rows], v) for k, v in feats.items()}

    def a(scorer, out):
        return auroc(scores["test"][scorer].to_numpy(), scores[out][scorer].to_numpy())

    assert a("msma", "narrow") > 0.95 and a("msma", "wide") > 0.95
    assert a("msma_knn", "narrow") > 0.95 and a("msma_knn", "wide") > 0.95
    assert a("fisher", "narrow") > 0.95 and a("fisher", "wide") > 0.95
    assert a("loss", "wide") > 0.9
    assert a("loss", "narrow") < 0.2  # simpler outliers look *more* in-distribution to the seed's loss
    # same distribution: chance
    assert abs(auroc(scores["test"]["msma"].to_numpy(), scores["train"]["msma"].to_numpy()) - 0.5) < 0.1


def test_tail_p_values_count_the_reference_at_or_above():
    assert tail_p_values(np.array([3.0, 1.0, 2.0]), np.array([0.0, 2.0, 3.5])).tolist() == [1.0, 0.75, 0.25]


def gaussian_features(n, seed, levels=5, times=5):
    rng = np.random.default_rng(seed)
    cols = {f"norm_{i}": rng.normal(size=n) for i in range(levels)}
    cols.update({f"loss_t{i}": rng.gamma(4.0, size=n) for i in range(times)})
    return pd.DataFrame({"index": np.arange(n), **cols})


def test_calibrated_p_values_of_new_in_distribution_images_are_uniform():
    """The kNN distance is calibrated leave-one-out: scoring the training vectors themselves would count each
    as its own nearest neighbour, make the reference too small and flag about a third of new in-distribution
    images at the 10% level."""
    train, fresh = gaussian_features(1000, 0), gaussian_features(4000, 1)
    knn = KNNScorer().fit(train)
    p_knn = tail_p_values(knn.training_scores(), knn.score(fresh))
    fisher = FisherScorer().fit(train)
    p_loss = tail_p_values(fisher.reference[0], fisher.loss.score(fresh))
    def tolerance(level):  # 4 standard errors of a share, with the reference's own sampling error
        return 4 * (level * (1 - level) * (1 / len(train) + 1 / len(fresh))) ** 0.5

    for p in (p_knn, p_loss):
        for level in (0.1, 0.5):
            assert abs((p <= level).mean() - level) < tolerance(level)
    # Fisher's statistic of two independent uniform p-values is chi-squared with 4 degrees of freedom
    assert abs((fisher.score(fresh) > 9.488).mean() - 0.05) < tolerance(0.05)  # chi2(4) 95% point


def test_features_are_deterministic_and_checked():
    model = oracle_model()
    imgs = gaussian_images(DATA_STD, 50, 0)
    a = outlier_features(model, imgs, FeatureConfig(), progress=False)
    b = outlier_features(model, imgs, FeatureConfig(), progress=False, batch_size=7)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5)
    assert list(a.columns[:6]) == ["index", "loss_t0.001", "loss_t0.01", "loss_t0.05", "loss_t0.1", "loss_t0.2"]
    with pytest.raises(ValueError, match="do not match the model"):
        outlier_features(model, gaussian_images(DATA_STD, 5, 0, size=8), FeatureConfig(), progress=False)


def random_model(options, std):
    """An 8x8 one-channel UNet with normal(0, std) weights everywhere (a trained model's output layer is
    not zero, and a zero one would hide everything else)."""
    from vsgm.unet_config import UNetConfig
    from vsgm.unet import UNetModel

    torch.manual_seed(0)
    net = UNetModel(UNetConfig.from_options(options, 1, 8)).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=std)
    return TrainedModel(net, options, {"channels": 1, "size": 8})


def test_features_in_cache_sized_chunks_equal_one_pass(tiny_options, monkeypatch):
    import vsgm.unet

    # random weights everywhere (a zero-initialised output layer would hide t), and the time embedding
    # applied after the norm: at 16 channels a GroupNorm has one channel per group and would erase it
    model = random_model({**tiny_options, "use_scale_shift_norm": True}, std=0.2)
    imgs = torch.randint(0, 256, (9, 1, 8, 8), dtype=torch.uint8)
    whole = outlier_features(model, imgs, FeatureConfig(), progress=False)
    monkeypatch.setattr(vsgm.unet, "CPU_CHUNK_BYTES", 1)  # one image per network pass
    chunked = outlier_features(model, imgs, FeatureConfig(), progress=False)
    pd.testing.assert_frame_equal(whole, chunked, check_exact=False, rtol=1e-4, atol=1e-5)


def test_bpd_of_a_conditional_model_uses_its_unconditional_score(tiny_options):
    from vsgm.likelihood import bits_per_dim, log_likelihood
    from vsgm.samplers import Grid, Solver
    from vsgm.score_function import make_score_fn

    options = {**tiny_options, "conditional": True, "n_classes": 3}
    model = random_model(options, std=0.1)
    imgs = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    cfg = FeatureConfig(levels=2, bpd=True, bpd_steps=2)
    bpd = outlier_features(model, imgs, cfg, progress=False)["bpd"].to_numpy()
    null = torch.full((3,), model.null_label)
    x = model.to_input(imgs)
    signs = image_noise(tuple(x.shape), 0, 1, cfg.seed, "cpu", BPD_STREAM).sign()
    logp, _ = log_likelihood(make_score_fn(model.net, model.sde, y=null), model.sde, x, eps=options["eps"],
                             solver=Solver.rk4, grid=Grid.logstd, num_steps=2, noise=signs)
    np.testing.assert_allclose(bpd, bits_per_dim(logp, x[0].numel()).numpy(), rtol=1e-4)


def test_bpd_does_not_depend_on_the_batch_size(tiny_options):
    """Each image's Hutchinson vector comes from its fixed block of images, not from a generator that
    batches consume in turn: bits/dim at batch 5 and at batch 2 are the same numbers."""
    model = random_model({**tiny_options, "use_scale_shift_norm": True}, std=0.1)
    imgs = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    cfg = FeatureConfig(levels=2, bpd=True, bpd_steps=2)
    whole, pairs = (outlier_features(model, imgs, cfg, batch_size=b, progress=False)["bpd"] for b in (5, 2))
    np.testing.assert_allclose(pairs.to_numpy(), whole.to_numpy(), rtol=1e-5)
    other_seed = outlier_features(model, imgs, FeatureConfig(levels=2, bpd=True, bpd_steps=2, seed=1),
                                  batch_size=5, progress=False)["bpd"]
    assert not np.allclose(other_seed.to_numpy(), whole.to_numpy(), rtol=1e-5)  # the vectors matter


def test_loss_scorer_is_the_seeds_mean_over_five_times():
    df = pd.DataFrame({"index": [0, 1], **{f"loss_t{t:g}": [t, 2 * t] for t in (0.001, 0.01, 0.05, 0.1, 0.2)}})
    out = score_table(df, df, ["loss"])
    assert out["loss"].tolist() == pytest.approx([0.0722, 0.1444])


def test_pair_table_has_ood_and_sanity_rows_never_flipped():
    rng = np.random.default_rng(0)
    ins = pd.DataFrame({"index": range(300), "loss": rng.normal(0, 1, 300)})
    outs = pd.DataFrame({"index": range(200), "loss": rng.normal(-2, 1, 200)})  # lower: AUROC well below 0.5
    sanity = pd.DataFrame({"index": range(100), "loss": rng.normal(0, 1, 100)})
    t = pair_table("a", "b", ins, outs, sanity, {"loss": 5})
    ood = t[t.comparison == OOD].iloc[0]
    assert ood.auroc < 0.15 and ood.n_in == 300 and ood.n_out == 200 and ood.nfe == 5
    assert ood.auroc_lo <= ood.auroc <= ood.auroc_hi
    assert 0.35 < t[t.comparison == SANITY].iloc[0].auroc < 0.65
