"""ImageLoader: normalisation, seeded per-epoch shuffles, coverage, the worker path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vsgm.data import ImageLoader, loader_throughput


@pytest.fixture
def data():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (103, 1, 8, 8), dtype=torch.uint8, generator=generator)
    images[0] = 0
    images[1] = 255
    return images, torch.arange(103)  # label = index, to track coverage


def _labels(loader):
    return torch.cat([y for _, y in loader])


def test_batches_are_normalised(data):
    images, labels = data
    loader = ImageLoader(images, labels, batch_size=16, shuffle=False, drop_last=False)
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (16, 1, 8, 8)
    assert torch.equal(x, images[:16].float() / 127.5 - 1)
    assert x[0].min() == -1 and x[1].max() == 1
    assert all(-1 <= b.min() and b.max() <= 1 for b, _ in loader)


def test_each_epoch_covers_every_image_once(data):
    images, labels = data
    loader = ImageLoader(images, labels, batch_size=10, drop_last=False)
    assert len(loader) == 11
    seen = _labels(loader)
    assert sorted(seen.tolist()) == list(range(103))
    for x, y in loader:  # images travel with their labels
        assert torch.equal(x, images[y].float() / 127.5 - 1)


def test_drop_last(data):
    loader = ImageLoader(*data, batch_size=10, drop_last=True)
    assert len(loader) == 10
    seen = _labels(loader)
    assert len(seen) == 100 and len(set(seen.tolist())) == 100


def test_shuffle_is_deterministic_per_seed_and_epoch(data):
    a = ImageLoader(*data, batch_size=8, seed=1)
    b = ImageLoader(*data, batch_size=8, seed=1)
    c = ImageLoader(*data, batch_size=8, seed=2)
    a.set_epoch(3)
    b.set_epoch(3)
    c.set_epoch(3)
    first = _labels(a)
    assert torch.equal(first, _labels(b))
    assert not torch.equal(first, _labels(c))
    assert not torch.equal(first, torch.arange(len(first)))
    assert not torch.equal(_labels(a), first)  # the epoch advanced to 4
    a.set_epoch(3)
    assert torch.equal(_labels(a), first)


def test_worker_path_matches_fast_path(data):
    fast = ImageLoader(*data, batch_size=16, seed=4, num_workers=0)
    workers = ImageLoader(*data, batch_size=16, seed=4, num_workers=1)
    assert len(fast) == len(workers)
    for (xf, yf), (xw, yw) in zip(fast, workers, strict=True):
        assert torch.equal(xf, xw) and torch.equal(yf, yw)


def test_shards_are_disjoint(data):
    shards = [ImageLoader(*data, batch_size=5, seed=7, rank=r, world_size=2) for r in range(2)]
    labels = [set(_labels(s).tolist()) for s in shards]
    assert len(shards[0]) == len(shards[1]) == 10 and not labels[0] & labels[1]


def test_accepts_numpy(data):
    images, labels = data
    loader = ImageLoader(images.numpy(), labels.numpy(), batch_size=50)
    assert len(list(loader)) == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(batch_size=0),
        dict(batch_size=4, seed=-1),
        dict(batch_size=4, num_workers=-1),
        dict(batch_size=4, rank=2, world_size=2),
    ],
)
def test_bad_arguments(data, kwargs):
    with pytest.raises(ValueError):
        ImageLoader(*data, **kwargs)


def test_rejects_other_dtypes_and_passes_float32_latents_through():
    with pytest.raises(ValueError, match="uint8"):
        ImageLoader(np.zeros((4, 1, 8, 8), np.float64), np.zeros(4), batch_size=2)
    latents = np.linspace(-3, 3, 4 * 2 * 4 * 4, dtype=np.float32).reshape(4, 2, 4, 4)
    loader = ImageLoader(latents, np.zeros(4), batch_size=4, shuffle=False)
    (x, _), = list(loader)
    assert x.dtype == torch.float32 and np.array_equal(x.numpy(), latents)


def test_throughput_helper_runs():
    assert loader_throughput(n_images=2000, size=8, channels=1, batch_size=100) > 0
