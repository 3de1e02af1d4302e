"""download(): real torchvision / medmnist download code against a local HTTP server; offline errors."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from data_fixtures import (
    closed_port_url,
    md5,
    medmnist_arrays,
    medmnist_file,
    mnist_arrays,
    serve_directory,
    write_idx_files,
    write_medmnist,
)
from medmnist import INFO
from torchvision.datasets import MNIST

from vsgm.data import DatasetUnavailableError, download, load_split
from vsgm.data.commands import register


def _leftovers(root):
    """Anything under root that is not a finished dataset directory (staging dirs, temp files)."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


@pytest.fixture
def mnist_server(tmp_path, monkeypatch):
    """Serve gzipped MNIST idx files; point MNIST's mirrors and md5s at them."""
    served = tmp_path / "served"
    expected = mnist_arrays()
    files = write_idx_files(served, expected, gz=True)
    monkeypatch.setattr(MNIST, "resources", [(f.name, md5(f)) for f in files])
    with serve_directory(served) as url:
        monkeypatch.setattr(MNIST, "mirrors", [url])
        yield expected, served


def test_mnist_downloads_through_torchvision(tmp_path, mnist_server):
    expected, _ = mnist_server
    root = tmp_path / "data"
    directory = download("mnist", root)
    assert directory == root / "mnist"
    raw = directory / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    )  # archives removed, nothing else
    assert _leftovers(root) == []
    for split in ("train", "test"):
        images, labels = load_split("mnist", split, root)
        np.testing.assert_array_equal(images, expected[split][0])
        np.testing.assert_array_equal(labels, expected[split][1])


def test_download_is_a_noop_when_files_are_present(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_idx_files(root / "mnist" / "MNIST" / "raw", mnist_arrays())
    monkeypatch.setattr(MNIST, "mirrors", [closed_port_url()])  # any network use would fail
    before = {p: p.stat().st_mtime_ns for p in (root / "mnist").rglob("*")}
    assert download("mnist", root) == root / "mnist"
    assert {p: p.stat().st_mtime_ns for p in (root / "mnist").rglob("*")} == before


def test_download_failing_midway_leaves_nothing(tmp_path, mnist_server):
    _, served = mnist_server
    (served / "t10k-labels-idx1-ubyte.gz").unlink()  # the last file 404s after three succeeded
    root = tmp_path / "data"
    with pytest.raises(DatasetUnavailableError, match="mnist"):
        download("mnist", root)
    assert not (root / "mnist").exists()
    assert _leftovers(root) == []


def test_offline_download_error_names_dataset_files_and_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", [closed_port_url()])
    root = tmp_path / "data"
    with pytest.raises(DatasetUnavailableError) as error:
        download("mnist", root)
    message = str(error.value)
    assert isinstance(error.value, RuntimeError)
    assert "'mnist'" in message
    assert "MNIST/raw/train-images-idx3-ubyte" in message and "MNIST/raw/t10k-labels-idx1-ubyte" in message
    assert str(root / "mnist") in message
    assert "\n" not in message
    assert not (root / "mnist").exists() and _leftovers(root) == []


@pytest.mark.parametrize("size, native", [(None, 28), (64, 64)])
def test_medmnist_downloads_through_medmnist(tmp_path, monkeypatch, size, native):
    served = tmp_path / "served"
    write_medmnist("pneumoniamnist", native)(served, monkeypatch)
    file = served / medmnist_file("pneumoniamnist", native)
    suffix = "" if native == 28 else f"_{native}"
    with serve_directory(served) as url:
        monkeypatch.setitem(INFO["pneumoniamnist"], f"url{suffix}", url + file.name + "?download=1")
        monkeypatch.setitem(INFO["pneumoniamnist"], f"MD5{suffix}", md5(file))
        root = tmp_path / "data"
        download("pneumoniamnist", root, size=size)
    assert (root / "pneumoniamnist" / file.name).read_bytes() == file.read_bytes()
    assert _leftovers(root) == []
    images, labels = load_split("pneumoniamnist", "test", root, size=size)
    np.testing.assert_array_equal(images[:, 0], medmnist_arrays("pneumoniamnist", native)["test_images"])


def test_medmnist_offline_error(tmp_path, monkeypatch):
    monkeypatch.setitem(INFO["octmnist"], "url", closed_port_url() + "octmnist.npz")
    root = tmp_path / "data"
    with pytest.raises(DatasetUnavailableError) as error:
        download("octmnist", root)
    message = str(error.value)
    assert "'octmnist'" in message and "octmnist.npz" in message and str(root / "octmnist") in message
    assert not (root / "octmnist").exists() and _leftovers(root) == []


def test_imagenet_is_manual_only(tmp_path):
    with pytest.raises(DatasetUnavailableError, match=r"imagenet.*train/.*val/"):
        download("imagenet", tmp_path)


@pytest.mark.parametrize("name", ["digits", "photos", "noise", "flat"])
def test_embedded_download_is_a_noop(tmp_path, name):
    download(name, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_unknown_dataset_lists_valid_names(tmp_path):
    with pytest.raises(ValueError, match="valid names: .*cifar10"):
        download("cifar11", tmp_path)


def _parser():
    parser = argparse.ArgumentParser(prog="vsgm")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_download(tmp_path, mnist_server, capsys):
    args = _parser().parse_args(["download", "--dataset", "mnist", "--root", str(tmp_path / "data")])
    assert args.func(args) == 0
    assert (tmp_path / "data" / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_cli_download_offline_is_one_line_nonzero(tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", [closed_port_url()])
    args = _parser().parse_args(["download", "--dataset", "mnist", "--root", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        args.func(args)
    message = str(exit_info.value.code)
    assert message.startswith("vsgm download: error:") and "\n" not in message and "mnist" in message


def test_cli_rejects_unknown_dataset(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["download", "--dataset", "nope"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
