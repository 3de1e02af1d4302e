"""vsgm.gpu_slots on simulated GPU lists: concurrent jobs get disjoint GPUs, wait when too few are free,
and run unchanged under a batch scheduler."""

import os
import subprocess
import sys
import time

import pytest

from vsgm.gpu_slots import try_acquire


def start(tmp_path, name, gpus, hold_s=0.0, **extra_env):
    """A wrapped job that records its CUDA_VISIBLE_DEVICES between 'start' and 'end' lines of a shared log."""
    env = {**os.environ, "VSGM_GPUS": "a,b,c", "VSGM_GPU_LOCK_DIR": str(tmp_path / "locks"), **extra_env}
    for var in ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID"):
        env.pop(var, None)
    env.update(extra_env)
    script = (f'echo "start {name} $CUDA_VISIBLE_DEVICES" >> {tmp_path}/log; sleep {hold_s}; '
              f'echo "end {name}" >> {tmp_path}/log')
    return subprocess.Popen([sys.executable, "-m", "vsgm.gpu_slots", "--gpus", str(gpus), "--", "sh", "-c", script],
                            env=env, stderr=subprocess.PIPE, text=True)


def finish(*procs):
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err


def events(tmp_path):
    return [line.split() for line in (tmp_path / "log").read_text().splitlines()]


def test_jobs_running_together_hold_different_gpus(tmp_path):
    procs = [start(tmp_path, f"j{i}", 1, hold_s=3) for i in range(3)]
    finish(*procs)
    gpus = [e[2] for e in events(tmp_path) if e[0] == "start"]
    assert sorted(gpus) == ["a", "b", "c"]


def test_a_job_waits_until_enough_gpus_are_free(tmp_path):
    """Two 2-GPU jobs on 3 GPUs never overlap: the second starts after the first has ended."""
    first = start(tmp_path, "first", 2, hold_s=3)
    while not (tmp_path / "log").exists():
        assert first.poll() is None
        time.sleep(0.05)
    second = start(tmp_path, "second", 2)
    finish(first, second)
    log = events(tmp_path)
    assert [e[:2] for e in log] == [["start", "first"], ["end", "first"], ["start", "second"], ["end", "second"]]
    assert len(log[0][2].split(",")) == len(log[2][2].split(",")) == 2


def test_partial_requests_hold_nothing(tmp_path):
    held = try_acquire(["a"], 1, tmp_path)
    assert try_acquire(["a", "b"], 2, tmp_path) is None
    assert try_acquire(["b"], 1, tmp_path) is not None  # b was not kept by the failed request
    assert list(held) == ["a"]


def test_too_many_gpus_and_scheduler_jobs(tmp_path):
    proc = start(tmp_path, "big", 4)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "asks for 4 GPU(s), this machine shares 3 (a,b,c" in err
    finish(start(tmp_path, "slurm", 4, SLURM_JOB_ID="7", CUDA_VISIBLE_DEVICES="5,6"))
    assert events(tmp_path) == [["start", "slurm", "5,6"], ["end", "slurm"]]  # the scheduler's GPUs, untouched


@pytest.mark.parametrize("argv", [["--gpus", "1"], ["--gpus", "1", "--"]])
def test_a_command_is_required(argv):
    proc = subprocess.run([sys.executable, "-m", "vsgm.gpu_slots", *argv], capture_output=True, text=True)
    assert proc.returncode == 2 and "no command given" in proc.stderr
