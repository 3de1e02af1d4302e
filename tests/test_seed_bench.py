"""vsgm seed-bench: the ratio table, the seed's import, and the whole comparison against a real checkout
of the seed's code (GenerativeZoo) where the user has one: VSGM_SEED_CHECKOUT=path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vsgm.ood import LOSS_TIMES
from vsgm.seed_bench import (GOALS, SEED_OUTLIER_TIMES, SeedError, _placeholder, faster, format_ratios,
                             ratio_rows, seed_defaults_differ, seed_root)

CHECKOUT = os.environ.get("VSGM_SEED_CHECKOUT")


def test_ratio_rows_by_hand():
    rows = ratio_rows({"train_images_per_s": 16.0, "outlier_images_per_s": 26.0},
                      {"train_images_per_s": 80.0, "outlier_images_per_s": 39.0})
    assert [r["task"] for r in rows] == ["train", "outlier"]
    assert rows[0]["ratio"] == pytest.approx(5.0) and rows[0]["met"] and rows[0]["goal"] == GOALS["train"]
    assert rows[1]["ratio"] == pytest.approx(1.5) and not rows[1]["met"]
    text = format_ratios(rows, "head")
    assert "5.00x" in text and "1.50x" in text and "NOT met" in text and text.startswith("head")


def test_rounds_keep_each_figures_fastest():
    first = {"device": "cpu", "train_images_per_s": 16.0, "outlier_images_per_s": 30.0, "train_micro_batch": 32}
    second = {"device": "cpu", "train_images_per_s": 20.0, "outlier_images_per_s": 26.0, "train_micro_batch": 32}
    assert faster({}, first) == first
    assert faster(first, second) == {**second, "train_images_per_s": 20.0, "outlier_images_per_s": 30.0}


def test_ratio_rows_refuse_a_zero_rate():
    with pytest.raises(ValueError, match="positive"):
        ratio_rows({"train_images_per_s": 0.0, "outlier_images_per_s": 1.0},
                   {"train_images_per_s": 1.0, "outlier_images_per_s": 1.0})


def test_vsgm_scores_at_the_seeds_times():
    assert tuple(LOSS_TIMES) == SEED_OUTLIER_TIMES


def test_defaults_compared_by_value():
    from argparse import Namespace

    args = Namespace(model_channels=64, channel_mult=(1, 2, 2), sigma=25.0)
    assert seed_defaults_differ(args, {"model_channels": 64, "channel_mult": [1, 2, 2], "sigma": 25.0, "x": 1}) == {}
    assert seed_defaults_differ(args, {"model_channels": 32}) == {"model_channels": (64, 32)}


def test_not_a_checkout(tmp_path):
    with pytest.raises(SeedError, match="not a GenerativeZoo checkout"):
        seed_root(tmp_path)


def test_placeholder_says_what_to_install():
    wandb = _placeholder("wandb")
    with pytest.raises(SeedError, match="pip install wandb"):
        wandb.init(project="x")
    with pytest.raises(AttributeError):
        wandb.__file__
    assert _placeholder("dotenv").load_dotenv("x.env", override=True) is False


@pytest.mark.skipif(not CHECKOUT, reason="no checkout of the seed's code: set VSGM_SEED_CHECKOUT to a clone of "
                                         "https://github.com/caetas/GenerativeZoo")
def test_against_the_seeds_own_code(tmp_path):
    out = tmp_path / "seed.json"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    run = subprocess.run([sys.executable, "-m", "vsgm.cli", "seed-bench", "--seed", CHECKOUT, "--batch_size", "2",
                          "--repeats", "1", "--rounds", "2", "--out", str(out)], capture_output=True, text=True, env=env, timeout=1800)
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert [r["task"] for r in result["rows"]] == ["train", "outlier"] and result["rounds"] == 2
    for side in ("seed", "vsgm"):
        assert result[side]["train_images_per_s"] > 0 and result[side]["outlier_images_per_s"] > 0
    assert "training step" in run.stdout and "outlier score" in run.stdout
