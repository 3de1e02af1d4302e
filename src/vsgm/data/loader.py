"""Batches for training and scoring, straight from a prepared uint8 tensor (no PIL).

:class:`ImageLoader` keeps the whole uint8 tensor on the target device once (for a
GPU: one transfer, then every batch is an on-device gather), draws a seeded
permutation per epoch with a ``torch.Generator`` and yields ``(x, y)`` with
``x = images / 127.5 - 1`` (float32 in [-1, 1]) and int64 labels. With
``num_workers > 0`` batches are gathered on the host by a ``torch.utils.data.DataLoader``
(a ``BatchSampler`` over the same permutation, so the order is identical) and
moved to the device per batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

Batch = tuple[torch.Tensor, torch.Tensor]


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] (``x / 127.5 - 1``, as the seed).

    Args:
        images: uint8 tensor.

    Returns:
        float32 tensor of the same shape, on the same device.
    """
    if images.dtype != torch.uint8:  # already model input (e.g. autoencoder latents)
        return images
    return images.float().div_(127.5).sub_(1.0)


def epoch_seed(seed: int, epoch: int) -> int:
    """A 64-bit generator seed mixing ``seed`` and ``epoch`` (distinct pairs -> independent streams)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])


class _IndexedImages(Dataset):
    """A map-style dataset whose items are whole batches: ``dataset[list_of_indices]``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: list[int]) -> Batch:
        rows = torch.as_tensor(index, dtype=torch.int64)
        return self.images.index_select(0, rows), self.labels.index_select(0, rows)


def _as_tensor(array: torch.Tensor | np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)) if isinstance(array, np.ndarray) else array


class ImageLoader:
    """Iterable of ``(x float32 N,C,H,W in [-1,1], y int64 N)`` batches.

    Args:
        images: uint8 N,C,H,W (tensor or numpy); float32 is passed through unchanged (latents).
        labels: int labels N.
        batch_size: images per batch.
        shuffle: draw a seeded permutation each epoch (else the stored order).
        seed: base seed of the permutations (non-negative).
        drop_last: drop a final incomplete batch.
        device: where batches are delivered; with ``num_workers=0`` the whole tensor is moved there once.
        num_workers: DataLoader worker processes; 0 = the fast in-process path.
        rank: this process's shard (for data parallel training).
        world_size: number of shards; each gets ``N // world_size`` images of the same permutation.

    The epoch used by the next iteration is :attr:`epoch`; it advances by one after
    each iteration starts, and :meth:`set_epoch` sets it, so shuffles are reproducible.
    """

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        device: str | torch.device = "cpu",
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        images, labels = _as_tensor(images), _as_tensor(labels).to(torch.int64)
        self._validate(images, labels, batch_size, seed, num_workers, rank, world_size)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.device, self.num_workers = torch.device(device), num_workers
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        target = self.device if num_workers == 0 else torch.device("cpu")
        self.images, self.labels = images.to(target), labels.to(target)

    @staticmethod
    def _validate(
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        num_workers: int,
        rank: int,
        world_size: int,
    ) -> None:
        if images.dtype not in (torch.uint8, torch.float32) or images.ndim != 4:
            raise ValueError(f"images must be uint8 (or float32 latents) N,C,H,W, got {images.dtype} "
                             f"{tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch whose permutation the next iteration uses.

        Args:
            epoch: non-negative epoch number.
        """
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = int(epoch)

    def _per_rank(self) -> int:
        return int(self.images.shape[0]) // self.world_size

    def __len__(self) -> int:
        count = self._per_rank()
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """Indices (CPU int64) this rank visits in ``epoch``, in visiting order (before batching)."""
        n = int(self.images.shape[0])
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            perm = torch.randperm(n, generator=generator)
        else:
            perm = torch.arange(n)
        return perm[: self._per_rank() * self.world_size][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[Batch]:
        order = self.order(self.epoch)
        self.epoch += 1
        if self.num_workers == 0:
            return self._fast(order)
        return self._workers(order)

    def _fast(self, order: torch.Tensor) -> Iterator[Batch]:
        order = order.to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            rows = order[start : start + self.batch_size]
            yield normalise(self.images.index_select(0, rows)), self.labels.index_select(0, rows)

    def _workers(self, order: torch.Tensor) -> Iterator[Batch]:
        sampler = BatchSampler(order.tolist(), self.batch_size, self.drop_last)
        loader = DataLoader(
            _IndexedImages(self.images, self.labels),
            sampler=sampler,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        for images, labels in loader:
            yield normalise(images.to(self.device, non_blocking=True)), labels.to(self.device, non_blocking=True)


def loader_throughput(
    n_images: int = 50_000,
    size: int = 32,
    channels: int = 1,
    batch_size: int = 128,
    device: str = "cpu",
    num_workers: int = 0,
) -> float:
    """Measure :class:`ImageLoader` throughput over one epoch of random uint8 images.

    Args:
        n_images: images in the epoch.
        size: image side.
        channels: image channels.
        batch_size: batch size.
        device: delivery device.
        num_workers: DataLoader workers (0: fast path).

    Returns:
        Images per second delivered (float32, normalised, on ``device``).
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, channels, size, size), dtype=torch.uint8, generator=generator)
    loader = ImageLoader(
        images, torch.zeros(n_images, dtype=torch.int64), batch_size, device=device, num_workers=num_workers
    )
    synchronize = torch.cuda.synchronize if loader.device.type == "cuda" else (lambda: None)
    next(iter(loader))  # warm-up: allocator, first kernel launches
    synchronize()
    start, seen = time.perf_counter(), 0
    for x, _ in loader:
        seen += x.shape[0]
    synchronize()
    return seen / max(time.perf_counter() - start, 1e-9)
