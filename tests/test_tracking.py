"""Experiment tracking through accelerate: tracker selection, tensorboard event files, no login prompt."""

import pytest

from vsgm import tracking
from vsgm.cli import main

TINY = ["--model_channels", "16", "--num_res_blocks", "1", "--channel_mult", "1", "2", "--attention_resolutions", "2",
        "--num_head_channels", "16", "--batch_size", "64", "--warmup", "0"]


def test_seed_rule_without_log_with():
    """No --log_with: wandb when installed unless --no_wandb (the seed's meaning)."""
    assert tracking.resolve(None, no_wandb=True) == []
    assert tracking.resolve(None, no_wandb=False) == (["wandb"] if tracking.installed("wandb") else [])
    assert tracking.resolve("none", no_wandb=False) == []
    assert tracking.resolve("all", no_wandb=True) == [t for t in ("tensorboard", "mlflow") if tracking.installed(t)]


def test_uninstalled_tracker_is_one_line_naming_the_flag(tmp_path, capsys, digits_train):
    missing = next((t for t in tracking.TRACKERS if not tracking.installed(t)), None)
    if missing is None:
        pytest.skip("every tracker is installed here")
    assert main(["train", "--data", str(digits_train), "--out_dir", str(tmp_path), "--n_epochs", "1", *TINY,
                 "--log_with", missing]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--log_with {missing}" in err and "not installed" in err


def test_wandb_never_prompts_without_a_login(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # no ~/.netrc login
    tracking.avoid_login_prompt(["wandb"])
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")  # a user's explicit choice stands
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    tracking.avoid_login_prompt(["wandb"])
    assert os.environ["WANDB_MODE"] == "online"


@pytest.mark.slow
def test_tensorboard_writes_loss_and_sample_grids(tmp_path, digits_train):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "model"
    assert main(["train", "--data", str(digits_train), "--out_dir", str(out), "--n_epochs", "2", *TINY,
                 "--sample_and_save_freq", "1", "--num_steps", "3", "--num_samples", "4",
                 "--log_with", "tensorboard"]) == 0
    runs = [p.parent for p in (out / "tracking").rglob("events.out.tfevents.*")]
    assert runs, "no tensorboard event file"
    events = EventAccumulator(str(runs[0]), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss", "lr", "images_per_s"} <= set(tags["scalars"])
    losses = events.Scalars("loss")
    assert len(losses) == 2 and losses[-1].step > losses[0].step > 0
    csv_rows = (out / "train.csv").read_text().strip().splitlines()[1:]  # the CSV log stays
    assert [float(r.split(",")[2]) for r in csv_rows] == pytest.approx([e.value for e in losses], rel=1e-5)
    assert any(t.startswith("samples") for t in tags["images"])
