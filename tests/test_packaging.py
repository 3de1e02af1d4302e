"""Package metadata: ranges that admit the user's torch, the tested pins inside them, every import declared."""

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# import name -> distribution, where they differ
DISTRIBUTION = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml", "skimage": "scikit-image",
                "tensorboard": "tensorboard", "torch": "torch"}


def requirements(extra: str | None = None) -> dict[str, Requirement]:
    reqs = PYPROJECT["dependencies"] if extra is None else PYPROJECT["optional-dependencies"][extra]
    return {canonicalize_name(r.name): r for r in map(Requirement, reqs)}


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


@pytest.mark.parametrize("name, version, allowed", [
    ("torch", "2.13.0", True), ("torch", "2.14.1", True), ("torch", "2.15.0", True), ("torch", "3.0.0", False),
    ("torch", "2.12.0", False), ("torchvision", "0.28.0", True), ("torchvision", "0.29.1", True),
])
def test_ranges_admit_other_torch_builds(name, version, allowed):
    """A cluster's own torch within the range is kept: no exact pin in the package's dependencies."""
    assert requirements()[name].specifier.contains(version, prereleases=True) is allowed


def test_no_exact_pins_in_dependencies():
    pinned = [str(r) for r in requirements().values() if any(s.operator == "==" for s in r.specifier)]
    assert not pinned


def test_constraints_pin_the_tested_versions_inside_the_ranges():
    pins = constraints()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
    declared = {**requirements(), **{k: v for e in PYPROJECT["optional-dependencies"] for k, v in
                                     requirements(e).items()}}
    outside = {n: v for n, v in pins.items() if n in declared and not declared[n].specifier.contains(v)}
    assert not outside
    assert set(requirements()) - {"snakemake-executor-plugin-slurm-jobstep"} <= set(pins)


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_third_party_import_is_declared():
    """Every package src/vsgm imports (at any depth, lazily too) is a dependency or in an extra."""
    imported = set().union(*(_top_level_imports(p) for p in (ROOT / "src" / "vsgm").rglob("*.py")))
    third_party = {n for n in imported if n not in sys.stdlib_module_names and n not in ("vsgm", "__future__")}
    declared = set(requirements()).union(*(requirements(e) for e in PYPROJECT["optional-dependencies"]))
    missing = {n for n in third_party if canonicalize_name(DISTRIBUTION.get(n, n)) not in declared}
    assert {"torch", "scipy", "PIL", "sklearn"} <= third_party  # the scan sees the imports
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_extras_and_licence():
    extras = PYPROJECT["optional-dependencies"]
    assert {"tracking", "latent", "fid", "test"} <= set(extras)
    assert {"wandb", "tensorboard"} <= set(requirements("tracking"))
    assert "reports" in requirements()["snakemake"].extras
    assert requirements()["snakemake-executor-plugin-slurm"].specifier.contains("2.0.0")
    assert not requirements()["snakemake-executor-plugin-slurm"].specifier.contains("1.9.0")
    assert PYPROJECT["license"]["text"] == "MIT"
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_conda_env_installs_the_package_with_the_constraints():
    """workflow/envs/vsgm.yaml: its pip lines name the constraints file and this package, relative to the
    file and to the copy Snakemake hands to conda (<workdir>/.snakemake/conda/<hash>.yaml)."""
    env_file = ROOT / "workflow" / "envs" / "vsgm.yaml"
    env = yaml.safe_load(env_file.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    options = dict(re.match(r"(-\w)\s+(.+)", line).groups() for line in pip)
    for base in (env_file.parent, ROOT / ".snakemake" / "conda"):
        assert (base / options["-c"]).resolve() == ROOT / "constraints.txt"
        assert (base / options["-e"]).resolve() == ROOT
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert Requirement(PYPROJECT["name"] + PYPROJECT["requires-python"]).specifier.contains(python.split("=")[1] + ".0")


@pytest.mark.parametrize("readme_command", ["pip install -c constraints.txt -e . ",
                                            "pip install -c constraints.txt -e '.[test]'"])
def test_readme_and_ci_use_the_constraints(readme_command):
    assert readme_command in (ROOT / "README.md").read_text()
    if "[test]" in readme_command:
        assert readme_command in (ROOT / ".ci" / "run").read_text()
