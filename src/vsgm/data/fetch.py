"""Downloading datasets with the libraries' own download code, atomically.

:func:`download` is a no-op when the expected files (see :mod:`vsgm.data.registry`)
are already in ``{root}/{name}`` -- an offline cluster puts them there by hand --
and for embedded sets. Otherwise the library downloads into a fresh staging
directory ``{root}/.{name}.download-*``; only when it succeeded and every expected
file is there are archives removed and the files moved into ``{root}/{name}``.
On any failure the staging directory is deleted, so nothing half-written is
left behind, and a :class:`DatasetUnavailableError` says which files to put where.
ImageNet is never downloaded (license): place it by hand.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import DatasetUnavailableError
from .registry import DatasetInfo, Source, data_dir, get_info, medmnist_size
from .sources import download_hint, library_root, medmnist_class, missing_files

ARCHIVE_SUFFIXES = (".gz", ".tgz", ".tar", ".zip", ".bz2", ".xz")
Downloader = Callable[[DatasetInfo, Path, "int | None"], None]


def _download_mnist(info: DatasetInfo, root: Path, size: int | None) -> None:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashionmnist": datasets.FashionMNIST}[info.name]
    for train in (True, False):
        cls(str(root), train=train, download=True)


def _download_cifar(info: DatasetInfo, root: Path, size: int | None) -> None:
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[info.name]
    cls(str(root), train=True, download=True)


def _download_svhn(info: DatasetInfo, root: Path, size: int | None) -> None:
    from torchvision.datasets import SVHN

    for split in (info.train_split, info.test_split):
        SVHN(str(root), split=split, download=True)


def _download_places365(info: DatasetInfo, root: Path, size: int | None) -> None:
    from torchvision.datasets import Places365

    for split in (info.train_split, info.test_split):
        Places365(str(root), split=split, small=True, download=True)


def _download_dtd(info: DatasetInfo, root: Path, size: int | None) -> None:
    from torchvision.datasets import DTD

    DTD(str(root), split=info.train_split, partition=1, download=True)


def _download_medmnist(info: DatasetInfo, root: Path, size: int | None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    medmnist_class(info.name)(split="train", root=str(root), size=medmnist_size(size), download=True)


def _download_tinyimagenet(info: DatasetInfo, root: Path, size: int | None) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(info.url, download_root=str(root))


DOWNLOADERS: dict[str, Downloader] = {
    "mnist": _download_mnist,
    "fashionmnist": _download_mnist,
    "cifar10": _download_cifar,
    "cifar100": _download_cifar,
    "svhn": _download_svhn,
    "places365": _download_places365,
    "dtd": _download_dtd,
    "medmnist": _download_medmnist,
    "tinyimagenet": _download_tinyimagenet,
}


def _remove_archives(directory: Path, keep: set[Path]) -> None:
    for path in list(directory.rglob("*")):
        if path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES) and path not in keep:
            path.unlink()


def _merge_move(source: Path, target: Path) -> None:
    """Move the tree ``source`` into ``target`` with renames (whole subtrees where possible)."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return
    for entry in sorted(source.iterdir()):
        destination = target / entry.name
        if entry.is_dir() and destination.is_dir():
            _merge_move(entry, destination)
        else:
            os.replace(entry, destination)


def _stage(info: DatasetInfo, root: Path, directory: Path, size: int | None) -> None:
    """Download into a staging directory beside ``directory`` and move the result in."""
    staging = Path(tempfile.mkdtemp(prefix=f".{info.name}.download-", dir=root))
    try:
        staged_dir = staging / info.name
        staged_dir.mkdir()
        try:
            DOWNLOADERS[info.reader](info, library_root(info, staged_dir), size)
        except Exception as error:
            raise DatasetUnavailableError(
                info.name,
                info.files(None, size),
                directory,
                f"download failed: {type(error).__name__}: {error}",
                hint="e.g. copy them from a machine with internet access",
            ) from error
        missing = missing_files(info, staged_dir, None, size)
        if missing:
            raise DatasetUnavailableError(
                info.name, info.files(None, size), directory, f"the download did not produce {', '.join(missing)}"
            )
        _remove_archives(staged_dir, {staged_dir / f for f in info.files(None, size)})
        _merge_move(staged_dir, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(name: str, root: str | os.PathLike, size: int | None = None) -> Path:
    """Make dataset ``name`` available under ``{root}/{name}``.

    Args:
        name: registry name.
        root: data root, e.g. ``resources/data``.
        size: target size; only selects the medmnist file (28/64/128/224, nearest; default 28).

    Returns:
        The dataset directory ``{root}/{name}`` (created only for downloaded sets).

    Raises:
        ValueError: unknown name.
        DatasetUnavailableError: files missing and the download failed or is not possible;
            the message names the dataset, the files expected and the directory.
    """
    info = get_info(name)
    directory = data_dir(name, root)
    if info.source is Source.EMBEDDED:
        return directory
    if not missing_files(info, directory, None, size):
        return directory
    if not info.downloadable:
        raise DatasetUnavailableError(name, info.files(None, size), directory, hint=download_hint(info, size))
    Path(root).mkdir(parents=True, exist_ok=True)
    _stage(info, Path(root), directory, size)
    return directory
