"""Prepared caches: one split, filtered and paired to a model's space, as one safetensors file.

:func:`prepare` loads a raw split (:func:`vsgm.data.load_split`), keeps the requested
classes, optionally a deterministic subset, converts it with
:func:`vsgm.data.to_model_space` and writes

* ``out`` -- a safetensors file with tensors ``images`` (uint8 N,C,H,W) and
  ``labels`` (int64 N); its safetensors metadata has one key, ``vsgm``, holding
  the JSON below (with ``format_version``);
* ``out`` with suffix ``.json`` -- the same metadata, human readable: source,
  dataset, split, size, channels, bottleneck, classes, count, sha256 of the image
  bytes, format version, vsgm version, ...

Both are written atomically (temporary file + rename) and carry no timestamps, so
the same inputs give the same bytes. :func:`load_prepared` reads the cache
without unpickling anything and refuses one of another format version, size or
channels than the caller expects.

Variable-size and generated sets are decoded/generated at ``min(size, bottleneck)``
(``size`` without bottleneck) so that, like every other set, they reach the model
through its native resolution.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..io import atomic_path, sidecar, write_json
from .errors import CorruptFileError
from .pairing import to_model_space
from .registry import get_info
from .sources import open_split

FORMAT_VERSION = 1
# One metadata key only: safetensors writes its metadata map in hash order, so two keys
# would make the bytes of identical caches differ between processes.
_META_KEY = "vsgm"


@dataclass(frozen=True)
class PreparedData:
    """A loaded cache.

    Attributes:
        images: uint8 tensor N,C,H,W.
        labels: int64 tensor N.
        meta: the metadata written by :func:`prepare`.
    """

    images: torch.Tensor
    labels: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    return kib * 1024


def _check_memory(what: str, count: int, load_size: int, size: int, channels: int) -> None:
    """Refuse a cache that cannot fit: the decoded images (up to 3 channels at ``load_size``) and the uint8
    result are held together (the conversion between them runs in bounded chunks)."""
    need, free = count * (3 * load_size**2 + channels * size**2), available_memory()
    if free is not None and need > free:
        raise ValueError(f"{what}: {count} images at {size}x{size} need about {need / 2**30:.1f} GiB, more than "
                         f"the {free / 2**30:.1f} GiB available; use a smaller --size or --max_images")


def images_sha256(images: np.ndarray | torch.Tensor) -> str:
    """sha256 hex digest of the raw bytes of a uint8 image array (C order)."""
    array = images.cpu().numpy() if isinstance(images, torch.Tensor) else images
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _positive(name: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if optional else ''}, got {value!r}")


def _check_classes(name: str, classes: Sequence[int] | None) -> list[int] | None:
    if classes is None:
        return None
    num_classes = get_info(name).num_classes
    chosen = sorted({int(c) for c in classes})
    bad = [c for c in chosen if not 0 <= c < num_classes]
    if not chosen or bad:
        raise ValueError(
            f"classes for '{name}' must be a non-empty subset of 0..{num_classes - 1}, got {list(classes)}"
        )
    return chosen


def select(labels: np.ndarray, classes: Sequence[int] | None, max_images: int | None, seed: int) -> np.ndarray:
    """Indices kept by a class filter and a deterministic subset, in original order.

    Args:
        labels: int labels N.
        classes: labels to keep, or ``None`` for all.
        max_images: keep at most this many (a seeded random subset), or ``None``.
        seed: seed of the subset (``numpy.random.default_rng(seed).permutation``).

    Returns:
        Sorted int64 indices.
    """
    index = np.arange(len(labels)) if classes is None else np.flatnonzero(np.isin(labels, classes))
    if max_images is not None and max_images < len(index):
        pick = np.random.default_rng(seed).permutation(len(index))[:max_images]
        index = index[np.sort(pick)]
    return index.astype(np.int64)


def _write(out: Path, images: np.ndarray, labels: np.ndarray, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors = {"images": torch.from_numpy(np.ascontiguousarray(images)), "labels": torch.from_numpy(labels)}
    metadata = {_META_KEY: json.dumps(meta, sort_keys=True)}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    write_json(sidecar(out), meta)


def _check_arguments(out, size, channels, bottleneck, max_images) -> None:
    _positive("size", size)
    _positive("bottleneck", bottleneck, optional=True)
    _positive("max_images", max_images, optional=True)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if Path(out).suffix == ".json":
        raise ValueError(f"out must not end in .json (that name is the sidecar): {out}")


def prepare(
    name: str,
    split: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    size: int,
    channels: int,
    bottleneck: int | None = None,
    classes: Sequence[int] | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build the cache of one split in a model's space.

    Args:
        name: registry name.
        split: ``"train"`` or ``"test"``.
        root: data root (``{root}/{name}`` holds the raw files).
        out: the safetensors file to write (its ``.json`` sidecar is written beside it).
        size: the model's image side.
        channels: the model's channels (1 or 3).
        bottleneck: native resolution of the model's training set (see
            :func:`vsgm.data.native_size`); ``None``: no bottleneck.
        classes: keep only these labels (labels are kept as they are, not renumbered).
        max_images: keep at most this many images (seeded subset, original order).
        seed: seed of the subset.

    Returns:
        The metadata written (also in the sidecar).

    Raises:
        ValueError: bad arguments, or nothing left after filtering.
        DatasetUnavailableError, CorruptFileError: see :func:`vsgm.data.load_split`.

    Only the selected images are decoded (folder datasets) -- the selection depends on labels alone.
    """
    info = get_info(name)
    _check_arguments(out, size, channels, bottleneck, max_images)
    chosen = _check_classes(name, classes)
    load_size = size if bottleneck is None else min(size, bottleneck)
    raw = open_split(name, split, root, size=load_size)
    index = select(raw.labels, chosen, max_images, seed)
    if len(index) == 0:
        raise ValueError(f"no images of '{name}' {split} left after keeping classes {chosen}")
    _check_memory(f"{name} {split}", len(index), load_size, size, channels)
    paired = to_model_space(np.ascontiguousarray(raw.images(index)), channels, size, bottleneck)
    labels = np.ascontiguousarray(raw.labels[index], dtype=np.int64)
    meta = {
        "format_version": FORMAT_VERSION,
        "vsgm_version": __version__,
        "source": str(info.source),
        "dataset": name,
        "split": split,
        "library_split": info.split_name(split),
        **dict(size=size, channels=channels, bottleneck=bottleneck, load_size=load_size, classes=chosen),
        **dict(max_images=max_images, seed=seed, count=int(len(index)), num_classes=info.num_classes),
        "sha256": images_sha256(paired),
    }
    _write(Path(out), paired, labels, meta)
    return meta


def _read(path: Path) -> tuple[dict[str, str], torch.Tensor, torch.Tensor]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            keys = set(handle.keys())
            if keys != {"images", "labels"}:
                raise ValueError(f"expected tensors 'images' and 'labels', found {sorted(keys)}")
            return metadata, handle.get_tensor("images"), handle.get_tensor("labels")
    except Exception as error:  # safetensors raises its own SafetensorError on truncation
        raise CorruptFileError(path, f"not a readable vsgm cache ({type(error).__name__}: {error})") from error


def _check_contents(path: Path, meta: dict[str, Any], images: torch.Tensor, labels: torch.Tensor) -> None:
    shapes_ok = images.ndim == 4 and labels.shape == images.shape[:1]
    if images.dtype != torch.uint8 or labels.dtype != torch.int64 or not shapes_ok:
        raise CorruptFileError(
            path,
            f"unexpected tensors images {images.dtype}{tuple(images.shape)}, "
            f"labels {labels.dtype}{tuple(labels.shape)}",
        )
    if meta.get("sha256") != images_sha256(images):
        raise CorruptFileError(path, "images do not match the sha256 in its metadata")


def load_prepared(path: str | os.PathLike, size: int | None = None, channels: int | None = None) -> PreparedData:
    """Read a cache written by :func:`prepare` (never unpickles).

    Args:
        path: the safetensors file.
        size: expected image side, or ``None`` to accept any.
        channels: expected channels, or ``None`` to accept any.

    Returns:
        :class:`PreparedData` with ``images`` (uint8), ``labels`` (int64) and ``meta``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: another format version, size or channels than expected (names the file).
        CorruptFileError: truncated or corrupt file (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prepared data {path} does not exist; run `vsgm prepare` first")
    metadata, images, labels = _read(path)
    try:
        meta = json.loads(metadata[_META_KEY])
        version = meta["format_version"]
    except (KeyError, TypeError, json.JSONDecodeError):
        raise ValueError(
            f"{path}: not a vsgm cache (no {_META_KEY!r} metadata with a format_version); re-run prepare"
        ) from None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: cache format version {version}, this vsgm reads {FORMAT_VERSION}; re-run prepare")
    _check_contents(path, meta, images, labels)
    if size is not None and tuple(images.shape[-2:]) != (size, size):
        raise ValueError(
            f"{path}: images are {images.shape[-1]}x{images.shape[-2]}, expected {size}x{size}; re-run prepare"
        )
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"{path}: images have {images.shape[1]} channels, expected {channels}; re-run prepare")
    return PreparedData(images=images, labels=labels, meta=meta)
