"""Embedded datasets: real or generated images that need no network.

All four are deterministic (fixed seeds below) and return uint8 N,C,H,W arrays
with int64 labels.

``digits``
    scikit-learn's handwritten digits (``sklearn.datasets.load_digits``): 1797
    gray 8x8 images, values 0..16 scaled to 0..255 (``round(v * 255 / 16)``), 10
    classes. Split: a permutation drawn with ``numpy.random.default_rng(0)``; the
    first 80 % (1438 images, ``round(0.8 * 1797)``) are ``train``, the remaining 359 ``test``.
``photos``
    16x16 RGB patches cut with stride 8 from scikit-learn's two sample photos
    (``china.jpg`` label 0, ``flower.jpg`` label 1; 427x640 each). Each photo is cut
    into 64x64 tiles (6 x 10, the ragged border is dropped); the tiles at odd row
    *and* odd column index (one in four, spread over the whole photo) are ``test``,
    the others ``train``, and every patch lies inside one tile. So no test pixel was
    ever seen in training, yet both splits sample the same scenes (a split by region
    -- left part vs right part -- gives the test set other content, and a detector
    then flags the test set itself: train-vs-test AUROC 0.3 instead of 0.5).
    4410 train and 1470 test patches.
``noise``
    uniform i.i.d. noise in 0..255, 3 channels, generated at the requested size
    (far out-of-distribution, more complex than any training set). 2000 train
    (seed 1) and 1000 test (seed 2) images, label 0.
``flat``
    a random constant colour plus a smooth linear gradient of random direction and
    per-channel amplitude (up to +-64 levels across the image), 3 channels,
    generated at the requested size (out-of-distribution and simpler than any
    training set). 2000 train (seed 3) and 1000 test (seed 4) images, label 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .registry import check_split

DIGITS_SEED = 0
DIGITS_TRAIN_FRACTION = 0.8
PHOTO_PATCH = 16
PHOTO_STRIDE = 8
PHOTO_TILE = 64
GENERATED_COUNTS = {"train": 2000, "test": 1000}
NOISE_SEEDS = {"train": 1, "test": 2}
FLAT_SEEDS = {"train": 3, "test": 4}
FLAT_MAX_AMPLITUDE = 64.0
_GENERATE_CHUNK = 256

Arrays = tuple[np.ndarray, np.ndarray]


def load_digits_split(split: str) -> Arrays:
    """The ``digits`` split (see module docstring).

    Args:
        split: ``"train"`` or ``"test"``.

    Returns:
        uint8 images N,1,8,8 and int64 labels N.
    """
    from sklearn.datasets import load_digits

    check_split(split)
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SEED).permutation(len(images))
    cut = int(round(DIGITS_TRAIN_FRACTION * len(images)))
    index = np.sort(order[:cut] if split == "train" else order[cut:])
    return np.ascontiguousarray(images[index]), labels[index]


def _tile_patches(tile: np.ndarray) -> np.ndarray:
    """All PHOTO_PATCH patches with stride PHOTO_STRIDE inside one tile (H, W, 3) -> (n, 3, P, P)."""
    windows = np.lib.stride_tricks.sliding_window_view(tile, (PHOTO_PATCH, PHOTO_PATCH), axis=(0, 1))
    windows = windows[::PHOTO_STRIDE, ::PHOTO_STRIDE]  # rows, cols, 3, P, P
    return windows.reshape(-1, 3, PHOTO_PATCH, PHOTO_PATCH)


def is_test_tile(row: int, col: int) -> bool:
    """One tile in four, spread over the photo: odd row and odd column."""
    return row % 2 == 1 and col % 2 == 1


def load_photos_split(split: str) -> Arrays:
    """The ``photos`` split (see module docstring).

    Args:
        split: ``"train"`` or ``"test"``.

    Returns:
        uint8 images N,3,16,16 and int64 labels N (0 china, 1 flower).
    """
    from sklearn.datasets import load_sample_images

    check_split(split)
    images, labels = [], []
    for label, photo in enumerate(load_sample_images().images):
        photo = np.asarray(photo, dtype=np.uint8)
        for row in range(photo.shape[0] // PHOTO_TILE):
            for col in range(photo.shape[1] // PHOTO_TILE):
                if is_test_tile(row, col) != (split == "test"):
                    continue
                tile = photo[row * PHOTO_TILE:(row + 1) * PHOTO_TILE, col * PHOTO_TILE:(col + 1) * PHOTO_TILE]
                patches = _tile_patches(tile)
                images.append(patches)
                labels.append(np.full(len(patches), label, dtype=np.int64))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _check_size(name: str, size: int | None) -> int:
    if size is None or size < 1:
        raise ValueError(f"dataset '{name}' is generated at the requested size: pass size (a positive integer)")
    return int(size)


def noise_images(split: str, size: int | None) -> Arrays:
    """The ``noise`` split at ``size`` (see module docstring).

    Args:
        split: ``"train"`` or ``"test"``.
        size: image side.

    Returns:
        uint8 images N,3,size,size and int64 zero labels.
    """
    check_split(split)
    size = _check_size("noise", size)
    n = GENERATED_COUNTS[split]
    rng = np.random.default_rng(NOISE_SEEDS[split])
    images = rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)
    return images, np.zeros(n, dtype=np.int64)


def _flat_chunk(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    colour = rng.uniform(0.0, 255.0, size=(n, 3, 1, 1)).astype(np.float32)
    amplitude = rng.uniform(-FLAT_MAX_AMPLITUDE, FLAT_MAX_AMPLITUDE, size=(n, 3, 1, 1)).astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi, size=(n, 1, 1, 1)).astype(np.float32)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32) if size > 1 else np.zeros(1, np.float32)
    ramp_x, ramp_y = ramp.reshape(1, 1, 1, size), ramp.reshape(1, 1, size, 1)
    gradient = ramp_x * np.cos(angle) + ramp_y * np.sin(angle)
    return np.clip(np.round(colour + amplitude * gradient), 0, 255).astype(np.uint8)


def flat_images(split: str, size: int | None) -> Arrays:
    """The ``flat`` split at ``size`` (see module docstring).

    Args:
        split: ``"train"`` or ``"test"``.
        size: image side.

    Returns:
        uint8 images N,3,size,size and int64 zero labels.
    """
    check_split(split)
    size = _check_size("flat", size)
    n = GENERATED_COUNTS[split]
    rng = np.random.default_rng(FLAT_SEEDS[split])
    chunks = [_flat_chunk(rng, min(_GENERATE_CHUNK, n - s), size) for s in range(0, n, _GENERATE_CHUNK)]
    return np.concatenate(chunks), np.zeros(n, dtype=np.int64)


EMBEDDED_READERS: dict[str, Callable[[str, int | None], Arrays]] = {
    "digits": lambda split, size: load_digits_split(split),
    "photos": lambda split, size: load_photos_split(split),
    "noise": noise_images,
    "flat": flat_images,
}
