"""vsgm.workflow, the workflow's logic without Snakemake: the config check and its messages, the
typing of --config strings, the flags, the memory estimates and the jobs a config asks for."""

from __future__ import annotations

import copy
import shlex
import subprocess
import sys

import pytest
import yaml

from vsgm.data.registry import get_info
from vsgm.workflow import CUDA_RUNTIME_MB, FLOAT_COPY, MB, RUNTIME_MB, Plan, cli_flags, mem_mb
from vsgm.workflow_schema import ConfigError, coerce, load_schema
from workflow_utils import REPO

SCHEMA = load_schema(REPO / "workflow/schemas/config.schema.yaml")


def test_the_module_does_not_import_torch():
    code = "import sys, vsgm.workflow, vsgm.workflow_schema; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def base_config(**changes) -> dict:
    config = yaml.safe_load((REPO / "config/test.yaml").read_text())
    config.update(copy.deepcopy(changes))
    return config


def plan_of(**changes) -> Plan:
    return Plan.checked(base_config(**changes), SCHEMA)


def refusal(config: dict) -> str:
    with pytest.raises(ConfigError) as err:
        Plan.checked(config, SCHEMA)
    message = str(err.value)
    assert message.startswith("invalid config: ") and "\n" not in message
    return message


# -- the config check ----------------------------------------------------------------------------


def test_the_schema_takes_every_sampler_name_and_only_those():
    """The schema's sampler names come from vsgm.sampler_names (one list), for samplers and the sweep's."""
    from vsgm.sampler_names import all_sampler_names

    names = all_sampler_names()
    assert plan_of(samplers=names).samplers() == names
    plan_of(sweep={"enabled": True, "samplers": names})
    for bad in ("ode-rk5", "ode-euler-log", "EM", "pc-logstd"):
        assert f"sweep.samplers.0: '{bad}' does not match" in refusal(base_config(sweep={"samplers": [bad]}))


@pytest.mark.parametrize("section, changes, names", [
    ("train", {"n_epoch": 3}, ["unknown key train.n_epoch (valid in train: n_epochs,"]),  # typo of n_epochs
    ("train", {"n_epochs": "ten"}, ["train.n_epochs: 'ten' is not of type 'integer'"]),  # jsonschema's message
    ("unet", {"channel_mult": 2}, ["unet.channel_mult"]),                   # list expected
    ("sample", {"num_steps": 0}, ["sample.num_steps: 0 is less than the minimum of 1"]),
    ("samplers", ["em", "ode-rk5"], ["samplers.1", "ode-rk5"]),            # unknown sampler
    ("samplers", [], ["samplers"]),                                          # nothing to sample with
    ("ood", {"sets": []}, ["ood.sets"]),                                     # nothing to score against
    ("models", {m: {"size": 8, "channels": 1, "ood": [m]} for m in ("digits", "photos")},
     ["ood.sets / models.*.ood", "no pair"]),                                # each model only against itself
    ("unet", {"attention_resolutions": [3]}, ["unet for models.digits, models.photos", "attention_resolutions [3]"]),
    ("unet", {"attention_resolutions": [4]}, ["unet", "attention_resolutions [4]"]),  # beyond channel_mult [1, 2]
    ("unet", {"channel_mult": [1, 2, 2, 2, 2]}, ["unet", "image size 8"]),  # 8 px cannot be halved 4 times
    ("datasets", {"digits": {"dataset": "digitz"}}, ["datasets.digits.dataset: unknown dataset 'digitz'; valid:"]),
    ("datasets", {"digits": {"dataset": "digits", "classes": [3, 10]}},
     ["datasets.digits.classes: [10] out of range (digits has labels 0-9)"]),
    ("models", {"mnist": {"size": 8, "channels": 1}}, ["models.mnist: not a key of datasets (digits, photos, noise)"]),
    ("bogus", {"x": 1}, ["unknown key bogus (valid in top level: data_root, seed,"]),
    ("unet", {"use_scale_shift_norm": False},                                # widths 16, 32: blind to t
     ["unet: at width(s) [16, 32]", "use_scale_shift_norm: true", "unet_allow_time_blind: true"]),
])
def test_a_bad_config_is_refused_in_one_line_naming_the_key(section, changes, names):
    config = base_config()
    if isinstance(changes, dict) and isinstance(config.get(section), dict):
        config[section] = {**config[section], **changes}
    else:
        config[section] = changes
    message = refusal(config)
    for name in names:
        assert name in message, message


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("section, changes, names", [
    ("train", {"warmup": 1, "n_epochs": 1}, ["train: warmup (1 epochs) must be below n_epochs (1)"]),
    ("sample", {"cfg": 2.0}, ["cfg 2.0", "needs a conditional model"]),   # guidance on unconditional models
    ("sde", {"sigma": NAN}, ["sde.sigma: must be a finite number, got nan"]),
    ("train", {"lr": INF}, ["train.lr: must be a finite number, got inf"]),
    ("sde", {"eps": 1e-9}, ["sde.eps: must be in [1e-06, 1)"]),            # the smallest std underflows float32
    ("models", {"digits": {"size": 8, "channels": 1, "ood": ["digits", "noise"]}},
     ["models.digits.ood: ['digits'] share(s) images with model digits"]),  # its own set, no longer dropped
    ("datasets", {"digits": {"dataset": "digits"}, "noise": {"dataset": "noise"},
                  "digits04": {"dataset": "digits", "classes": [0, 1, 2, 3, 4]}},
     ["ood.sets: ['digits04'] share(s) images with model digits"]),     # a class subset of the model's own set
])
def test_what_vsgm_would_refuse_is_refused_by_the_config_check(section, changes, names):
    """The checks of vsgm's own commands (vsgm.checks, the UNet's), run on the config: one line."""
    config = base_config()
    config["models"] = {"digits": config["models"]["digits"]}
    config["datasets"] = {k: config["datasets"][k] for k in ("digits", "noise")}
    config["ood"] = {"sets": ["digits04", "noise"]} if section == "datasets" else {"sets": "all"}
    config[section] = {**config.get(section, {}), **changes}
    message = refusal(config)
    for name in names:
        assert name in message, message


def test_several_problems_come_in_one_line():
    config = base_config(models={"digits": {"size": 8, "channels": 1}, "mnist": {"size": 8, "channels": 1}},
                         datasets={"digits": {"dataset": "digitz"}, "noise": {"dataset": "noise"}})
    message = refusal(config)
    assert "datasets.digits.dataset: unknown dataset 'digitz'" in message
    assert "; models.mnist: not a key of datasets (digits, noise)" in message


def test_a_time_blind_unet_is_planned_when_allowed():
    config = base_config()
    config["unet"]["use_scale_shift_norm"] = False
    config["unet_allow_time_blind"] = True
    assert Plan.checked(config, SCHEMA).model_instances() == ["digits", "photos"]


def test_the_check_fills_in_the_schemas_defaults():
    config = base_config()
    Plan.checked(config, SCHEMA)
    assert config["replicates"] == 1 and config["tracking"] == "none"
    assert config["train"]["lr"] == 5e-4 and config["train"]["n_epochs"] == 1  # the schema's default, test.yaml's
    assert config["ood"] == {"sets": "all"} and config["models"]["digits"]["ood"] is None


def test_config_strings_are_typed_by_the_schema():
    """Snakemake reads --config 'train={n_epochs: 7, lr: 0.002}' and nested lists as strings."""
    config = base_config(seed="3", train={"n_epochs": "7", "lr": "0.002", "max_images": "null"},
                         unet={"channel_mult": ["1", "2"], "attention_resolutions": "[2]"},
                         datasets={"digits": {"dataset": "digits", "classes": "[0, 1]"}, "noise": {"dataset": "noise"}},
                         models={"digits": {"size": "8", "channels": "1", "ood": "all"}})
    coerce(config, SCHEMA)
    assert config["seed"] == 3 and config["train"] == {"n_epochs": 7, "lr": 0.002, "max_images": None}
    assert config["unet"] == {"channel_mult": [1, 2], "attention_resolutions": [2]}
    assert config["datasets"]["digits"]["classes"] == [0, 1] and config["datasets"]["noise"] == {"dataset": "noise"}
    assert config["models"]["digits"] == {"size": 8, "channels": 1, "ood": "all"}  # 'all' stays a string
    assert coerce("ten", SCHEMA["properties"]["seed"], SCHEMA) == "ten"  # left for the schema's message


# -- flags ---------------------------------------------------------------------------------------


def test_cli_flags_are_sorted_and_typed():
    flags = cli_flags({"seed": 3, "bpd": True, "denoise": False, "steps": [5, 10], "classes": None,
                       "root": "my data"})
    assert flags == "--bpd --no-denoise --root 'my data' --seed 3 --steps 5 10"
    assert shlex.split(flags)[2:4] == ["--root", "my data"]


def test_command_flags_of_the_test_config():
    plan = plan_of(replicates=2)
    assert plan.download_flags("digits", "any") == "--dataset digits --root resources/data"
    assert plan.download_flags("octmnist", "28") == "--dataset octmnist --root resources/data --size 28"
    assert plan.prepare_flags("digits", "noise", "test") == (
        "--bottleneck 8 --channels 1 --dataset noise --max_images 64 --root resources/data --seed 0 --size 8"
        " --split test")
    train = shlex.split(plan.train_flags("digits-r1"))
    assert train[train.index("--seed") + 1] == "1" and train[train.index("--n_epochs") + 1] == "1"
    assert "--max_images" not in train and train[train.index("--log_with") + 1] == "none"
    assert plan.launch_flags(0, 1).startswith("--cpu ") and "--num_processes 1" in plan.launch_flags(0, 1)
    assert plan.launch_flags(2, 8).endswith("--num_processes 2 --multi_gpu --main_process_port 0")
    assert "--multi_gpu" not in plan.launch_flags(1, 8)
    assert plan.score_flags("train") == "--seed 0 --holdout" and plan.score_flags("noise") == "--seed 0"
    sweep = plan.sweep_flags()
    assert "--samplers em ode-rk4-logstd" in sweep and "--steps 5 10" in sweep and "--tolerances 0.01" in sweep


# -- memory --------------------------------------------------------------------------------------


def test_mem_mb_is_the_runtime_plus_the_bytes_held_and_at_least_the_floor():
    assert mem_mb(0, floor=4000) == 4000
    assert mem_mb(5_000 * MB + 1, floor=4000) == RUNTIME_MB + 5_001
    assert mem_mb(2_000 * MB, floor=4000, runtime_mb=CUDA_RUNTIME_MB) == 5000


def test_memory_estimates_by_hand():
    """config/benchmark.yaml: cifar10 at 32x32 RGB (50,000 training, 10,000 test images, stored as
    32x32 arrays with a contiguous copy)."""
    config = yaml.safe_load((REPO / "config/benchmark.yaml").read_text())
    plan = Plan.checked(config, SCHEMA)
    info, pixels = get_info("cifar10"), 3 * 32 * 32
    train, test = info.split_images("train"), min(info.split_images("test"), config["features"]["max_images"])
    assert (train, test) == (50_000, 10_000)
    assert plan.train_split_bytes("cifar10-r2") == train * pixels
    assert plan.sweep_bytes("cifar10") == test * pixels * FLOAT_COPY
    assert plan.quality_bytes("cifar10") == test * pixels * FLOAT_COPY + train * pixels
    assert plan.features_bytes("cifar10", "svhn") == test * pixels  # svhn's test split in cifar10's space
    assert plan.prepare_bytes("cifar10", "cifar10", "train") == (2 * train + train) * pixels + train * pixels
    assert mem_mb(plan.train_split_bytes("cifar10"), floor=8000, runtime_mb=CUDA_RUNTIME_MB) == 8000
    assert 4 * train * pixels / MB + RUNTIME_MB < 4000  # about 615 MB held: the rule's default stays
    assert mem_mb(plan.prepare_bytes("cifar10", "cifar10", "train"), floor=4000) == 4000


# -- the jobs --------------------------------------------------------------------------------------


def test_replicates_give_each_model_training_jobs_of_its_own():
    plan = plan_of(replicates=2)
    assert plan.model_instances() == ["digits", "digits-r1", "photos", "photos-r1"]
    # the prepared files and the feature classifier are the configured model's, shared by its replicates
    assert plan.prepared("digits-r1", "digits-r1", "train") == "resources/prepared/digits/digits_train.safetensors"
    assert plan.classifier_file("photos-r1") == "results/photos/classifier.safetensors"
    assert plan.set_data("digits-r1", "noise") == "resources/prepared/digits/noise_test.safetensors"
    assert plan.ood_sets("digits-r1") == ["photos", "noise"]
    assert len(plan.ood_tables()) == 4 * 2 and "results/photos-r1/ood_digits.csv" in plan.ood_tables()
    assert len(plan.sample_files("png")) == 4 * 2 and len(plan.quality_files()) == 4 * 2
    assert plan.sweep_files() == [f"results/{m}/solver_sweep.csv" for m in plan.model_instances()]
    assert plan.aggregate_inputs()["histories"] == [f"results/{m}/train.csv" for m in plan.model_instances()]
    assert set(plan.all_targets()) == {*plan.aggregate_files().values(), *plan.ood_tables(),
                                       *plan.sample_files("png")}
    assert "results/solver_sweep.csv" in plan.aggregate_files().values()


def test_ood_sets_leave_out_the_sets_sharing_a_models_images():
    datasets = {"digits": {"dataset": "digits"}, "low": {"dataset": "digits", "classes": [0, 1]},
                "high": {"dataset": "digits", "classes": [8, 9]}, "noise": {"dataset": "noise"}}
    plan = plan_of(datasets=datasets, models={"low": {"size": 8, "channels": 1}, "noise": {"size": 8, "channels": 1,
                                                                                       "ood": ["low"]}})
    assert plan.ood_sets("low") == ["high", "noise"]  # digits holds low's images
    assert plan.ood_sets("noise") == ["low"]


def test_wildcards_match_only_configured_names():
    import re

    constraints = plan_of(replicates=2).constraints()
    assert re.fullmatch(constraints["model"], "digits-r1") and not re.fullmatch(constraints["model"], "digits-r2")
    assert re.fullmatch(constraints["set"], "train") and not re.fullmatch(constraints["out"], "train")
    assert re.fullmatch(constraints["sampler"], "ode-rk4-logstd") and not re.fullmatch(constraints["sampler"], "pc")
    assert re.fullmatch(constraints["split"], "trainsub")


def test_features_max_train_images_fits_scorers_on_a_subset():
    plan = plan_of(features={"max_images": 64, "max_train_images": 100})
    assert plan.set_split("digits-r1", "train") == ("digits-r1", "trainsub")
    assert plan.set_data("digits", "train") == "resources/prepared/digits/digits_trainsub.safetensors"
    assert plan.split_selection("trainsub") == {"split": "train", "max_images": 100}  # min(256 train, 100)
