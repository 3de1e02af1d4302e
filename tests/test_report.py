"""Aggregate tables from real pair tables and sampler outputs; the solver sweep's cost-to-quality reading."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vsgm.report import aggregate
from vsgm.sweep import cost_to_quality
from vsgm.tables import OOD, pair_table


def write_pair(tmp_path, model, out, shift):
    rng = np.random.default_rng(len(model) + len(out))
    ins = pd.DataFrame({"index": range(200), "loss": rng.normal(0, 1, 200), "msma": rng.normal(0, 1, 200)})
    outs = pd.DataFrame({"index": range(100), "loss": rng.normal(-shift, 1, 100), "msma": rng.normal(shift, 1, 100)})
    sanity = pd.DataFrame({"index": range(50), "loss": rng.normal(0, 1, 50), "msma": rng.normal(0, 1, 50)})
    path = tmp_path / model / f"ood_{out}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pair_table(model, out, ins, outs, sanity, {"loss": 5, "msma": 10}).to_csv(path, index=False)
    return path


def write_sample(tmp_path, model, sampler, nfe):
    from vsgm.sample_batches import write_samples
    import torch

    cost = {"sampler": sampler, "solver": None, "grid": None, "nfe": nfe, "seconds": nfe / 100,
            "samples_per_s": 100 / nfe, "num_samples": 4, "dataset": model}
    write_samples(torch.zeros(4, 1, 8, 8), cost, tmp_path / model / "samples" / sampler)
    return tmp_path / model / "samples" / f"{sampler}.json"


def test_aggregate_writes_every_table_and_picture(tmp_path):
    pairs = [write_pair(tmp_path, "a", "b", 3), write_pair(tmp_path, "a", "c", 1), write_pair(tmp_path, "b", "a", 2)]
    samples = [write_sample(tmp_path, m, s, n) for m in "ab" for s, n in (("em", 100), ("ode-rk4", 400))]
    sweep = tmp_path / "a" / "solver_sweep.csv"
    pd.DataFrame({"model": "a", "sampler": ["em", "em", "ode-rk4"], "nfe": [10, 100, 40], "seconds": [1, 10, 4],
                  "num_steps": [10, 100, 10], "tol": np.nan, "fd": [5.0, 1.0, 1.05],
                  "fd_lo": [4.0, 0.9, 0.95], "fd_hi": [6.0, 1.1, 1.15]}).to_csv(sweep, index=False)
    history = tmp_path / "a" / "train.csv"
    pd.DataFrame({"epoch": [1, 2, 3], "loss": [9.0, 7.0, 6.5]}).to_csv(history, index=False)
    paths = aggregate(pairs, samples, [], tmp_path / "agg", [sweep], [history])
    assert {p.name for p in paths} >= {"auroc.csv", "auroc.md", "auroc.png", "solvers.csv", "samples.png",
                                       "solver_efficiency.csv", "loss.png"}
    long = pd.read_csv(tmp_path / "agg" / "auroc.csv")
    # 3 pairs x 2 scorers + the sanity rows once per model (a: 2 scorers, b: 2 scorers)
    assert len(long[long.comparison == OOD]) == 6 and len(long) == 10
    md = (tmp_path / "agg" / "auroc.md").read_text()
    assert "## loss" in md and "## msma" in md and "| a |" in md and "**" in md
    solvers = pd.read_csv(tmp_path / "agg" / "solvers.csv")
    assert list(solvers.sampler) == ["em", "ode-rk4", "em", "ode-rk4"] and solvers.nfe.tolist() == [100, 400] * 2
    for name in ("auroc.png", "samples.png", "solver_sweep.png", "loss.png"):
        assert Image.open(tmp_path / "agg" / name).size[0] > 100


def test_replicates_get_their_mean_and_sd_next_to_each_run(tmp_path):
    import json

    pairs = [write_pair(tmp_path, m, "b", shift) for m, shift in (("a", 1), ("a-r1", 2), ("a-r2", 3))]
    samples, quality = [], []
    for m, fd in (("a", 1.0), ("a-r1", 2.0), ("a-r2", 4.0)):
        samples.append(write_sample(tmp_path, m, "em", 10))
        q = tmp_path / m / "quality" / "em.json"
        q.parent.mkdir(parents=True)
        q.write_text(json.dumps({"model": m, "dataset": "digits", "sampler": "em", "fd": fd, "fd_lo": fd - 0.5,
                                 "fd_hi": fd + 0.5,
                                 "fd_test_vs_train": 0.5}))
        quality.append(q)
    aggregate(pairs, samples, quality, tmp_path / "agg")
    long = pd.read_csv(tmp_path / "agg" / "auroc.csv")
    rows = long[(long.scorer == "loss") & (long.comparison == OOD)]
    assert len(rows) == 3 and (rows.replicates == 3).all()
    assert rows.auroc_rep_mean.iloc[0] == pytest.approx(rows.auroc.mean(), abs=1e-5)  # tables keep 6 digits
    assert rows.auroc_rep_sd.iloc[0] == pytest.approx(rows.auroc.std(), abs=1e-5)
    # the sanity rows (a_train, a-r1_train, ...) are one comparison of model a too
    assert (long[long.comparison != OOD].replicates == 3).all()
    assert "Mean ± sd over 3 replicates" in (tmp_path / "agg" / "auroc.md").read_text()
    solvers = pd.read_csv(tmp_path / "agg" / "solvers.csv")
    em = solvers[solvers.sampler == "em"]
    assert em.fd_rep_mean.tolist() == pytest.approx([7 / 3] * 3, abs=1e-5)
    assert em.fd_rep_sd.iloc[0] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1), abs=1e-5)


def _with_interval(table, metric, half_width):
    return table.assign(**{f"{metric}_lo": table[metric] - half_width, f"{metric}_hi": table[metric] + half_width})


def test_cost_to_quality_picks_the_cheapest_setting_whose_interval_overlaps_the_converged_one():
    table = pd.DataFrame({"model": "m", "sampler": ["em"] * 3 + ["rk4"] * 2 + ["bad"],
                          "nfe": [10, 50, 100, 8, 40, 5], "seconds": [1, 5, 10, 1, 4, 1],
                          "num_steps": [10, 50, 100, 2, 10, 5], "tol": np.nan,
                          "fd": [3.0, 1.3, 1.0, 2.0, 1.02, 9.0]})
    out = cost_to_quality(_with_interval(table, "fd", 0.1)).set_index(["metric", "sampler"])
    # converged quality: the median of the costliest settings' FDs (1.0, 1.02, 9.0) is rk4's 1.02 +- 0.1;
    # em's 1.3 +- 0.1 misses it, its 1.0 +- 0.1 overlaps
    assert out.loc[("fd", "em"), "nfe"] == 100 and out.loc[("fd", "rk4"), "nfe"] == 40
    assert out.loc[("fd", "em"), "target"] == 1.02 and out.loc[("fd", "em"), "target_sampler"] == "rk4"
    assert np.isnan(out.loc[("fd", "bad"), "nfe"])
    # wider intervals: em's 1.3 +- 0.2 overlaps 1.02 +- 0.2 at 50 NFE
    wide = cost_to_quality(_with_interval(table, "fd", 0.2)).set_index(["metric", "sampler"])
    assert wide.loc[("fd", "em"), "nfe"] == 50


def test_the_all_metric_row_needs_every_metric_to_overlap():
    table = pd.DataFrame({"model": "m", "sampler": ["em", "em", "rk4"], "nfe": [10, 100, 40], "seconds": 1,
                          "num_steps": [10, 100, 10], "tol": np.nan, "fd": [1.0, 1.0, 1.0],
                          "kid": [0.5, 0.01, 0.01]})
    table = _with_interval(_with_interval(table, "fd", 0.1), "kid", 0.01)
    out = cost_to_quality(table).set_index(["metric", "sampler"])
    assert out.loc[("fd", "em"), "nfe"] == 10 and out.loc[("kid", "em"), "nfe"] == 100
    assert out.loc[("all", "em"), "nfe"] == 100


def test_a_sampler_diverged_at_its_costliest_setting_has_no_say_in_the_converged_quality():
    table = pd.DataFrame({"model": "m", "sampler": ["em", "rk4", "bad", "div", "div"],
                          "nfe": [100, 40, 5, 10, 100], "seconds": 1, "num_steps": [100, 10, 5, 10, 100],
                          "tol": np.nan, "fd": [1.0, 1.02, 9.0, 20.0, np.nan]})
    out = cost_to_quality(_with_interval(table, "fd", 0.1)).set_index(["metric", "sampler"])
    # the median of 1.0, 1.02 and 9.0; the diverged sampler's cheaper 20.0 is not its converged quality
    assert out.loc[("fd", "em"), "target"] == 1.02 and np.isnan(out.loc[("fd", "div"), "nfe"])


def test_sweep_on_a_trained_model(tiny_model, digits_train):
    import torch

    from vsgm.data import load_prepared
    from vsgm.metrics import frechet_distance
    from vsgm.models import load_trained
    from vsgm.quality import classifier_features, train_classifier
    from vsgm.samplers import SamplerSettings, parse_sampler, sample
    from vsgm.sample_batches import draw
    from vsgm.score_function import make_score_fn
    from vsgm.sweep import sweep

    data = load_prepared(digits_train)
    clf, acc = train_classifier(data.images, data.labels, epochs=1)
    assert acc > 0.3  # ten classes: well above chance after one epoch
    model, reference = load_trained(tiny_model), data.images[:200].float() / 127.5 - 1
    table = sweep(model, clf, reference, ["em", "ode-bosh3"], steps=[2, 4], tolerances=[1e-1], num_samples=16,
                  batch_size=16)
    # bosh3 at tolerance 0.1 from the same prior draw, outside the sweep: the sweep records what the solve spent
    eps = model.options["eps"]
    bosh3 = sample(make_score_fn(model.net, model.sde), model.sde, (16, 1, 8, 8), "ode-bosh3",
                   SamplerSettings(eps=eps, atol=0.1, rtol=0.1), generator=torch.Generator().manual_seed(0))
    assert list(zip(table.sampler, table.num_steps.fillna(0), table.tol.fillna(0), table.nfe)) == [
        ("em", 2, 0, 2), ("em", 4, 0, 4), ("ode-bosh3", 0, 0.1, bosh3.nfe)]
    # the FD of em at 4 steps, from its samples and the reference's features
    samples, _ = draw(model, parse_sampler("em"), 16, 16, SamplerSettings(num_steps=4, eps=eps))
    fd = frechet_distance(*(classifier_features(clf, x).double().numpy() for x in (samples, reference)))
    assert np.isfinite(table.fd).all() and table.fd.iloc[1] == pytest.approx(fd, rel=1e-9)
    assert (table.kid_lo <= table.kid_hi).all() and table.precision.between(0, 1).all()


def test_scorers_are_listed_in_the_registrys_order_and_unknown_ones_last():
    from vsgm.tables import scorer_order

    assert scorer_order(["zeta", "fisher", "msma_knn", "loss", "fisher", "alpha"]) == [
        "loss", "msma_knn", "fisher", "alpha", "zeta"]
