"""The Snakemake workflow: lint, formatting, config checks, the DAG, and real runs of config/test.yaml.

Every run happens in a copy of the workflow in a temporary directory (results/, resources/,
logs/ start empty there), as a user would run it from a fresh checkout.
"""

from __future__ import annotations

import json
import re
import subprocess

import pandas as pd
import pytest
import yaml
from PIL import Image

from vsgm.tables import OOD, PAIR_COLUMNS, REAL_ROW, SANITY
from workflow_utils import (
    BIN,
    REPO,
    count_rules,
    dry_run,
    job_set,
    snakemake,
    workflow_copy,
    write_config,
)

SEED_DATASETS = ["mnist", "cifar10", "cifar100", "places365", "dtd", "fashionmnist", "chestmnist", "octmnist",
                 "tissuemnist", "pneumoniamnist", "svhn", "tinyimagenet", "imagenet"]
RUN_TIMEOUT = 1500  # a whole test.yaml run on 2 busy cores


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    """A fresh copy of the workflow."""
    return workflow_copy(tmp_path_factory.mktemp("wf"))


# -- static checks ---------------------------------------------------------------------------------


def test_lint_has_no_findings(wf):
    proc = snakemake(wf, "--lint", timeout=300)
    assert proc.returncode == 0, proc.stdout
    assert "Lints for" not in proc.stdout, proc.stdout
    assert "Congratulations" in proc.stdout


def test_snakefmt_reports_no_changes():
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow").rglob("*.smk"))]
    proc = subprocess.run([str(BIN / "snakefmt"), "--check", *files], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_workflow_profile_is_picked_up(wf):
    proc = snakemake(wf, "--dry-run", timeout=300, check=True)
    assert "workflow specific profile profiles/default" in proc.stdout


# -- config ----------------------------------------------------------------------------------------


def assert_refused_before_any_job(wf, tmp_path, config, names):
    """The config is refused in one 'invalid config' line holding every name: no traceback, nothing built."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake(wf, "--cores", "1", "--configfile", str(bad), timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stdout.splitlines() if "invalid config" in line]
    assert len(errors) == 1, proc.stdout
    for name in names:
        assert name in errors[0], errors[0]
    assert "Traceback" not in proc.stdout, proc.stdout
    assert not (wf / "results").exists() and not (wf / "resources").exists()


# every refusal and its message: tests/test_workflow_module.py; here one real run per kind of check
@pytest.mark.parametrize("section, changes, names", [
    ("train", {"n_epoch": 3}, ["train", "n_epoch"]),                                    # the schema
    ("train", {"warmup": 1, "n_epochs": 1}, ["train: warmup (1 epochs) must be below n_epochs (1)"]),  # vsgm's
    ("unet", {"use_scale_shift_norm": False}, ["unet", "width(s) [16, 32]"]),          # a time-blind UNet
])
def test_bad_config_fails_before_any_job_with_a_message_naming_the_key(wf, tmp_path, section, changes, names):
    config = yaml.safe_load((REPO / "config/test.yaml").read_text())
    config[section] = {**config[section], **changes}
    assert_refused_before_any_job(wf, tmp_path, config, names)


def test_replicates_train_each_model_again_with_its_own_seed(wf, tmp_path):
    config = write_config(tmp_path / "reps.yaml", replicates=2)
    jobs = dry_run(wf, "--configfile", str(config))
    single = dry_run(wf, "--configfile", "config/test.yaml")
    counts, once = count_rules(jobs), count_rules(single)
    assert {j.wc("model") for j in jobs if j.rule == "train_model"} == {"digits", "digits-r1", "photos",
                                                                       "photos-r1"}
    # twice the models, samples and pairs; the data and the feature classifiers are shared
    for rule in ("train_model", "sample_model", "sample_quality", "ood_pair", "sample_sweep"):
        assert counts[rule] == 2 * once[rule], rule
    for rule in ("data_prepare", "sample_classifier"):
        assert counts[rule] == once[rule], rule
    # replicate 0 keeps the paths and seed of a run without replicates
    assert {job for job in job_set(single) if dict(job[1]).get("model")} <= job_set(jobs)
    proc = snakemake(wf, "--dry-run", "--cores", "1", "--printshellcmds", "--configfile", str(config),
                     timeout=300, check=True)
    trains = [line for line in proc.stdout.splitlines() if "vsgm.cli train" in line]
    seeds = {("-r1" in line.split("--out_dir ")[1].split()[0], line.split("--seed ")[1].split()[0])
             for line in trains}
    assert seeds == {(False, "0"), (True, "1")}


def test_configfile_replaces_the_default_config(wf, tmp_path):
    # one model instead of the default's two: nothing of the default's photos model may remain
    config = write_config(tmp_path / "one.yaml", models={"digits": {"size": 8, "channels": 1}})
    jobs = dry_run(wf, "--configfile", str(config))
    assert {j.wc("model") for j in jobs if j.wc("model")} == {"digits"}
    assert count_rules(jobs)["train_model"] == 1
    # ... and --config still overrides single (nested) values, typed by the schema
    proc = snakemake(wf, "--dry-run", "--cores", "1", "--printshellcmds", "--configfile", str(config),
                     "--config", "train={n_epochs: 7, lr: 0.002}", "seed=3", timeout=300, check=True)
    train = next(line for line in proc.stdout.splitlines() if "vsgm.cli train" in line)
    assert "--n_epochs 7 " in train and "--lr 0.002 " in train and "--seed 3 " in train
    # ... and of config/config.yaml when no --configfile is given (its models stay)
    jobs = dry_run(wf, "--config", "seed=3")
    assert {j.wc("model") for j in jobs if j.rule == "train_model"} == {"digits", "photos"}


# -- the DAG ---------------------------------------------------------------------------------------


def test_benchmark_dry_run_builds_the_full_dag(wf):
    jobs = dry_run(wf, "--configfile", "config/benchmark.yaml", timeout=600)
    counts = count_rules(jobs)
    config = yaml.safe_load((REPO / "config/benchmark.yaml").read_text())
    n, samplers, reps = len(SEED_DATASETS), len(config["samplers"]), config["replicates"]
    assert counts["data_download"] == n
    assert counts["sample_model"] == n * samplers * reps
    assert counts["ood_pair"] == n * (n - 1) * reps
    assert counts["ood_features"] == n * (n + 1) * reps  # train, test and every other dataset, per model
    assert counts["report_aggregate"] == 1
    trained = {j.wc("model") for j in jobs if j.rule == "train_model"}
    assert trained == {f"{d}-r{r}" if r else d for d in SEED_DATASETS for r in range(reps)}


# the opt-in grouping of the README ("GPUs and clusters"): every sampler of a model in one SLURM job
GROUP_SAMPLING = ["--groups", "sample_model=sample_{model}", "--group-components", "sample_{model}=13",
                  "--resources", "gpu=1", "--set-resource-scopes", "gpu=local"]


def test_benchmark_through_the_slurm_profile_shows_launch_flags_and_grouped_sampling(wf):
    """Multi-GPU training takes a free port at job start; GPU jobs go through vsgm.gpu_slots (a no-op under
    SLURM); with the opt-in grouping, the samplers of one model are one group job per model."""
    # --set-resources replaces the profile's list, so sample_model's GPU is given again
    proc = snakemake(wf, "--dry-run", "--profile", "profiles/slurm", "--printshellcmds", "--configfile",
                     "config/benchmark.yaml", "--set-resources", "train_model:gpu=2", "sample_model:gpu=1",
                     timeout=600, check=True)
    shell = [line.removeprefix("Shell command: ") for line in proc.stdout.splitlines()]
    train = [line for line in shell if "vsgm.cli train" in line]
    assert train and all("--num_processes 2" in t and "--multi_gpu --main_process_port 0" in t for t in train)
    assert all(t.startswith("python -m vsgm.gpu_slots --gpus 2 -- accelerate launch") for t in train), train[0]
    sample = [line for line in shell if "vsgm sample " in line]
    assert sample and all(s.startswith("python -m vsgm.gpu_slots --gpus 1 -- vsgm sample") for s in sample)
    assert "Group job" not in proc.stdout
    grouped = snakemake(wf, "--dry-run", "--profile", "profiles/slurm", "--configfile", "config/benchmark.yaml",
                        *GROUP_SAMPLING, timeout=600, check=True)
    groups = re.findall(r"Group job (sample_\w+) \(jobs", grouped.stdout)
    assert sorted(groups) == sorted(f"sample_{m}" for m in SEED_DATASETS)


def pair_jobs(model, out, train_splits):
    """The jobs behind results/{model}/ood_{out}.csv: both downloads, the model's prepared splits and the
    outlier set's test split, training, features and scores of train/test/out, and the pair table."""
    return {
        ("data_download", (("name", model), ("res", "any"))),
        ("data_download", (("name", out), ("res", "any"))),
        *{("data_prepare", (("key", model), ("model", model), ("split", s))) for s in (*train_splits, "test")},
        ("data_prepare", (("key", out), ("model", model), ("split", "test"))),
        ("train_model", (("model", model),)),
        *{(rule, (("model", model), ("set", s))) for rule in ("ood_features", "ood_score")
          for s in ("train", "test", out)},
        ("ood_pair", (("model", model), ("out", out))),
    }


def test_benchmark_target_resolves_to_exactly_what_it_needs(wf):
    jobs = dry_run(wf, "results/svhn/ood_cifar10.csv", "--configfile", "config/benchmark.yaml")
    got = job_set(jobs)
    expected = pair_jobs("svhn", "cifar10", train_splits=("train", "trainsub"))
    assert got == expected


# config/benchmark.yaml at 32x32 RGB: places365's train-standard split (1,803,460 images) as uint8;
# test splits are capped at 10,000 images
PLACES_TRAIN_MB = 1_803_460 * 3 * 32 * 32 / 1e6
MEMORY_TARGETS = ["resources/prepared/{m}/{m}_test.safetensors", "results/{m}/classifier.safetensors",
                  "results/{m}/quality/em.json", "results/{m}/features/test.parquet"]
HOLDING_RULES = {"data_prepare": 4000, "train_model": 8000, "sample_classifier": 4000, "sample_quality": 4000,
                 "ood_features": 4000}  # the rules that hold a prepared split, and their default mem_mb


def test_memory_requests_grow_with_the_dataset_and_no_profile_replaces_them(wf):
    targets = [t.format(m=m) for m in ("places365", "mnist") for t in MEMORY_TARGETS]
    jobs = [j for j in dry_run(wf, *targets, "--configfile", "config/benchmark.yaml") if j.rule in HOLDING_RULES]
    mem = {(j.rule, j.wc("model"), j.wc("split")): int(j.resource("mem_mb")) for j in jobs}
    assert len(mem) == len(jobs) == 2 * (len(HOLDING_RULES) + 1)  # a train and a test split each
    # places365's train split: vsgm prepare holds the decoded and the converted images; training, the
    # classifier and the quality job (beside the test split) hold them as uint8
    assert mem["data_prepare", "places365", "train"] > 2 * PLACES_TRAIN_MB
    for rule in ("train_model", "sample_classifier", "sample_quality"):
        assert mem[rule, "places365", None] > PLACES_TRAIN_MB, rule
    # a small dataset, and the capped test split of a big one, keep the rules' defaults
    assert mem["data_prepare", "places365", "test"] == mem["ood_features", "places365", None] == 4000
    assert {r: m for (r, model, _), m in mem.items() if model == "mnist"} == HOLDING_RULES
    # the cluster profiles set mem_mb for none of these rules: the same requests go to the cluster
    for profile in ("slurm", "cluster-generic"):
        submitted = dry_run(wf, *targets, "--profile", f"profiles/{profile}", "--configfile", "config/benchmark.yaml")
        got = {(j.rule, j.wc("model"), j.wc("split")): int(j.resource("mem_mb"))
               for j in submitted if j.rule in HOLDING_RULES}
        assert got == mem, profile


# -- real runs of config/test.yaml -------------------------------------------------------------------


@pytest.fixture(scope="module")
def targeted(wf):
    """A targeted run of one pair table in a fresh copy: its dry-run plan, then the run."""
    target = "results/digits/ood_noise.csv"
    plan = dry_run(wf, target, "--configfile", "config/test.yaml")
    snakemake(wf, "--cores", "2", target, "--configfile", "config/test.yaml", timeout=RUN_TIMEOUT, check=True)
    return target, plan


@pytest.mark.slow
def test_targeted_run_builds_only_what_the_file_needs(wf, targeted):
    target, plan = targeted
    expected = pair_jobs("digits", "noise", train_splits=("train",))
    assert job_set(plan) == expected
    assert (wf / target).exists()
    assert not (wf / "results/photos").exists() and not (wf / "results/digits/samples").exists()
    proc = snakemake(wf, "--cores", "2", target, "--configfile", "config/test.yaml", timeout=300, check=True)
    assert "Nothing to be done" in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def full_run(wf, targeted):
    """The whole of config/test.yaml, in the copy the targeted run started (it reuses those jobs)."""
    snakemake(wf, "--cores", "2", "--configfile", "config/test.yaml", timeout=RUN_TIMEOUT, check=True)
    return wf


def _config():
    return yaml.safe_load((REPO / "config/test.yaml").read_text())


def _png(path):
    with Image.open(path) as img:
        img.verify()
        return img.size


@pytest.mark.slow
def test_full_test_run_writes_every_output(full_run):
    wf, cfg = full_run, _config()
    models, samplers = list(cfg["models"]), cfg["samplers"]
    # aggregate tables
    auroc = pd.read_csv(wf / "results/auroc.csv")
    assert set(PAIR_COLUMNS) <= set(auroc.columns)
    pairs = {(m, o) for m in models for o in cfg["datasets"] if o != m}
    ood = auroc[auroc["comparison"] == OOD]
    assert set(zip(ood["model"], ood["out"])) == pairs
    assert {"loss", "msma", "bpd"} <= set(auroc["scorer"])  # bpd is on in test.yaml
    assert set(auroc["comparison"]) == {OOD, SANITY}
    assert set(auroc.loc[auroc["comparison"] == SANITY, "model"]) == set(models)
    assert auroc["auroc"].between(0, 1).all() and (auroc["auroc_lo"] <= auroc["auroc_hi"]).all()
    assert "## msma" in (wf / "results/auroc.md").read_text()
    solvers = pd.read_csv(wf / "results/solvers.csv")
    runs = solvers[solvers["sampler"] != REAL_ROW]
    assert set(zip(runs["model"], runs["sampler"])) == {(m, s) for m in models for s in samplers}
    assert set(solvers.loc[solvers["sampler"] == REAL_ROW, "model"]) == set(models)
    metrics = [f"{m}{b}" for m in ("fd", "kid", "precision", "recall") for b in ("", "_lo", "_hi")]
    assert (runs["nfe"] > 0).all() and solvers[metrics].notna().all().all()
    # each row's difference to its model's best sampler, from the paired comparison of all samplers of the model
    diffs = [f"{m}{b}" for m in ("fd", "kid", "precision", "recall") for b in ("_diff", "_diff_lo", "_diff_hi")]
    assert solvers[diffs].notna().all().all() and (solvers["fd_diff_lo"] <= solvers["fd_diff_hi"]).all()
    for m in models:
        best = runs[runs["model"] == m].set_index("sampler")
        assert best.loc[best["fd_vs"].iloc[0], "fd_diff"] == 0 and best["fd"].idxmin() == best["fd_vs"].iloc[0]
        assert (wf / f"results/{m}/quality/paired.csv").exists()
    for png in ("auroc.png", "samples.png", "solver_sweep.png", "loss.png"):
        _png(wf / "results" / png)
    sweep = pd.read_csv(wf / "results/solver_sweep.csv")
    assert {"sampler", "nfe", "fd"} <= set(sweep.columns) and set(sweep["sampler"]) == set(samplers)
    efficiency = pd.read_csv(wf / "results/solver_efficiency.csv")
    assert set(efficiency["metric"]) == {"fd", "kid", "precision", "recall", "all"}
    # per-model outputs
    for m in models:
        history = pd.read_csv(wf / f"results/{m}/train.csv")
        assert {"epoch", "loss"} <= set(history.columns) and len(history) == cfg["train"]["n_epochs"]
        assert json.loads((wf / f"results/{m}/model.json").read_text())["step"] > 0
        for s in samplers:
            cost = json.loads((wf / f"results/{m}/samples/{s}.json").read_text())
            assert {"sampler", "nfe", "seconds", "samples_per_s"} <= set(cost) and cost["sampler"] == s
            _png(wf / f"results/{m}/samples/{s}.png")
            assert "fd" in json.loads((wf / f"results/{m}/quality/{s}.json").read_text())
        for o in cfg["datasets"]:
            if o == m:
                continue
            table = pd.read_csv(wf / f"results/{m}/ood_{o}.csv")
            assert list(table.columns) == PAIR_COLUMNS
            assert set(table["comparison"]) == {OOD, SANITY} and set(table["model"]) == {m}
            plots = {p.name for p in (wf / f"results/{m}/plots/{o}").glob("*.png")}
            assert "roc.png" in plots and "hist_msma.png" in plots
            for p in plots:
                _png(wf / f"results/{m}/plots/{o}/{p}")
    # every rule left its log and the benchmarked rules their timings
    assert (wf / "logs/digits/train.log").stat().st_size > 0
    assert (wf / "benchmarks/digits/train.tsv").exists()


@pytest.mark.slow
def test_second_run_does_nothing(full_run, tmp_path):
    proc = snakemake(full_run, "--cores", "2", "--configfile", "config/test.yaml", timeout=300, check=True)
    assert "Nothing to be done" in proc.stdout, proc.stdout
    # the order of a config's keys is no change (Snakemake compares the flags as strings) ...
    config = {key: dict(reversed(value.items())) if isinstance(value, dict) else value
              for key, value in reversed(_config().items())}
    reordered = tmp_path / "reordered.yaml"
    reordered.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(full_run, "-n", "--cores", "2", "--configfile", str(reordered), timeout=300, check=True)
    assert "Nothing to be done" in proc.stdout, proc.stdout
    # ... and a sampling setting reruns the sampling, not the training
    config["sample"]["num_steps"] += 1
    reordered.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(full_run, "-n", "--cores", "2", "--configfile", str(reordered), timeout=300, check=True)
    assert "sample_model" in proc.stdout and "train_model" not in proc.stdout, proc.stdout


@pytest.mark.slow
def test_report_renders(full_run):
    snakemake(full_run, "--report", "results/report.html", "--configfile", "config/test.yaml", timeout=600,
              check=True)
    html = (full_run / "results/report.html").read_text(errors="replace")
    assert len(html) > 10_000 and "auroc" in html.lower()


@pytest.mark.slow
def test_same_seed_same_tables_in_a_second_fresh_run(full_run, tmp_path):
    """Determinism: the targeted run again in a fresh copy gives byte-identical tables and weights."""
    from safetensors.torch import load_file

    again = workflow_copy(tmp_path / "again")
    target = "results/digits/ood_noise.csv"
    snakemake(again, "--cores", "2", target, "--configfile", "config/test.yaml", timeout=RUN_TIMEOUT, check=True)
    assert (again / target).read_bytes() == (full_run / target).read_bytes()
    for name in ("test", "noise"):
        a, b = (pd.read_parquet(d / f"results/digits/scores/{name}.parquet") for d in (again, full_run))
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    a, b = (load_file(d / "results/digits/model.safetensors") for d in (again, full_run))
    assert all((a[k] == b[k]).all() for k in a)
