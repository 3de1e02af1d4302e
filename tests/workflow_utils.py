"""Helpers of the workflow tests: run snakemake on a copy of the workflow, parse its dry runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# what a user's checkout needs to run the workflow (results/ and resources/ start empty)
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "profiles")
BIN = Path(sys.executable).parent


def workflow_copy(root: Path) -> Path:
    """Copy the workflow (not src/, results/, resources/) to ``root/vsgm``; run snakemake there."""
    target = root / "vsgm"
    target.mkdir(parents=True)
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, target / part, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", ".snakemake"))
        else:
            shutil.copy2(source, target / part)
    return target


def env() -> dict[str, str]:
    """The test's environment with this interpreter's scripts (vsgm, accelerate, snakemake) first on PATH."""
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("OMP_NUM_THREADS", "1")
    return e


def snakemake(workdir: Path, *args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``snakemake ARGS`` in ``workdir`` (a workflow copy), capturing stdout+stderr as ``.stdout``."""
    cmd = [str(BIN / "snakemake"), *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


@dataclass(frozen=True)
class PlannedJob:
    """One job of a dry run."""

    rule: str
    wildcards: tuple[tuple[str, str], ...]
    resources: tuple[tuple[str, str], ...] = ()

    def wc(self, name: str) -> str | None:
        return dict(self.wildcards).get(name)

    def resource(self, name: str) -> str | None:
        return dict(self.resources).get(name)


_RULE = re.compile(r"^(?:local)?rule (\w+):\s*$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
_RESOURCES = re.compile(r"^\s+resources: (.*)$")


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(kv.split("=", 1)) for kv in text.split(", "))


def dry_run(workdir: Path, *args: str, timeout: float = 300) -> list[PlannedJob]:
    """The jobs ``snakemake -n ARGS`` would run (rule, wildcards, resources), failing on a non-zero exit."""
    proc = snakemake(workdir, "--dry-run", "--cores", "1", *args, timeout=timeout, check=True)
    jobs: list[PlannedJob] = []
    rule, wildcards, resources = None, (), ()
    for line in proc.stdout.splitlines() + [""]:
        m = _RULE.match(line)
        if m:
            if rule is not None:
                jobs.append(PlannedJob(rule, wildcards, resources))
            rule, wildcards, resources = m.group(1), (), ()
            continue
        m = _WILDCARDS.match(line)
        if m and rule is not None:
            wildcards = _pairs(m.group(1))
        m = _RESOURCES.match(line)
        if m and rule is not None:
            resources = _pairs(m.group(1))
    if rule is not None:
        jobs.append(PlannedJob(rule, wildcards, resources))
    return jobs


def job_set(jobs: list[PlannedJob]) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {(j.rule, tuple(sorted(j.wildcards))) for j in jobs}


def count_rules(jobs: list[PlannedJob]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j.rule] = counts.get(j.rule, 0) + 1
    return counts


def write_config(path: Path, base: str | Path = "config/test.yaml", **changes) -> Path:
    """Write ``base`` (a repo config) with top-level keys replaced by ``changes`` to ``path``."""
    config = yaml.safe_load((REPO / base).read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def small_config(path: Path, model: str = "digits", ood: str = "noise", sampler: str = "em", **changes) -> Path:
    """config/test.yaml cut to one model, one OOD set and one sampler (a short DAG for slow executors)."""
    config = yaml.safe_load((REPO / "config/test.yaml").read_text())
    config["datasets"] = {k: v for k, v in config["datasets"].items() if k in (model, ood)}
    config["models"] = {model: config["models"][model]}
    config["samplers"] = [sampler]
    for section, values in changes.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
        else:
            config[section] = values
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
