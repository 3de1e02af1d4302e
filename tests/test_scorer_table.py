"""One table of scorers (vsgm.scorer_table) behind the registry, the NFE column, the tables' order and the bench;
the features' sidecar records their settings and vsgm score refuses features computed otherwise."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from vsgm.cli import main
from vsgm.scorer_table import SCORER_NAMES, SCORER_TABLE, available_scorers


def test_every_entry_names_its_class_and_the_registry_follows_the_table():
    from vsgm.ood import SCORERS

    assert list(SCORERS) == list(SCORER_NAMES) == ["loss", "msma", "msma_knn", "fisher", "bpd"]
    for entry in SCORER_TABLE:
        assert entry.load() is SCORERS[entry.name] and entry.load().name == entry.name


def test_nfe_per_scorer_is_the_sum_of_its_passes():
    from vsgm.ood import LOSS_TIMES, FeatureConfig

    nfe = FeatureConfig(n_draws=3, levels=7, bpd=True, bpd_steps=4).nfe()
    loss, norms, bpd = len(LOSS_TIMES) * 3, 7, 4 * 4 * 2  # rk4: 4 evaluations a step, each with a vjp
    assert nfe == {"loss": loss, "msma": norms, "msma_knn": norms, "fisher": loss + norms, "bpd": bpd}


def test_available_scorers_are_those_whose_passes_are_in_the_table():
    cols = ["index", "loss_t0.001", "norm_0", "norm_1"]
    assert available_scorers(cols) == ["loss", "msma", "msma_knn", "fisher"]
    assert available_scorers([*cols, "bpd"]) == list(SCORER_NAMES)
    assert available_scorers(["index", "norm_0"]) == ["msma", "msma_knn"]


def test_the_tables_order_and_the_bench_rows_come_from_the_table():
    from vsgm.bench import format_table
    from vsgm.tables import scorer_order

    assert scorer_order(["bpd", "zzz", "fisher", "loss"]) == ["loss", "fisher", "bpd", "zzz"]
    r = {"device": "cpu", "torch": "x", "date": "d", "image": [1, 8, 8], "batch_size": 2, "autocast": "no",
         "group_norm_silu": "PyTorch ops", "limits": {}, "train_micro_batch": 2, "train_images_per_s": 1.0,
         "train_fraction_of_limit": 0.5, "inference_images_per_s": 1.0, "inference_fraction_of_limit": 0.5,
         "score_loss_times": 5, "score_msma_levels": 10, "score_bpd_steps": 10,
         "score_loss_vs_inference_per_time": 1.0, "loader_images_per_s": 1.0, "limit_from_model_rate": False,
         **{f"score_{n}_images_per_s": 1.0 for n in SCORER_NAMES}}
    rows = [line.strip() for line in format_table(r).splitlines() if line.strip().startswith("OOD ")]
    assert [row.split()[1] for row in rows] == list(SCORER_NAMES)
    assert rows[1].startswith("OOD msma score (10 levels)") and rows[4].startswith("OOD bpd score (ODE, 10 rk4")


@pytest.fixture(scope="module")
def feature_files(tmp_path_factory, tiny_model, digits_train):
    """vsgm features of 12 images: the training table, one with the same settings, one with --n_draws 2."""
    out = tmp_path_factory.mktemp("features")
    common = ["--checkpoint", str(tiny_model), "--data", str(digits_train), "--max_images", "12", "--levels", "3",
              "--device", "cpu"]
    for name, extra in (("train", []), ("same", []), ("draws2", ["--n_draws", "2"])):
        assert main(["features", *common, *extra, "--out", str(out / f"{name}.parquet")]) == 0
    return out


def score(files, target: str, *extra: str) -> list[str]:
    return ["score", "--train_features", str(files / "train.parquet"), "--features", str(files / f"{target}.parquet"),
            "--out", str(files / f"scores_{target}_{len(extra)}.parquet"), *extra]


def test_the_sidecar_records_the_feature_config(feature_files):
    from vsgm.ood import FeatureConfig

    side = json.loads((feature_files / "draws2.json").read_text())
    assert side["features"] == FeatureConfig(n_draws=2, levels=3).settings()
    assert side["nfe"] == FeatureConfig(n_draws=2, levels=3).nfe() and side["n"] == 12


def test_score_takes_features_of_the_settings_it_is_given(feature_files):
    assert main(score(feature_files, "same")) == 0
    assert main(score(feature_files, "same", "--levels", "3", "--n_draws", "1", "--no-bpd")) == 0
    assert len(pd.read_parquet(feature_files / "scores_same_5.parquet")) == 12


@pytest.mark.parametrize("target, extra, message", [
    ("same", ["--levels", "4"], "train.parquet: features computed with --levels 3, not the --levels 4 given here"),
    ("same", ["--bpd"], "features computed with --bpd False, not the --bpd True given here"),
    # the same columns: only the sidecar tells these apart
    ("draws2", [], "draws2.parquet: features computed with n_draws=2, "),
])
def test_score_refuses_features_computed_otherwise_in_one_line(feature_files, capsys, target, extra, message):
    argv = score(feature_files, target, *extra)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vsgm score: error: ") and message in err, err
    assert not (feature_files / argv[argv.index("--out") + 1]).exists()


def test_score_refuses_told_settings_it_cannot_check(feature_files, tmp_path, capsys):
    """A table without its sidecar (not written by vsgm features) is scored, but not against told settings."""
    for name in ("train", "same"):
        pd.read_parquet(feature_files / f"{name}.parquet").to_parquet(tmp_path / f"{name}.parquet")
    assert main(score(tmp_path, "same")) == 0
    assert main(score(tmp_path, "same", "--levels", "3")) == 1
    assert "no train.json beside it records the settings" in capsys.readouterr().err
