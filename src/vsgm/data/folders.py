"""Image folders: listing Tiny ImageNet / ImageNet, and decoding image files to uint8 arrays.

Layouts (under the dataset directory ``{root}/{name}/``):

Tiny ImageNet (``tinyimagenet``), the unzipped official ``tiny-imagenet-200.zip``::

    tiny-imagenet-200/train/<wnid>/images/<wnid>_<k>.JPEG
    tiny-imagenet-200/val/images/val_<k>.JPEG
    tiny-imagenet-200/val/val_annotations.txt     # "<file>\\t<wnid>\\t<x0>\\t<y0>\\t<x1>\\t<y1>" per line

ImageNet (``imagenet``), the standard ImageFolder layout (validation images
already sorted into class folders, e.g. by the usual ``valprep.sh``)::

    train/<wnid>/*.JPEG
    val/<wnid>/*.JPEG

Labels are the index of the wnid among the sorted training class folders, so the
two splits agree. Images of any size are decoded to RGB, center-cropped to their
shorter side and resized to ``size`` by :func:`vsgm.data.pairing.resize_square`
(the same rule :func:`vsgm.data.to_model_space` uses), in a few threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..progress import progress
from .errors import CorruptFileError
from .pairing import center_crop_square, resize_square

DECODE_CHUNK = 512  # at most this many images per decoding task
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
TINY_DIR = "tiny-imagenet-200"

Listing = tuple[list[Path], list[int]]


def _class_folders(directory: Path) -> dict[str, int]:
    classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
    if not classes:
        raise CorruptFileError(directory, "no class folders found")
    return {name: index for index, name in enumerate(classes)}


def _images_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def list_tinyimagenet(dataset_dir: Path, split: str) -> Listing:
    """List Tiny ImageNet images and labels.

    Args:
        dataset_dir: ``{root}/tinyimagenet``.
        split: the library split, ``"train"`` or ``"val"``.

    Returns:
        Image paths and integer labels.
    """
    base = Path(dataset_dir) / TINY_DIR
    class_to_idx = _class_folders(base / "train")
    if split == "train":
        paths, labels = [], []
        for wnid, index in class_to_idx.items():
            files = _images_in(base / "train" / wnid / "images")
            paths += files
            labels += [index] * len(files)
        return paths, labels
    return _tiny_val(base / "val", class_to_idx)


def _tiny_val(val_dir: Path, class_to_idx: dict[str, int]) -> Listing:
    annotations = val_dir / "val_annotations.txt"
    paths, labels = [], []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in class_to_idx:
            raise CorruptFileError(annotations, f"line {number}: expected '<file>\\t<wnid>...' with a known wnid")
        paths.append(val_dir / "images" / fields[0])
        labels.append(class_to_idx[fields[1]])
    return paths, labels


def list_imagefolder(dataset_dir: Path, split: str) -> Listing:
    """List an ImageFolder-layout split (``train/<wnid>/*``, ``val/<wnid>/*``).

    Args:
        dataset_dir: ``{root}/imagenet``.
        split: ``"train"`` or ``"val"``.

    Returns:
        Image paths and labels (index of the wnid among the sorted training folders).
    """
    class_to_idx = _class_folders(Path(dataset_dir) / "train")
    split_dir = Path(dataset_dir) / split
    paths, labels = [], []
    for wnid in sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir()):
        if wnid not in class_to_idx:
            raise CorruptFileError(split_dir / wnid, "class folder not present in train/")
        files = _images_in(split_dir / wnid)
        paths += files
        labels += [class_to_idx[wnid]] * len(files)
    return paths, labels


def decode_image(path: str | os.PathLike, size: int | None) -> np.ndarray:
    """Decode one image file to uint8 3,S,S (RGB; center-cropped and resized when ``size`` is given).

    Args:
        path: image file.
        size: output side; ``None`` keeps the decoded size (the image must then be square).

    Returns:
        uint8 array 3,S,S.

    Raises:
        CorruptFileError: unreadable/truncated file, or a non-square image with ``size=None``.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = np.array(image.convert("RGB"), dtype=np.uint8)
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, ... on bad files
        raise CorruptFileError(path, f"{type(error).__name__}: {error}") from error
    if size is None:
        if rgb.shape[0] != rgb.shape[1]:
            raise CorruptFileError(path, f"image is {rgb.shape[1]}x{rgb.shape[0]}, not square: pass a size")
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))
    x = center_crop_square(torch.from_numpy(rgb).permute(2, 0, 1)[None]).float()
    return resize_square(x, size).round().clamp_(0, 255).to(torch.uint8)[0].numpy()


def decode_images(paths: Sequence[str | os.PathLike], size: int | None, threads: int | None = None) -> np.ndarray:
    """Decode many image files into one uint8 N,3,S,S array (see :func:`decode_image`).

    Args:
        paths: image files, in output order.
        size: output side; ``None`` requires all images square and of one size.
        threads: decoding threads (default: up to 8, one per CPU).

    Returns:
        uint8 array N,3,S,S.
    """
    if not paths:
        return np.zeros((0, 3, size or 1, size or 1), dtype=np.uint8)
    threads = threads or min(8, os.cpu_count() or 1)
    first = decode_image(paths[0], size)
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)
    out[0] = first

    # several tasks per thread, but never one per image (millions of futures for an ImageNet-sized folder)
    chunk = max(1, min(DECODE_CHUNK, len(paths) // (4 * threads)))

    def work(start: int) -> int:
        stop = min(start + chunk, len(paths))
        for index in range(start, stop):
            image = decode_image(paths[index], size)
            if image.shape != first.shape:
                raise CorruptFileError(paths[index], f"size {image.shape[1:]} differs from {first.shape[1:]}: "
                                       "pass a size")
            out[index] = image
        return stop - start

    with (ThreadPoolExecutor(max_workers=threads) as pool,
          progress(total=len(paths), initial=1, desc="decode", unit="images", disable=len(paths) < 10_000) as bar):
        for done in pool.map(work, range(1, len(paths), chunk)):
            bar.update(done)
    return out
