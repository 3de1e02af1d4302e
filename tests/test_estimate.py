"""vsgm estimate: the device-hours of a tiny config against a hand computation."""

import copy
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vsgm.estimate import (CLASSIFIER_EPOCHS, CLASSIFIER_FLOPS_32RGB, CLASSIFIER_MAX_IMAGES, LOSS_TIMES,
                           NFE_PER_STEP, EstimateError, estimate, sampler_nfe)
from vsgm.workflow import Plan
from vsgm.workflow_schema import load_schema

ROOT = Path(__file__).parents[1]
SCHEMA = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
UNET = {"model_channels": 32, "num_res_blocks": 1, "attention_resolutions": [2], "channel_mult": [1, 2],
        "num_head_channels": 16, "use_scale_shift_norm": True}
CONFIG = {
    "replicates": 2,
    "datasets": {"digits": {"dataset": "digits"}, "noise": {"dataset": "noise"}},
    "models": {"digits": {"size": 8, "channels": 1}},
    "unet": UNET,
    "train": {"n_epochs": 3, "warmup": 1, "batch_size": 64},
    "samplers": ["em", "ode-rk4"],
    "sample": {"num_samples": 4, "num_steps": 10},
    "sweep": {"enabled": True, "samplers": ["ode-euler", "ode-dopri5"], "steps": [2], "tolerances": [1e-6],
              "num_samples": 8},
    "features": {"n_draws": 1, "levels": 10, "bpd": False, "max_images": 100, "max_train_images": 50},
}
BENCH = {"device": "cpu (2 threads)", "image": [1, 8, 8], "batch_size": 64, "model": UNET,
         "train_images_per_s": 100.0, "inference_images_per_s": 1000.0, "score_loss_images_per_s": 200.0,
         "score_msma_images_per_s": 50.0, "score_msma_levels": 10, "score_bpd_steps": 10,
         "train_flops_per_step": 1e9, "train_step_s": 0.5}


def apply_defaults(config, schema):
    """The config as the workflow checks it: typed, its schema defaults filled in."""
    return Plan.checked(copy.deepcopy(config), schema).config


def by_rule(rows):
    return {r["rule"]: r for r in rows}


def test_tiny_config_by_hand():
    rows, notes = estimate(apply_defaults(CONFIG, SCHEMA), [BENCH], startup_s=15.0)
    r = by_rule(rows)
    # training: 2 replicates x 3 epochs x digits' 1,438 training images at 100 images/s
    assert r["train_model"]["jobs"] == 2 and r["train_model"]["work"] == 2 * 3 * 1438
    assert r["train_model"]["compute_s"] == pytest.approx(2 * 3 * 1438 / 100)
    # sampling: (em 10 + rk4 4x10) NFE x 4 samples x 2 replicates, at 1000 forward images/s
    assert r["sample_model"]["jobs"] == 4 and r["sample_model"]["work"] == 2 * (10 + 40) * 4
    assert r["sample_model"]["compute_s"] == pytest.approx(0.4)
    # the sweep: euler at 2 steps + dopri5 at its reference tolerance (116, assumed) x 8 samples x 2
    assert r["sample_sweep"]["compute_s"] == pytest.approx(2 * 8 * (2 + 116) / 1000)
    # the classifier: 5 epochs x 1,438 images x 48 MFLOP scaled to 1x8x8 (1 MFLOP) at the step's 2 GFLOP/s
    assert r["sample_classifier"]["jobs"] == 1
    assert r["sample_classifier"]["compute_s"] == pytest.approx(5 * 1438 * 1e6 / 2e9)
    # features: train subset 50, test 100 (of 359), noise 100 (of 1000); 1/200 + 10 x (1/50)/10 s per image
    assert r["ood_features"]["jobs"] == 6 and r["ood_features"]["work"] == 2 * (50 + 100 + 100)
    assert r["ood_features"]["compute_s"] == pytest.approx(500 * (1 / 200 + 1 / 50))
    assert (r["sample_quality"]["jobs"], r["sample_paired"]["jobs"], r["ood_score"]["jobs"], r["ood_pair"]["jobs"],
            r["data_prepare"]["jobs"]) == (4, 2, 6, 2, 4)
    total = r["total"]
    assert total["jobs"] == 33 and total["startup_s"] == 33 * 15  # 2+4+2+1+6+4+2+6+2+4
    assert total["hours"] == pytest.approx((86.28 + 0.4 + 1.888 + 3.595 + 12.5 + 33 * 15) / 3600)
    assert notes == ["sweep: ode-dopri5's NFE at each tolerance assumed (1-D oracle)"]  # em and rk4 are exact


def test_bits_per_dim_adds_its_steps():
    config = apply_defaults({**CONFIG, "features": {**CONFIG["features"], "bpd": True, "bpd_steps": 20}}, SCHEMA)
    bench = {**BENCH, "score_bpd_images_per_s": 2.0}  # 10 steps per image: 0.05 s per step
    with_bpd = by_rule(estimate(config, [bench])[0])["ood_features"]["compute_s"]
    assert with_bpd == pytest.approx(500 * (1 / 200 + 1 / 50 + 20 * 0.05))
    with pytest.raises(EstimateError, match="bits/dim"):
        estimate(config, [BENCH])


def test_a_model_without_its_bench_says_what_to_run():
    config = apply_defaults({**CONFIG, "models": {"digits": {"size": 16, "channels": 1}}}, SCHEMA)
    with pytest.raises(EstimateError, match="vsgm bench --size 16 --channels 1 --model_channels 32"):
        estimate(config, [BENCH])


def test_nfe_of_the_samplers():
    assert sampler_nfe("pc", 100, 1e-6, {}) == (200, False)
    assert sampler_nfe("ode-rk4-logstd", 10, 1e-6, {}) == (40, False)
    assert sampler_nfe("ode-dopri5", 100, 1e-6, {}) == (116, True)
    assert sampler_nfe("ode-dopri5", 100, 1e-6 * 2 ** 6, {})[0] == pytest.approx(116 / 2)  # tol^(-1/6)
    assert sampler_nfe("ode-dopri5", 100, 1e-6, {"ode-dopri5": 158}) == (158, False)
    with pytest.raises(EstimateError, match="unknown sampler"):
        sampler_nfe("ode-nope", 10, 1e-6, {})


def test_constants_are_the_librarys():
    from vsgm import quality
    from vsgm.ood import LOSS_TIMES as TIMES
    from vsgm.sampler_names import all_sampler_names
    from vsgm.samplers import SamplerSettings, method

    assert CLASSIFIER_MAX_IMAGES == quality.CLASSIFIER_MAX_IMAGES and LOSS_TIMES == len(TIMES)
    # every fixed-step sampler's NFE as the samplers' registry states it (the Adams methods vary: assumed)
    fixed = [name for name in all_sampler_names() if method(name).nfe_per_step is not None]
    assert fixed and all(sampler_nfe(name, 10, 0.0, {}) == (method(name).expected_nfe(SamplerSettings(num_steps=10)),
                                                            False) for name in fixed)
    assert quality.train_classifier.__defaults__[0] == CLASSIFIER_EPOCHS and CLASSIFIER_FLOPS_32RGB == 48e6


def test_torch_free():
    code = "import sys, vsgm.estimate; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(ROOT / "src")})


def test_command_writes_the_table(tmp_path, capsys):
    from vsgm.cli import main

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "bench.json").write_text(json.dumps(BENCH))
    argv = ["estimate", "--configfile", str(tmp_path / "config.yaml"), "--bench", str(tmp_path / "bench.json"),
            "--schema", str(ROOT / "workflow/schemas/config.schema.yaml"), "--startup_s", "0"]
    main([*argv, "--out", str(tmp_path / "estimate.csv")])
    rows = list(csv.DictReader((tmp_path / "estimate.csv").open()))
    assert rows[-1]["rule"] == "total" and float(rows[-1]["compute_s"]) == pytest.approx(104.663)
    assert "train_model" in capsys.readouterr().out
    # a measured NFE replaces the counted one of a configured sampler (the sweep's tolerances keep theirs)
    main([*argv, "--nfe", "ode-rk4=1000", "ode-dopri5=1000", "--out", str(tmp_path / "measured.csv")])
    measured = {r["rule"]: float(r["compute_s"]) for r in csv.DictReader((tmp_path / "measured.csv").open())}
    assumed = {r["rule"]: float(r["compute_s"]) for r in rows}
    changed = {rule for rule in assumed if measured[rule] != pytest.approx(assumed[rule])}
    assert changed and changed == {"sample_model", "total"}, changed


@pytest.mark.parametrize("pair, needle", [("ode-dopri5", "NAME=N"), ("=5", "NAME=N"), ("pc=nan", "N must be"),
                                          ("pc=0", "N must be"), ("pc=1e30", "N must be")])
def test_command_refuses_a_bad_nfe_in_one_line(tmp_path, capsys, pair, needle):
    from vsgm.cli import main

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "bench.json").write_text(json.dumps(BENCH))
    with pytest.raises(SystemExit) as err:
        main(["estimate", "--configfile", str(tmp_path / "config.yaml"), "--bench", str(tmp_path / "bench.json"),
              "--nfe", pair])
    message = str(err.value.code)
    assert message.startswith("vsgm estimate: --nfe") and needle in message and "\n" not in message
