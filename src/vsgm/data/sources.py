"""Readers: raw splits through the same library code a user runs (torchvision, medmnist).

:func:`load_split` returns a split as uint8 N,C,H,W plus int64 labels. Array
datasets are read from the arrays their classes expose (``MNIST.data``,
``CIFAR10.data``, ``SVHN.data``, ``MedMNIST.imgs``), never image by image;
folder datasets (Places365, DTD, Tiny ImageNet, ImageNet) are listed by their
torchvision class or folder layout and decoded in threads, resized to ``size``
on load (center crop to the shorter side, then :func:`vsgm.data.pairing.resize_square`).
:func:`open_split` gives the labels first and decodes only the images asked for,
so :func:`vsgm.data.prepare` never decodes images it then drops.

``size`` matters only where the stored size is not fixed: it is required for
DTD and ImageNet (variable sizes) and for the generated sets, resizes
Places365 / Tiny ImageNet on load, and picks the medmnist file (28/64/128/224,
nearest). Fixed-size arrays (MNIST, CIFAR, SVHN) come at their native size;
:func:`vsgm.data.prepare` resizes them with :func:`vsgm.data.to_model_space`.

MedMNIST labels: the first (only) label column; ChestMNIST is multi-label (14
findings) and is mapped to 1 when any finding is present, else 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .embedded import EMBEDDED_READERS
from .errors import CorruptFileError, DatasetUnavailableError
from .folders import decode_images, list_imagefolder, list_tinyimagenet
from .registry import DatasetInfo, Source, check_split, data_dir, get_info, medmnist_size

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class RawSplit:
    """A split whose labels are known and whose images are produced on demand.

    Folder datasets decode only the images asked for, so a class filter or a
    ``max_images`` subset never decodes the whole folder.

    Attributes:
        labels: int64 labels of every image, N.
        fetch: ``fetch(index)`` returns uint8 images for ``index`` (all when ``None``).
    """

    labels: np.ndarray
    fetch: Callable[[np.ndarray | None], np.ndarray]

    def images(self, index: np.ndarray | None = None) -> np.ndarray:
        """uint8 N,C,H,W images at ``index`` (all when ``None``), in that order."""
        return self.fetch(index)


def from_arrays(images: np.ndarray, labels: np.ndarray) -> RawSplit:
    """A :class:`RawSplit` over arrays already in memory."""
    return RawSplit(np.asarray(labels, dtype=np.int64), lambda index: images if index is None else images[index])


def from_files(paths: Sequence[str | os.PathLike], labels: Sequence[int], size: int | None) -> RawSplit:
    """A :class:`RawSplit` over image files, decoded (and resized to ``size``) on demand."""
    paths = list(paths)

    def fetch(index: np.ndarray | None) -> np.ndarray:
        return decode_images(paths if index is None else [paths[i] for i in index], size)

    return RawSplit(np.asarray(labels, dtype=np.int64), fetch)


Reader = Callable[[DatasetInfo, Path, str, "int | None"], RawSplit]


def library_root(info: DatasetInfo, dataset_dir: Path) -> Path:
    """The ``root`` argument to give the dataset's library class.

    Args:
        info: the dataset.
        dataset_dir: ``{root}/{name}``.

    Returns:
        ``dataset_dir``, or its parent for libraries that append the name themselves (DTD).
    """
    return dataset_dir.parent if info.library_root_is_parent else dataset_dir


def missing_files(info: DatasetInfo, dataset_dir: Path, split: str | None, size: int | None = None) -> list[str]:
    """The expected files (see :meth:`DatasetInfo.files`) absent under ``dataset_dir``.

    Args:
        info: the dataset.
        dataset_dir: ``{root}/{name}``.
        split: ``"train"``, ``"test"`` or ``None`` for both.
        size: target size (selects the medmnist file).

    Returns:
        The missing relative paths (directories count as missing when empty).
    """
    missing = []
    for rel in info.files(split, size):
        path = dataset_dir / rel
        present = path.is_dir() and any(path.iterdir()) if rel.endswith("/") else path.is_file()
        if not present:
            missing.append(rel)
    return missing


# ---------------------------------------------------------------- torchvision arrays
def _read_mnist(info: DatasetInfo, root: Path, split: str, size: int | None) -> RawSplit:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashionmnist": datasets.FashionMNIST}[info.name]
    ds = cls(str(root), train=split == "train", download=False)
    return from_arrays(ds.data.numpy()[:, None], ds.targets.numpy())


def _read_cifar(info: DatasetInfo, root: Path, split: str, size: int | None) -> RawSplit:
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[info.name]
    ds = cls(str(root), train=split == "train", download=False)
    return from_arrays(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)), np.asarray(ds.targets))


def _read_svhn(info: DatasetInfo, root: Path, split: str, size: int | None) -> RawSplit:
    from torchvision.datasets import SVHN

    ds = SVHN(str(root), split=split, download=False)
    return from_arrays(np.ascontiguousarray(ds.data, dtype=np.uint8), ds.labels)


# ---------------------------------------------------------------- torchvision folders
def _read_places365(info: DatasetInfo, root: Path, split: str, size: int | None) -> RawSplit:
    from torchvision.datasets import Places365

    ds = Places365(str(root), split=split, small=True, download=False)
    return from_files([path for path, _ in ds.imgs], ds.targets, size)


def _read_dtd(info: DatasetInfo, root: Path, split: str, size: int | None) -> RawSplit:
    from torchvision.datasets import DTD

    ds = DTD(str(root), split=split, partition=1, download=False)
    return from_files(ds._image_files, ds._labels, size)


def _read_tinyimagenet(info: DatasetInfo, root: Path, split: str, size: int | None) -> RawSplit:
    return from_files(*list_tinyimagenet(root, split), size)


def _read_imagenet(info: DatasetInfo, root: Path, split: str, size: int | None) -> RawSplit:
    return from_files(*list_imagefolder(root, split), size)


# ---------------------------------------------------------------- medmnist
def medmnist_class(flag: str) -> type:
    """The medmnist dataset class for ``flag`` (e.g. ``PneumoniaMNIST`` for ``"pneumoniamnist"``)."""
    import medmnist
    from medmnist import INFO

    return getattr(medmnist, INFO[flag]["python_class"])


def _medmnist_labels(flag: str, labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels).reshape(len(labels), -1)
    if flag == "chestmnist":
        return (labels.sum(axis=1) > 0).astype(np.int64)
    return labels[:, 0].astype(np.int64)


def _read_medmnist(info: DatasetInfo, root: Path, split: str, size: int | None) -> RawSplit:
    ds = medmnist_class(info.name)(split=split, root=str(root), size=medmnist_size(size), download=False)
    images = np.asarray(ds.imgs, dtype=np.uint8)
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return from_arrays(np.ascontiguousarray(images), _medmnist_labels(info.name, ds.labels))


READERS: dict[str, Reader] = {
    "mnist": _read_mnist,
    "fashionmnist": _read_mnist,
    "cifar10": _read_cifar,
    "cifar100": _read_cifar,
    "svhn": _read_svhn,
    "places365": _read_places365,
    "dtd": _read_dtd,
    "medmnist": _read_medmnist,
    "tinyimagenet": _read_tinyimagenet,
    "imagenet": _read_imagenet,
}


def download_hint(info: DatasetInfo, size: int | None = None) -> str:
    """How to obtain ``info`` other than by placing files (for error messages)."""
    if not info.downloadable:
        return f"it cannot be downloaded automatically; obtain it from {info.url}"
    size_option = f" --size {size}" if info.source is Source.MEDMNIST and size is not None else ""
    return f"or run `vsgm download --dataset {info.name}{size_option}` with internet access"


def _open_files(info: DatasetInfo, dataset_dir: Path, split: str, size: int | None) -> RawSplit:
    """Run the reader; files present but unreadable become a CorruptFileError naming them."""
    try:
        return READERS[info.reader](info, library_root(info, dataset_dir), info.split_name(split), size)
    except (CorruptFileError, DatasetUnavailableError):
        raise
    except Exception as error:
        files = ", ".join(str(dataset_dir / f) for f in info.files(split, size))
        raise CorruptFileError(f"{info.name} {split} files ({files})", f"{type(error).__name__}: {error}") from error


def _check_images(info: DatasetInfo, images: np.ndarray, count: int) -> np.ndarray:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != info.channels or len(images) != count:
        raise CorruptFileError(
            info.name, f"expected {count} uint8 images N,{info.channels},H,W, got {images.dtype} {images.shape}"
        )
    return images


def open_split(name: str, split: str, root: str | os.PathLike, size: int | None = None) -> RawSplit:
    """Open a raw split: labels now, images on demand (see :func:`load_split` for the arguments).

    Returns:
        A :class:`RawSplit`; its ``images(index)`` returns checked uint8 N,C,H,W arrays.
    """
    info = get_info(name)
    check_split(split)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive integer or None, got {size!r}")
    if info.source is Source.EMBEDDED:
        raw = from_arrays(*EMBEDDED_READERS[name](split, size))
    else:
        if info.native_size is None and size is None:
            raise ValueError(f"dataset '{name}' has images of varying size: pass size")
        dataset_dir = data_dir(name, root)
        missing = missing_files(info, dataset_dir, split, size)
        if missing:
            raise DatasetUnavailableError(
                name, info.files(split, size), dataset_dir, f"missing: {', '.join(missing)}", download_hint(info, size)
            )
        raw = _open_files(info, dataset_dir, split, size)
    if raw.labels.ndim != 1:
        raise CorruptFileError(name, f"labels must be one per image, got shape {raw.labels.shape}")

    def fetch(index: np.ndarray | None) -> np.ndarray:
        count = len(raw.labels) if index is None else len(index)
        return _check_images(info, raw.images(index), count)

    return RawSplit(raw.labels, fetch)


def load_split(name: str, split: str, root: str | os.PathLike, size: int | None = None) -> Arrays:
    """Load a raw split as uint8 images and int64 labels.

    Args:
        name: registry name.
        split: ``"train"`` or ``"test"`` (mapped to the library's split name).
        root: data root (each dataset in ``{root}/{name}``); unused by embedded sets.
        size: target size; see the module docstring for where it matters.

    Returns:
        ``(images, labels)``: uint8 N,C,H,W (C = the registry's channels) and int64 N.

    Raises:
        ValueError: unknown name/split, bad size, or a size needed but missing.
        DatasetUnavailableError: expected files are missing (message says which, and where).
        CorruptFileError: files are present but cannot be read (message names them).
    """
    raw = open_split(name, split, root, size)
    return raw.images(), raw.labels
