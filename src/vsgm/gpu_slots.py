"""GPUs for the jobs of a local Snakemake run: ``python -m vsgm.gpu_slots --gpus N -- COMMAND ...``.

Snakemake's ``gpu`` resource only counts GPUs: on one machine with several, every job would see all
of them and land on cuda:0. This wrapper gives the command N GPUs of its own: it takes an exclusive
lock (``flock``) on one file per GPU, sets ``CUDA_VISIBLE_DEVICES`` to the GPUs it holds and replaces
itself with the command, which inherits the locks; the kernel releases them when the command and its
children exit, however they end (a kill included). Jobs that find too few free GPUs wait.

- The GPUs: ``VSGM_GPUS`` (comma-separated ids), else ``CUDA_VISIBLE_DEVICES`` as Snakemake was
  started with, else every GPU ``nvidia-smi`` lists.
- The lock files: ``VSGM_GPU_LOCK_DIR`` (default: a folder per user in the temporary directory; point
  several users' runs at one shared folder to share the GPUs between them).
- Under a batch scheduler (SLURM, PBS, LSF) the scheduler has already given the job its GPUs: the
  command runs unchanged.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCHEDULER_JOB_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID")


def visible_gpus(env: dict[str, str]) -> list[str]:
    """The GPU ids this machine's jobs share (see the module docstring for the order of sources)."""
    for var in ("VSGM_GPUS", "CUDA_VISIBLE_DEVICES"):
        if env.get(var, "").strip():
            return [g.strip() for g in env[var].split(",") if g.strip()]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return out.split()


def lock_dir(env: dict[str, str]) -> Path:
    """Where the lock files live."""
    default = Path(tempfile.gettempdir()) / f"vsgm-gpu-locks-{os.getuid()}"
    path = Path(env.get("VSGM_GPU_LOCK_DIR") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def try_acquire(gpus: list[str], count: int, folder: Path) -> dict[str, int] | None:
    """Lock ``count`` free GPUs (first free first); None, holding nothing, when fewer are free.

    Returns:
        GPU id -> the open, locked file descriptor (inheritable, so a command started with it keeps the lock).
    """
    held: dict[str, int] = {}
    for gpu in gpus:
        fd = os.open(folder / f"gpu-{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        held[gpu] = fd
        if len(held) == count:
            for fd in held.values():
                os.set_inheritable(fd, True)
            return held
    for fd in held.values():  # never sit on part of a request: two jobs could wait on each other
        os.close(fd)
    return None


def acquire(gpus: list[str], count: int, folder: Path, poll_s: float = 2.0) -> dict[str, int]:
    """Wait until ``count`` GPUs are free and lock them (see try_acquire)."""
    if count > len(gpus):
        raise SystemExit(f"vsgm.gpu_slots: the job asks for {count} GPU(s), this machine shares {len(gpus)} "
                         f"({','.join(gpus) or 'none found'}; set VSGM_GPUS or CUDA_VISIBLE_DEVICES)")
    said = False
    while (held := try_acquire(gpus, count, folder)) is None:
        if not said:
            print(f"vsgm.gpu_slots: waiting for {count} free GPU(s) of {','.join(gpus)}", file=sys.stderr)
            said = True
        time.sleep(poll_s * (0.5 + random.random()))
    return held


def main(argv: list[str] | None = None) -> None:
    """Parse ``--gpus N -- COMMAND ...``, take the GPUs and run the command in this process's place."""
    parser = argparse.ArgumentParser(prog="python -m vsgm.gpu_slots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, required=True, help="GPUs the command needs")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command and its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    env = dict(os.environ)
    if args.gpus > 0 and not any(env.get(v) for v in SCHEDULER_JOB_VARS):
        held = acquire(visible_gpus(env), args.gpus, lock_dir(env))
        env["CUDA_VISIBLE_DEVICES"] = ",".join(held)
        print(f"vsgm.gpu_slots: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}", file=sys.stderr)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
