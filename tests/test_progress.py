"""Progress in a job log: whole lines (no carriage returns) at a fixed interval and at each epoch's end."""

import re
import subprocess
import sys

import pytest

from workflow_utils import BIN, env

LINE = re.compile(r"^train: (\d+)/(\d+) steps \((\d+)%\), [\d.e+]+ steps/s, elapsed \S+(, ETA \S+)?(, .*)?$")


def _log_of(cmd, tmp_path, **extra_env):
    log = tmp_path / "job.log"
    with open(log, "w") as f:  # stderr to a file, as Snakemake's `> {log} 2>&1` does: not a terminal
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**env(), **extra_env}, timeout=600)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    return text


@pytest.mark.slow
def test_training_log_has_newline_terminated_progress_lines(tmp_path, digits_train):
    text = _log_of([str(BIN / "vsgm"), "train", "--data", str(digits_train), "--out_dir", str(tmp_path / "m"),
                    "--model_channels", "16", "--num_res_blocks", "1", "--channel_mult", "1", "2",
                    "--attention_resolutions", "2", "--num_head_channels", "16", "--n_epochs", "2", "--warmup", "0",
                    "--batch_size", "64", "--sample_and_save_freq", "100", "--no_wandb"],
                   tmp_path, VSGM_PROGRESS_INTERVAL="0")
    assert "\r" not in text and text.endswith("\n")
    lines = [m for m in map(LINE.match, text.splitlines()) if m]
    steps = [int(m.group(1)) for m in lines]
    total = int(lines[0].group(2))
    # interval 0: a line per step, plus one per epoch end (with loss and images/s) and the last
    assert set(range(1, total + 1)) <= set(steps) and steps == sorted(steps)
    epoch_lines = [m.group(0) for m in lines if "loss=" in m.group(0)]
    assert len(epoch_lines) >= 2 and all("images_per_s=" in s and "ETA" in s for s in epoch_lines)
    assert lines[-1].group(3) == "100"


def test_line_progress_interval_and_terminal_choice(tmp_path):
    """A fixed interval of 1 s: a short loop writes only the final line; in a pseudo-terminal, a bar."""
    code = ("from vsgm.progress import progress\n"
            "bar = progress(total=1000, desc='demo', unit='items')\n"
            "for _ in range(1000): bar.update(1)\n"
            "bar.set_postfix(loss=0.123456)\nbar.line()\nbar.close()\n")
    text = _log_of([sys.executable, "-c", code], tmp_path, VSGM_PROGRESS_INTERVAL="60")
    # the line() at the end; close() adds none when the count has not moved since
    assert text.count("\n") == 1 and "\r" not in text
    assert text.splitlines()[0].startswith("demo: 1000/1000 items (100%)") and "loss=0.1235" in text
    pty = pytest.importorskip("pty")
    import os

    pid, fd = pty.fork()
    if pid == 0:  # child: stderr is a terminal (80 columns: a fresh pty has none, and tqdm would draw nothing)
        import fcntl
        import struct
        import termios

        fcntl.ioctl(2, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        os.execve(sys.executable, [sys.executable, "-c", code], {**env(), "VSGM_PROGRESS_INTERVAL": "60"})
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    assert b"\r" in out and b"demo" in out  # tqdm's frames
