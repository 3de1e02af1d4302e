"""The workflow on a real SLURM cluster (a single node on this machine, started by .ci/slurm.sh).

Runs through the profiles as a user would (`snakemake --profile profiles/slurm`), with the
overrides a small test cluster needs on the command line: no GPUs, two CPUs, no slurmdbd (so
job status comes from squeue). Budget about 15 s per sequential job: the DAG is cut to one
model, one OOD set and one sampler. Every run is wrapped in `timeout`.
"""

from __future__ import annotations

import shutil
import subprocess

import pandas as pd
import pytest

from vsgm.tables import OOD
from workflow_utils import BIN, env, small_config, workflow_copy

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CLUSTER_TIMEOUT = 900
# what the local test cluster needs beyond profiles/slurm (a real cluster keeps the profile's values):
SLURM_OVERRIDES = [
    "--jobs", "2",
    "--latency-wait", "5",
    "--slurm-status-command", "squeue",           # no slurmdbd here, so no sacct
    "--slurm-init-seconds-before-status-checks", "2",
    "--set-threads", "train_model=1",             # replaces the profile's GPU-node threads: the node has 2 CPUs
    "--set-resources", "train_model:gpu=0",       # replaces the profile's GPU requests: the node has no GPU
]


def _cluster_state() -> str | None:
    """None when a SLURM partition answers, else why not."""
    if shutil.which("sinfo") is None:
        return "sinfo not found: SLURM is not installed (bash .ci/slurm.sh install)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s: the cluster is not up (bash .ci/slurm.sh start)"
    states = set(proc.stdout.split())
    if proc.returncode != 0 or not states & {"idle", "mixed", "allocated", "completing"}:
        return f"the SLURM cluster is not up (sinfo: {proc.stdout.strip() or proc.stderr.strip()}); " \
               "start it with bash .ci/slurm.sh start"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster():
    reason = _cluster_state()
    if reason:
        pytest.skip(reason)


def run_on_cluster(workdir, *args, limit=CLUSTER_TIMEOUT) -> subprocess.CompletedProcess:
    """snakemake ARGS in ``workdir`` under `timeout` (TERM, then KILL 20 s later)."""
    cmd = ["timeout", "-k", "20", str(limit), str(BIN / "snakemake"), *args]
    return subprocess.run(cmd, cwd=workdir, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=limit + 60)


def test_small_run_through_the_slurm_profile(tmp_path):
    wf = workflow_copy(tmp_path)
    config = small_config(wf / "cluster.yaml", sample={"quality": False}, sweep={"enabled": False})
    proc = run_on_cluster(wf, "--profile", "profiles/slurm", *SLURM_OVERRIDES, "--configfile", str(config))
    assert proc.returncode == 0, proc.stdout[-8000:]
    assert "slurm" in proc.stdout.lower()
    auroc = pd.read_csv(wf / "results/auroc.csv")
    ood = auroc[auroc["comparison"] == OOD]
    assert set(zip(ood["model"], ood["out"])) == {("digits", "noise")}
    assert (wf / "results/digits/samples/em.png").stat().st_size > 0
    assert (wf / "results/samples.png").exists() and (wf / "results/solvers.csv").exists()


def test_failing_job_fails_the_run_and_names_rule_and_log(tmp_path):
    wf = workflow_copy(tmp_path)
    # a batch larger than the training subset: the config check cannot know the data's size, the job refuses
    config = small_config(wf / "fail.yaml", train={"max_images": 40, "batch_size": 64})
    target = "results/digits/model.safetensors"
    # targets before the options that take several values (--set-resources, --configfile)
    proc = run_on_cluster(wf, target, "--profile", "profiles/slurm", *SLURM_OVERRIDES, "--configfile", str(config))
    assert proc.returncode != 0, proc.stdout[-8000:]
    assert proc.returncode not in (124, 137), "timed out instead of failing"
    assert "Error in rule train_model" in proc.stdout, proc.stdout[-8000:]
    assert "logs/digits/train.log" in proc.stdout, proc.stdout[-8000:]
    log = (wf / "logs/digits/train.log").read_text()
    assert "batch_size 64 is larger than the training set per process (40)" in log, log[-3000:]
    assert not (wf / target).exists()


def test_cluster_generic_profile_submits_and_tracks_a_job(tmp_path):
    wf = workflow_copy(tmp_path)
    config = small_config(wf / "cluster.yaml")
    target = "resources/prepared/digits/noise_test.safetensors"
    proc = run_on_cluster(wf, target, "--profile", "profiles/cluster-generic", "--jobs", "2", "--latency-wait", "5",
                          "--configfile", str(config), limit=300)
    assert proc.returncode == 0, proc.stdout[-8000:]
    assert (wf / target).exists()
    assert list((wf / "logs/cluster").glob("data_prepare-*.out"))
