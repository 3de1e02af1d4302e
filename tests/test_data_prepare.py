"""Prepared caches and the embedded sets: splits, determinism, provenance, refusal of bad caches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vsgm.data import (
    FORMAT_VERSION,
    CorruptFileError,
    load_prepared,
    load_split,
    native_size,
    prepare,
    to_model_space,
)
from vsgm.data.cache import images_sha256, select


# ---------------------------------------------------------------- to_model_space
def test_digits_split_sizes_and_determinism():
    train_x, train_y = load_split("digits", "train", "unused")
    test_x, test_y = load_split("digits", "test", "unused")
    assert train_x.shape == (1438, 1, 8, 8) and test_x.shape == (359, 1, 8, 8)
    assert train_x.max() == 255 and train_x.min() == 0
    assert set(np.unique(train_x)) <= {round(v * 255 / 16) for v in range(17)}
    assert sorted(set(train_y.tolist())) == list(range(10)) and sorted(set(test_y.tolist())) == list(range(10))
    again_x, again_y = load_split("digits", "train", "unused")
    assert again_x.tobytes() == train_x.tobytes() and again_y.tobytes() == train_y.tobytes()


def test_digits_splits_partition_the_dataset():
    from sklearn.datasets import load_digits

    full = np.round(load_digits().images * 255 / 16).astype(np.uint8)
    train_x, _ = load_split("digits", "train", "unused")
    test_x, _ = load_split("digits", "test", "unused")
    both = np.concatenate([train_x[:, 0], test_x[:, 0]])
    key = lambda a: sorted(x.tobytes() for x in a)  # noqa: E731
    assert key(both) == key(full)


def test_photos_test_patches_never_appear_in_train():
    train_x, train_y = load_split("photos", "train", "unused")
    test_x, test_y = load_split("photos", "test", "unused")
    assert train_x.shape[1:] == (3, 16, 16) and len(train_x) == 4410 and len(test_x) == 1470
    assert sorted(set(train_y.tolist())) == [0, 1] and sorted(set(test_y.tolist())) == [0, 1]
    train_keys = {x.tobytes() for x in train_x}
    assert not any(x.tobytes() in train_keys for x in test_x)
    assert load_split("photos", "test", "unused")[0].tobytes() == test_x.tobytes()


@pytest.mark.parametrize("name", ["noise", "flat"])
def test_generated_sets_at_requested_size(name):
    train, _ = load_split(name, "train", "unused", size=12)
    test, labels = load_split(name, "test", "unused", size=12)
    assert train.shape[1:] == test.shape[1:] == (3, 12, 12) and (labels == 0).all()
    assert load_split(name, "test", "unused", size=12)[0].tobytes() == test.tobytes()
    assert not np.array_equal(train[: len(test)], test)
    with pytest.raises(ValueError, match="pass size"):
        load_split(name, "test", "unused")


def test_flat_is_smooth_and_noise_is_not():
    flat, _ = load_split("flat", "test", "unused", size=32)
    noise, _ = load_split("noise", "test", "unused", size=32)
    step = lambda x: np.abs(np.diff(x.astype(np.int16), axis=-1)).max()  # noqa: E731
    assert step(flat) <= 4 and step(noise) > 100
    assert flat.reshape(len(flat), -1).std(axis=0).mean() > 30  # colours differ between images


# ---------------------------------------------------------------- prepare / load_prepared
def test_prepare_writes_cache_and_sidecar(tmp_path):
    out = tmp_path / "p" / "digits-16" / "train.safetensors"
    meta = prepare("digits", "train", tmp_path, out, size=16, channels=3, bottleneck=8, classes=[0, 1, 2, 3, 4])
    data = load_prepared(out, size=16, channels=3)
    assert data.images.shape == (meta["count"], 3, 16, 16) and len(data) == meta["count"]
    assert set(data.labels.tolist()) == {0, 1, 2, 3, 4}
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar == data.meta
    for key in (
        "source",
        "dataset",
        "split",
        "size",
        "channels",
        "bottleneck",
        "classes",
        "count",
        "sha256",
        "format_version",
        "vsgm_version",
    ):
        assert key in sidecar
    assert sidecar["format_version"] == FORMAT_VERSION and sidecar["sha256"] == images_sha256(data.images)
    assert sidecar["classes"] == [0, 1, 2, 3, 4] and sidecar["bottleneck"] == 8 and sidecar["source"] == "embedded"
    assert sorted(p.name for p in out.parent.iterdir()) == ["train.json", "train.safetensors"]  # no temp files


def test_prepare_near_ood_split_by_classes(tmp_path):
    prepare("digits", "test", tmp_path, tmp_path / "in.safetensors", 8, 1, classes=[0, 1, 2, 3, 4])
    prepare("digits", "test", tmp_path, tmp_path / "out.safetensors", 8, 1, classes=[5, 6, 7, 8, 9])
    inside, outside = load_prepared(tmp_path / "in.safetensors"), load_prepared(tmp_path / "out.safetensors")
    assert inside.labels.max() <= 4 and outside.labels.min() >= 5
    assert len(inside) + len(outside) == 359


def test_prepare_is_byte_reproducible(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    prepare("photos", "test", tmp_path, a, 16, 1, max_images=300, seed=5)
    prepare("photos", "test", tmp_path, b, 16, 1, max_images=300, seed=5)
    assert a.read_bytes() == b.read_bytes()
    assert a.with_suffix(".json").read_bytes() == b.with_suffix(".json").read_bytes()


def test_max_images_is_a_seeded_subset(tmp_path):
    labels = np.arange(1000) % 3
    first, again, other = select(labels, None, 50, 0), select(labels, None, 50, 0), select(labels, None, 50, 1)
    assert len(first) == 50 and np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.all(np.diff(first) > 0)
    only = select(labels, [2], 10, 0)
    assert len(only) == 10 and (labels[only] == 2).all()
    assert len(select(labels, None, 5000, 0)) == 1000


def test_prepare_generated_set_goes_through_bottleneck(tmp_path):
    meta = prepare(
        "noise", "test", tmp_path, tmp_path / "n.safetensors", size=16, channels=1, bottleneck=8, max_images=10
    )
    assert meta["load_size"] == 8
    images = load_prepared(tmp_path / "n.safetensors").images
    raw, _ = load_split("noise", "test", tmp_path, size=8)
    expected = to_model_space(raw[select(np.zeros(len(raw)), None, 10, 0)], 1, 16, 8)
    np.testing.assert_array_equal(images.numpy(), expected)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(classes=[10]), "classes"),
        (dict(classes=[]), "classes"),
        (dict(size=0), "size"),
        (dict(channels=2), "channels"),
        (dict(max_images=0), "max_images"),
        (dict(split="val"), "split"),
    ],
)
def test_prepare_rejects_bad_arguments(tmp_path, kwargs, match):
    args = dict(name="digits", split="train", root=tmp_path, out=tmp_path / "x.safetensors", size=8, channels=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        prepare(**args)
    assert not (tmp_path / "x.safetensors").exists()


def test_prepare_refuses_a_cache_larger_than_memory(tmp_path):
    from vsgm.data.cache import available_memory

    if available_memory() is None:
        pytest.skip("this system does not report available memory")
    with pytest.raises(ValueError, match=r"1438 images at 200000x200000 need about .* GiB, more than the"):
        prepare("digits", "train", tmp_path, tmp_path / "x.safetensors", size=200_000, channels=1)
    assert not (tmp_path / "x.safetensors").exists()


@pytest.fixture
def cache(tmp_path):
    out = tmp_path / "c.safetensors"
    prepare("digits", "test", tmp_path, out, size=8, channels=1)
    return out


def test_load_prepared_refuses_other_size_or_channels(cache):
    with pytest.raises(ValueError, match=f"{cache}.*expected 16x16"):
        load_prepared(cache, size=16)
    with pytest.raises(ValueError, match=f"{cache}.*expected 3"):
        load_prepared(cache, channels=3)


def test_load_prepared_refuses_other_format_version(tmp_path):
    path = tmp_path / "old.safetensors"
    save_file(
        {"images": torch.zeros(1, 1, 8, 8, dtype=torch.uint8), "labels": torch.zeros(1, dtype=torch.int64)},
        str(path),
        metadata={"vsgm": json.dumps({"format_version": 0})},
    )
    with pytest.raises(ValueError, match=f"{path}.*format version 0"):
        load_prepared(path)


def test_truncated_cache_names_the_file(cache):
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) - 100])
    with pytest.raises(CorruptFileError, match=str(cache)):
        load_prepared(cache)


def test_foreign_safetensors_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file(
        {"images": torch.zeros(1, 1, 8, 8, dtype=torch.uint8), "labels": torch.zeros(1, dtype=torch.int64)}, str(path)
    )
    with pytest.raises(ValueError, match=f"{path}.*not a vsgm cache"):
        load_prepared(path)


def test_prepare_bytes_are_stable_across_saves(tmp_path):
    """safetensors writes its metadata map in hash order: identical caches must still be identical bytes."""
    outs = [tmp_path / f"{k}.safetensors" for k in range(8)]
    for out in outs:
        prepare("digits", "test", tmp_path, out, 8, 1, max_images=5)
    assert len({out.read_bytes() for out in outs}) == 1


def test_garbage_cache_names_the_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00" * 7)
    with pytest.raises(CorruptFileError, match="junk.safetensors"):
        load_prepared(path)


def test_flipped_byte_is_caught_by_the_checksum(cache):
    data = bytearray(cache.read_bytes())
    data[-50] ^= 0xFF  # safetensors stores int64 labels before uint8 images: this is an image byte
    cache.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=f"{cache}.*sha256"):
        load_prepared(cache)


def test_missing_cache_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_prepared(tmp_path / "nothing.safetensors")


def test_native_size_is_the_bottleneck_of_a_model():
    assert native_size("mnist", 32) == 28 and native_size("digits", 32) == 8
    assert native_size("pneumoniamnist", 64) == 64 and native_size("pneumoniamnist", 32) == 28
    assert native_size("noise", 32) is None and native_size("imagenet", 64) is None


# ---------------------------------------------------------------- CLI
