"""Kills, pre-emption and half-written files: training resumes exactly, nothing partial is accepted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vsgm.io import atomic_path

TRAIN_ARGS = ["--dataset", "digits", "--model_channels", "16", "--num_res_blocks", "1", "--channel_mult", "1", "2",
              "--attention_resolutions", "2", "--num_head_channels", "16", "--n_epochs", "5", "--warmup", "1",
              "--batch_size", "64", "--sample_and_save_freq", "100", "--save_every", "3", "--no_wandb"]
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}


def train_cmd(data, out):
    return [sys.executable, "-m", "vsgm.cli", "train", "--data", str(data), "--out_dir", str(out), *TRAIN_ARGS]


def wait_for_resume(out: Path, min_step: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    meta = out / "resume.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be interrupted: {proc.stderr.read()[-2000:]}")
        if meta.exists():
            try:
                step = json.loads(meta.read_text())["step"]
            except (json.JSONDecodeError, KeyError):
                step = -1
            if step >= min_step:
                return step
        time.sleep(0.05)
    pytest.fail("no resume checkpoint appeared")


def weights(path):
    return load_file(str(path))


def logged(out):
    """train.csv without its timing column."""
    return [line.rsplit(",", 1)[0] for line in (out / "train.csv").read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, digits_train):
    out = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(train_cmd(digits_train, out), env=ENV, check=True, capture_output=True, timeout=600)
    return weights(out / "model.safetensors"), logged(out)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_training_resumes_to_the_same_weights_and_log(sig, digits_train, uninterrupted, tmp_path):
    """The epoch that was cut logs its mean loss over all of its steps, as the uninterrupted run does."""
    same_weights, same_log = uninterrupted
    proc = subprocess.Popen(train_cmd(digits_train, tmp_path), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_resume(tmp_path, 6, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert not (tmp_path / "model.safetensors").exists()
    saved = json.loads((tmp_path / "resume.json").read_text())["step"]
    if sig != signal.SIGKILL:  # Ctrl-C as a pre-emption: a resume file, one line, no traceback, 128 + signal
        assert f"{sig.name} at step" in err and "resume checkpoint written" in err and "run the same command" in err
        assert "Traceback" not in err and proc.returncode == 128 + sig
    resumed = subprocess.run(train_cmd(digits_train, tmp_path), env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {saved} " in resumed.stderr and "resumed from" in resumed.stderr
    final = weights(tmp_path / "model.safetensors")
    assert final.keys() == same_weights.keys()
    assert all(torch.equal(final[k], same_weights[k]) for k in final)
    assert logged(tmp_path) == same_log


def test_resume_file_from_other_options_is_refused(digits_train, tmp_path, tiny_options):
    from vsgm.checkpoint import save_resume
    from vsgm.train import train

    save_resume(tmp_path / "resume.safetensors", {"model": {}}, {"options": {**tiny_options, "size": 8, "lr": 1.0},
                                                                  "step": 3, "history": [], "world_size": 1})
    with pytest.raises(ValueError, match=r"resume file from other options \(differ: \['lr'\]\)"):
        train(tiny_options, digits_train, tmp_path)


@pytest.mark.parametrize("first, second", [(True, False), (False, True)])
def test_resume_across_compile_on_and_off(digits_train, tmp_path, tiny_options, first, second):
    """--compile may change on resume: the resume file holds the plain UNet's names (no _orig_mod. prefix
    of the torch.compile wrapper), and a run with the other setting loads it. Nothing is compiled: the
    wrapper exists before its first call."""
    from vsgm.checkpoint import load_resume
    from vsgm.train import Trainer

    a = Trainer({**tiny_options, "compile": first}, digits_train, tmp_path)
    assert isinstance(a.model, torch._dynamo.eval_frame.OptimizedModule) == first
    with torch.no_grad():
        for i, p in enumerate(a.net.parameters()):
            p.fill_(i / 100)  # weights no fresh model has
    a.save_resume()
    states, _ = load_resume(tmp_path / "resume.safetensors")
    assert not [k for k in states["model"] if "_orig_mod" in k]
    b = Trainer({**tiny_options, "compile": second}, digits_train, tmp_path)
    assert isinstance(b.model, torch._dynamo.eval_frame.OptimizedModule) == second
    assert b.try_resume()
    for p, q in zip(a.net.parameters(), b.net.parameters(), strict=True):
        assert torch.equal(p, q)


def test_nan_keeps_the_last_good_checkpoint(digits_train, tmp_path, tiny_options):
    """Diverge after a good checkpoint: the error names the step, the good resume file survives intact."""
    from vsgm.train import Trainer, TrainingDiverged

    tiny_options.update(n_epochs=3, save_every=5)
    trainer = Trainer(tiny_options, digits_train, tmp_path)
    original = trainer.train_step
    calls = []

    def poisoned(x, y):
        calls.append(1)
        if len(calls) == 12:  # after the checkpoints at steps 5 and 10
            for p in trainer.model.parameters():
                p.data.fill_(float("nan"))
        return original(x, y)

    trainer.train_step = poisoned
    with pytest.raises(TrainingDiverged, match=r"non-finite at step 12 \(epoch 1\).*last good checkpoint kept"):
        trainer.run(resume=False)
    meta = json.loads((tmp_path / "resume.json").read_text())
    assert meta["step"] == 10
    from vsgm.checkpoint import load_resume
    states, _ = load_resume(tmp_path / "resume.safetensors")
    assert all(torch.isfinite(v).all() for v in states["model"].values())
    assert not (tmp_path / "model.safetensors").exists()


WRITER = """
import sys, time
from vsgm.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"x" * 1000)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)
        f.write(b"y")
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_writer_killed_mid_write_leaves_no_output(tmp_path, sig):
    target = tmp_path / "table.csv"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_usual_permissions(tmp_path, umask, mode):
    """Atomic writes go through a private temporary file; the result is readable as the umask allows."""
    from vsgm.io import write_json

    old = os.umask(umask)
    try:
        write_json(tmp_path / "x.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_sampling_says_so_in_one_line_and_writes_nothing(tiny_model, tmp_path, sig):
    """Ctrl-C (or SIGTERM) in a long command other than training: exit 128 + signal, one line, no output."""
    out = tmp_path / "out" / "s"
    proc = subprocess.Popen([sys.executable, "-m", "vsgm.cli", "sample", "--checkpoint", str(tiny_model),
                             "--num_steps", "100000", "--num_samples", "2", "--out", str(out)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "samples:" not in seen:  # the progress counter: sampling has started
        char = proc.stderr.read(1)
        assert char, f"sampling ended before it could be interrupted: {seen}"
        seen += char
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    lines = [line for line in (seen + err).replace("\r", "\n").splitlines() if "vsgm sample:" in line]
    assert len(lines) == 1, seen + err
    assert lines[0].endswith(f"vsgm sample: interrupted by {sig.name}; no output was written (files are written "
                             "whole or not at all)"), seen + err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
