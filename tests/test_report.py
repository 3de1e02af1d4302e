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
    from vsgm.sampling import write_samples
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
                  "num_steps": [10, 100, 10], "tol": np.nan, "fd": [5.0, 1.0, 1.05]}).to_csv(sweep, index=False)
    paths = aggregate(pairs, samples, [], tmp_path / "agg", [sweep])
    assert {p.name for p in paths} >= {"auroc.csv", "auroc.md", "auroc.png", "solvers.csv", "samples.png",
                                       "solver_efficiency.csv"}
    long = pd.read_csv(tmp_path / "agg" / "auroc.csv")
    # 3 pairs x 2 scorers + the sanity rows once per model (a: 2 scorers, b: 2 scorers)
    assert len(long[long.comparison == OOD]) == 6 and len(long) == 10
    md = (tmp_path / "agg" / "auroc.md").read_text()
    assert "## loss" in md and "## msma" in md and "| a |" in md and "**" in md
    solvers = pd.read_csv(tmp_path / "agg" / "solvers.csv")
    assert list(solvers.sampler) == ["em", "ode-rk4", "em", "ode-rk4"] and solvers.nfe.tolist() == [100, 400] * 2
    for name in ("auroc.png", "samples.png", "solver_sweep.png"):
        assert Image.open(tmp_path / "agg" / name).size[0] > 100


def test_cost_to_quality_picks_the_cheapest_setting_within_the_margin_of_the_converged_quality():
    table = pd.DataFrame({"model": "m", "sampler": ["em"] * 3 + ["rk4"] * 2 + ["bad"],
                          "nfe": [10, 50, 100, 8, 40, 5], "seconds": [1, 5, 10, 1, 4, 1],
                          "num_steps": [10, 50, 100, 2, 10, 5], "tol": np.nan,
                          "fd": [3.0, 1.08, 1.0, 2.0, 1.02, 9.0]})
    out = cost_to_quality(table, margin=0.1).set_index("sampler")
    assert out.loc["em", "nfe"] == 50 and out.loc["rk4", "nfe"] == 40
    # converged quality: the median of the costliest settings' FDs (1.0, 1.02, 9.0), plus 10 %
    assert np.isnan(out.loc["bad", "nfe"]) and out.loc["em", "target_fd"] == pytest.approx(1.02 * 1.1)


def test_a_sampler_diverged_at_its_costliest_setting_has_no_say_in_the_converged_quality():
    table = pd.DataFrame({"model": "m", "sampler": ["em", "rk4", "bad", "div", "div"],
                          "nfe": [100, 40, 5, 10, 100], "seconds": 1, "num_steps": [100, 10, 5, 10, 100],
                          "tol": np.nan, "fd": [1.0, 1.02, 9.0, 20.0, np.nan]})
    out = cost_to_quality(table, margin=0.1).set_index("sampler")
    # the median of 1.0, 1.02 and 9.0; the diverged sampler's cheaper 20.0 is not its converged quality
    assert out.loc["em", "target_fd"] == pytest.approx(1.02 * 1.1) and np.isnan(out.loc["div", "nfe"])


def test_sweep_on_a_trained_model(tiny_model, digits_train):
    from vsgm.data import load_prepared
    from vsgm.models import load_trained
    from vsgm.quality import train_classifier
    from vsgm.sweep import sweep

    data = load_prepared(digits_train)
    clf, acc = train_classifier(data.images, data.labels, epochs=1)
    assert acc > 0.3  # ten classes: well above chance after one epoch
    table = sweep(load_trained(tiny_model), clf, data.images[:200].float() / 127.5 - 1, ["em", "ode-bosh3"],
                  steps=[2, 4], tolerances=[1e-1], num_samples=16, batch_size=16)
    assert list(zip(table.sampler, table.num_steps.fillna(0), table.nfe)) == [
        ("em", 2, 2), ("em", 4, 4), ("ode-bosh3", 0, table.nfe.iloc[2])]
    assert table.fd.notna().all() and (table.fd >= 0).all()


def test_scorers_are_listed_in_the_registrys_order_and_unknown_ones_last():
    from vsgm.tables import scorer_order

    assert scorer_order(["zeta", "fisher", "msma_knn", "loss", "fisher", "alpha"]) == [
        "loss", "msma_knn", "fisher", "alpha", "zeta"]
