"""Deployment like a catalog workflow: the Snakefile parses where vsgm is not installed, an imported model is
not retrained, config/README.md describes every config key."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

from vsgm.seed_import import seed_key
from workflow_utils import REPO, dry_run, env, workflow_copy

# snakemake -n under an interpreter that does not process .pth files (-S: no editable vsgm install) and
# without PYTHONPATH: only the venv's site-packages, so `import vsgm` fails unless the workflow finds its tree
WITHOUT_VSGM = textwrap.dedent("""
    import atexit, importlib.util, sys
    sys.path[:0] = {site!r}
    if importlib.util.find_spec("vsgm") is not None:
        sys.exit("vsgm is importable before snakemake runs: the test proves nothing")
    atexit.register(lambda: print("heavy modules:", sorted(m for m in ("torch", "numpy") if m in sys.modules
                                                           and m not in BEFORE)))
    BEFORE = set(sys.modules)
    import snakemake.cli
    BEFORE = set(sys.modules) | {{"numpy"}}  # snakemake's own imports may pull numpy; torch must stay out
    sys.argv = ["snakemake", "--dry-run", "--cores", "1", "--configfile", "config/test.yaml"]
    snakemake.cli.main()
""")


def _source_tree(wf):
    shutil.copytree(REPO / "src", wf / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return wf


@pytest.mark.slow
def test_snakefile_parses_without_vsgm_importable(tmp_path):
    """A catalog user runs Snakemake from an environment without vsgm (--sdm conda builds the jobs'):
    the DAG builds from the workflow's own source tree, without torch."""
    wf = _source_tree(workflow_copy(tmp_path))
    e = {k: v for k, v in env().items() if k != "PYTHONPATH"}
    code = WITHOUT_VSGM.format(site=site.getsitepackages())
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=wf, env=e, text=True, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "rule train_model:" in proc.stdout and "heavy modules: []" in proc.stdout
    # without the source tree the same command fails at `import vsgm`: the test can tell the difference
    shutil.rmtree(wf / "src")
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=wf, env=e, text=True, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode != 0 and "vsgm" in proc.stdout


def test_parse_time_modules_import_neither_torch_nor_numpy():
    code = ("import sys; import vsgm.data.registry, vsgm.unet_config; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=env(), text=True, capture_output=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_imported_model_is_not_retrained(tmp_path):
    """A seed checkpoint imported to results/digits/ is used as it is: no train job for it."""
    from vsgm.cli import main
    from vsgm.unet_config import UNetConfig
    from vsgm.options import defaults
    from vsgm.unet import UNetModel

    wf = workflow_copy(tmp_path)
    unet = yaml.safe_load((wf / "config" / "test.yaml").read_text())["unet"]
    options = {**defaults(), **unet}
    net = UNetModel(UNetConfig.from_options(options, 1, 8))
    ckpt = tmp_path / "VanSGM_digits.pt"
    torch.save({seed_key(k): v for k, v in net.state_dict().items()}, ckpt)
    args = []
    for k, v in unet.items():
        if isinstance(v, bool):
            args.append(f"--{k}" if v else f"--no-{k}")
        else:
            args += [f"--{k}", *map(str, v if isinstance(v, list) else [v])]
    assert main(["import-seed", "--checkpoint", str(ckpt), "--dataset", "digits", "--size", "8",
                 "--out_dir", str(wf / "results" / "digits"), *args]) == 0
    assert json.loads((wf / "results" / "digits" / "model.json").read_text())["parametrisation"] == "seed"
    trained = {j.wc("model") for j in dry_run(wf, "--configfile", "config/test.yaml") if j.rule == "train_model"}
    assert trained == {"photos"}


def _schema_keys(node, prefix=""):
    """Dotted key paths of the schema; `KEY` for the user's own keys (datasets.KEY.classes)."""
    keys = []
    for name, sub in node.get("properties", {}).items():
        keys.append(prefix + name)
        keys += _schema_keys(sub, prefix + name + ".")
        if isinstance(sub.get("additionalProperties"), dict):
            keys += _schema_keys(sub["additionalProperties"], prefix + name + ".KEY.")
    return keys


def test_config_readme_mentions_every_schema_key():
    """config/README.md (what the catalog shows) describes every key of the schema."""
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    readme = (REPO / "config" / "README.md").read_text()
    keys = _schema_keys(schema)
    assert len(keys) > 20
    assert "datasets.KEY.classes" in keys
    missing = [k for k in keys if f"`{k}`" not in readme]
    assert not missing, f"config/README.md does not mention {missing}"


def test_readme_unlocks_before_rerun_incomplete():
    text = (REPO / "README.md").read_text()
    assert "--unlock" in text and text.index("--unlock") < text.index("--rerun-incomplete")
