"""The vsgm command: every seed option under its seed name and default, real booleans, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vsgm.cli import build_parser, main

# The seed's parameter table: name -> default.
SEED = {
    "dataset": "mnist", "batch_size": 128, "n_epochs": 100, "model_channels": 64, "num_res_blocks": 2,
    "attention_resolutions": [4], "dropout": 0.0, "channel_mult": [1, 2, 2], "conv_resample": True, "dims": 2,
    "num_heads": 4, "num_head_channels": 32, "use_scale_shift_norm": False, "resblock_updown": False,
    "use_new_attention_order": False, "solver": "euler", "atol": 1e-6, "rtol": 1e-6, "eps": 1e-3, "lr": 5e-4,
    "sigma": 25.0, "num_samples": 16, "num_steps": 100, "sample_and_save_freq": 10, "no_wandb": False,
    "num_workers": 0, "ema_rate": 0.999, "conditional": False, "warmup": 10, "decay": 0.0, "latent": False,
    "size": None, "n_classes": 10, "cfg": 1.0, "drop_prob": 0.1, "sampler_type": "EM", "snr": 0.16,
}


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_train_has_every_seed_option_with_its_default():
    args = vars(parse("train", "--out_dir", "x"))
    for name, default in SEED.items():
        assert name in args, name
        assert args[name] == default, (name, args[name], default)


def test_sample_and_ood_take_their_seed_options():
    s = vars(parse("sample", "--checkpoint", "m"))
    for name in ("checkpoint", "sampler_type", "solver", "num_steps", "num_samples", "atol", "rtol", "cfg", "snr"):
        assert name in s
    o = vars(parse("ood", "--checkpoint", "m", "--out_dataset", "cifar10"))
    assert o["out_dataset"] == "cifar10"


def test_booleans_are_real_flags():
    assert parse("train", "--out_dir", "x", "--use_scale_shift_norm").use_scale_shift_norm is True
    assert parse("train", "--out_dir", "x", "--no-conv_resample").conv_resample is False
    with pytest.raises(SystemExit):
        parse("train", "--out_dir", "x", "--use_scale_shift_norm", "False")  # a real flag takes no value (the reference parsed "False" as True)


@pytest.mark.parametrize("argv,needle", [
    (["sample", "--checkpoint", "m", "--solver", "rk5"], "--solver: invalid choice: 'rk5'"),
    (["sample", "--checkpoint", "m", "--num_steps", "0"], "--num_steps: must be >= 1"),
    (["train", "--out_dir", "x", "--n_epochs", "-1"], "--n_epochs: must be >= 1"),
    (["train", "--out_dir", "x", "--dropout", "1.5"], "--dropout: must be in [0, 1)"),
    (["train", "--out_dir", "x", "--sampler_type", "XX"], "--sampler_type: invalid choice"),
    (["train", "--out_dir", "x", "--eps", "2"], "--eps: must be in [1e-06, 1)"),
    (["train", "--out_dir", "x", "--num_head_channels", "0"], "--num_head_channels: must be >= 1, or -1"),
    (["sample", "--checkpoint", "m", "--batch_size", "0"], "--batch_size: must be >= 1"),
    (["sweep", "--checkpoint", "m", "--classifier", "c", "--reference", "r", "--out", "o",
      "--tolerances", "0.1", "0"], "--tolerances: must be in (0, 1]"),
])
def test_invalid_values_get_a_one_line_error(argv, needle, capsys):
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(lines) == 1 and needle in lines[0]


def test_the_installed_command_runs():
    out = subprocess.run([sys.executable, "-m", "vsgm.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: vsgm" in out.stdout


@pytest.mark.parametrize("cmd", ["train", "sample", "features", "score", "pair", "ood", "download", "prepare",
                                 "classifier", "quality", "aggregate", "bench"])
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as err:
        main([cmd, "--help"])
    assert err.value.code == 0 and "usage: vsgm " + cmd in capsys.readouterr().out


def test_sample_writes_grid_samples_and_cost(tiny_model, tmp_path, capsys):
    prefix = tmp_path / "s" / "ode-rk4-logstd"
    assert main(["sample", "--checkpoint", str(tiny_model), "--sampler_type", "ODE", "--solver", "rk4",
                 "--grid", "logstd", "--num_steps", "5", "--num_samples", "9", "--batch_size", "5",
                 "--out", str(prefix)]) == 0
    info = json.loads(prefix.with_suffix(".json").read_text())
    assert info["sampler"] == "ode-rk4-logstd" and info["nfe"] == 20 and info["seconds"] > 0
    # the progress counter ticks once per score evaluation of each of the two batches, of a known total
    assert "ode-rk4-logstd, 9 samples: 40/40 NFE (100%)" in capsys.readouterr().err
    with np.load(prefix.with_suffix(".npz")) as f:
        assert f["samples"].shape == (9, 1, 8, 8) and f["images"].dtype == np.uint8
    assert Image.open(prefix.with_suffix(".png")).size[0] >= 256


def test_solver_and_grid_without_the_ode_sampler_are_named_as_unused(tiny_model, tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tiny_model), "--solver", "rk4", "--grid", "logstd",
                 "--num_steps", "2", "--num_samples", "2", "--out", str(tmp_path / "s")]) == 0
    err = capsys.readouterr().err
    assert "--solver rk4 and --grid logstd are only used by --sampler_type ODE; sampling with EM" in err
    assert json.loads((tmp_path / "s.json").read_text())["sampler"] == "em"
    assert main(["sample", "--checkpoint", str(tiny_model), "--sampler_type", "pc", "--num_steps", "2",
                 "--num_samples", "2", "--out", str(tmp_path / "p")]) == 0
    assert "only used by" not in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tiny_model), "--solver", "rk4", "--num_steps", "2",
                 "--num_samples", "2", "--out", str(tmp_path / "r")]) == 0
    assert "--solver rk4 is only used by --sampler_type ODE; sampling with EM" in capsys.readouterr().err


def test_guidance_on_an_unconditional_model_is_refused(tiny_model, tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tiny_model), "--cfg", "2", "--out", str(tmp_path / "s")]) == 1
    assert "needs a conditional model" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_names_with_dots_keep_their_own_files(tiny_model, digits_train, tmp_path):
    """An output prefix or name with a dot of its own (run_cfg1.5, x.v2) is not cut at that dot."""
    prefix = tmp_path / "run_cfg1.5"
    assert main(["sample", "--checkpoint", str(tiny_model), "--num_steps", "2", "--num_samples", "2",
                 "--out", str(prefix)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_cfg1.5.json", "run_cfg1.5.npz", "run_cfg1.5.png"]
    for name in ("x.parquet", "x.v2"):
        assert main(["features", "--checkpoint", str(tiny_model), "--data", str(digits_train), "--max_images", "4",
                     "--levels", "2", "--out", str(tmp_path / "f" / name)]) == 0
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["x.json", "x.parquet", "x.v2", "x.v2.json"]


def test_train_records_the_data_it_was_given(digits_train, tmp_path, capsys):
    """--data decides the dataset and size; a --size the data does not have is refused."""
    common = ["train", "--data", str(digits_train), "--n_epochs", "1", "--warmup", "0", "--no_wandb",
              "--model_channels", "16", "--num_res_blocks", "1", "--channel_mult", "1", "2",
              "--attention_resolutions", "2", "--num_head_channels", "16"]
    assert main([*common, "--size", "16", "--out_dir", str(tmp_path / "a")]) == 1
    assert "size 16 asked for" in capsys.readouterr().err and not (tmp_path / "a" / "model.safetensors").exists()
    assert main([*common, "--out_dir", str(tmp_path / "b")]) == 0
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    assert meta["options"]["dataset"] == meta["dataset"] == "digits"
    assert meta["options"]["size"] == meta["size"] == 8
    # a finished model is not trained over unless --restart says so
    weights = (tmp_path / "b" / "model.safetensors").read_bytes()
    assert main([*common, "--out_dir", str(tmp_path / "b"), "--seed", "1"]) == 1
    assert "is a finished model; --restart" in capsys.readouterr().err
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == weights
    assert main([*common, "--out_dir", str(tmp_path / "b"), "--seed", "1", "--restart"]) == 0
    assert (tmp_path / "b" / "model.safetensors").read_bytes() != weights


def test_data_of_other_dimensionality_and_directories_are_one_line_errors(tiny_model, digits_train, tmp_path,
                                                                         capsys):
    assert main(["train", "--data", str(digits_train), "--out_dir", str(tmp_path / "m"), "--dims", "1",
                 "--n_epochs", "1", "--warmup", "0"]) == 1
    assert main(["sample", "--checkpoint", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "dims 1 needs 1-D signals" in err[0] and "vsgm sample: error:" in err[1]


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "none.safetensors")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint not found" in err[0]


def test_ood_command_scores_a_model_against_an_outlier_set(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["ood", "--checkpoint", str(tiny_model), "--out_dataset", "noise", "--max_images", "200",
                 "--levels", "4"]) == 0
    out = capsys.readouterr().out
    assert "test_vs_ood" in out and "train_vs_test" in out and "msma_knn" in out
    assert (tmp_path / "resources" / "prepared").exists()


def test_ood_counts_follow_max_images_and_dataset_is_honoured(tiny_model, tmp_path, monkeypatch, capsys):
    """Prepared subsets are cached per image budget, and --dataset names the in-distribution set."""
    monkeypatch.chdir(tmp_path)

    def counts(*extra):
        assert main(["ood", "--checkpoint", str(tiny_model), "--out_dataset", "noise", "--levels", "2", *extra]) == 0
        header, *rows = capsys.readouterr().out.splitlines()
        cols = header.split()
        row = next(r.split() for r in rows if "test_vs_ood" in r)
        return int(row[cols.index("n_in")]), int(row[cols.index("n_out")])

    assert counts("--max_images", "60") == (60, 60)
    assert counts("--max_images", "90") == (90, 90)
    cache = tmp_path / "resources" / "prepared" / "for_digits_8px_1ch"
    assert {"noise_test_60.safetensors", "noise_test_90.safetensors"} <= {p.name for p in cache.iterdir()}
    counts("--max_images", "60", "--dataset", "photos")
    assert (tmp_path / "resources" / "prepared" / "for_photos_8px_1ch" / "photos_test_60.safetensors").exists()


def test_train_without_data_prepares_the_dataset_first(tmp_path, monkeypatch):
    """`vsgm train --dataset X` as the seed's `--train`: the split is prepared on the fly, then trained on."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--dataset", "digits", "--size", "8", "--out_dir", "run", "--model_channels", "16",
                 "--num_res_blocks", "1", "--channel_mult", "1", "2", "--attention_resolutions", "2",
                 "--num_head_channels", "16", "--n_epochs", "1", "--warmup", "0", "--batch_size", "128",
                 "--no_wandb"]) == 0
    assert (tmp_path / "resources/prepared/digits/train-8px-1ch.safetensors").exists()
    assert (tmp_path / "run/model.safetensors").exists() and (tmp_path / "run/train.csv").exists()
