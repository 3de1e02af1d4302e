"""`vsgm prepare` on the command line: outputs, exit codes and one-line errors."""

from __future__ import annotations

import argparse

import pytest

from vsgm.data import (
    load_prepared,
)
from vsgm.data.commands import register


# ---------------------------------------------------------------- vsgm prepare


def _parse(argv):
    parser = argparse.ArgumentParser(prog="vsgm")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _prepare(dataset, root, out, size, channels, *extra):
    """Parsed `vsgm prepare` of the test split; ``extra``: further flags."""
    return _parse(["prepare", "--dataset", dataset, "--split", "test", "--root", str(root), "--out", str(out),
                   "--size", str(size), "--channels", str(channels), *extra])


def test_cli_prepare(tmp_path, capsys):
    out = tmp_path / "digits.safetensors"
    args = _prepare("digits", tmp_path, out, 16, 1, "--bottleneck", "8", "--classes", "0", "1", "2",
                    "--max_images", "20", "--seed", "3")
    assert args.func(args) == 0
    data = load_prepared(out, size=16, channels=1)
    assert len(data) == 20 and set(data.labels.tolist()) <= {0, 1, 2}
    assert data.meta["seed"] == 3 and data.meta["classes"] == [0, 1, 2]


@pytest.mark.parametrize(
    "extra",
    [["--size", "0"], ["--size", "x"], ["--channels", "2"], ["--split", "val"], ["--classes", "-1"]],
)
def test_cli_prepare_bad_arguments_exit_2(tmp_path, extra, capsys):
    argv = [
        "prepare",
        "--dataset",
        "digits",
        "--split",
        "test",
        "--out",
        str(tmp_path / "o.safetensors"),
        "--size",
        "8",
        "--channels",
        "1",
        *extra,
    ]
    with pytest.raises(SystemExit) as exit_info:
        _parse(argv)
    assert exit_info.value.code == 2


def test_cli_prepare_missing_data_is_one_line(tmp_path):
    args = _prepare("svhn", tmp_path, tmp_path / "s.safetensors", 32, 3)
    with pytest.raises(SystemExit) as exit_info:
        args.func(args)
    message = str(exit_info.value.code)
    assert message.startswith("vsgm prepare: error:") and "test_32x32.mat" in message and "\n" not in message
    assert not (tmp_path / "s.safetensors").exists()


def test_cli_prepare_bad_class_is_one_line(tmp_path):
    args = _prepare("digits", tmp_path, tmp_path / "d.safetensors", 8, 1, "--classes", "12")
    with pytest.raises(SystemExit, match="classes"):
        args.func(args)
