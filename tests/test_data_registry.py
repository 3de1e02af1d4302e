"""The dataset registry: one table, complete, consistent with readers and downloaders."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import vsgm.data
from vsgm.data import EMBEDDED_DATASETS, REGISTRY, SEED_DATASETS, DatasetInfo, Source, get_info, medmnist_size
from vsgm.data.embedded import EMBEDDED_READERS
from vsgm.data.fetch import DOWNLOADERS
from vsgm.data.sources import READERS

SEED = [
    "mnist",
    "fashionmnist",
    "cifar10",
    "cifar100",
    "svhn",
    "places365",
    "dtd",
    "chestmnist",
    "octmnist",
    "tissuemnist",
    "pneumoniamnist",
    "tinyimagenet",
    "imagenet",
]


def test_seed_and_embedded_sets_are_registered():
    assert sorted(SEED_DATASETS) == sorted(SEED)
    assert set(SEED) <= set(REGISTRY)
    assert sorted(EMBEDDED_DATASETS) == ["digits", "flat", "noise", "photos"]


def test_entries_are_frozen_dataclasses():
    info = get_info("cifar10")
    assert isinstance(info, DatasetInfo)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.channels = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_entry_is_consistent(name):
    info = get_info(name)
    assert info.name == name
    assert info.channels in (1, 3) and info.num_classes >= 1
    assert info.native_size is None or info.native_size >= 1
    if info.source is Source.EMBEDDED:
        assert name in EMBEDDED_READERS and info.files() == ()
    else:
        assert info.reader in READERS
        assert info.train_files and info.test_files and info.url
        assert info.split_name("train") and info.split_name("test")


@pytest.mark.parametrize(
    "name, channels, size, classes, train, test",
    [
        ("mnist", 1, 28, 10, "train", "test"),
        ("fashionmnist", 1, 28, 10, "train", "test"),
        ("cifar10", 3, 32, 10, "train", "test"),
        ("cifar100", 3, 32, 100, "train", "test"),
        ("svhn", 3, 32, 10, "train", "test"),
        ("places365", 3, 256, 365, "train-standard", "val"),
        ("dtd", 3, None, 47, "train", "test"),
        ("chestmnist", 1, 28, 2, "train", "test"),
        ("octmnist", 1, 28, 4, "train", "test"),
        ("tissuemnist", 1, 28, 8, "train", "test"),
        ("pneumoniamnist", 1, 28, 2, "train", "test"),
        ("tinyimagenet", 3, 64, 200, "train", "val"),
        ("imagenet", 3, None, 1000, "train", "val"),
        ("digits", 1, 8, 10, "train", "test"),
        ("photos", 3, 16, 2, "train", "test"),
        ("noise", 3, None, 1, "train", "test"),
        ("flat", 3, None, 1, "train", "test"),
    ],
)
def test_entry_values(name, channels, size, classes, train, test):
    info = get_info(name)
    assert (info.channels, info.native_size, info.num_classes) == (channels, size, classes)
    assert (info.split_name("train"), info.split_name("test")) == (train, test)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_split_sizes_are_known(name):
    info = get_info(name)
    assert info.split_images("train") >= 1 and info.split_images("test") >= 1
    assert (info.split_images("train"), info.split_images("test")) == (info.train_images, info.test_images)


@pytest.mark.parametrize("name", EMBEDDED_DATASETS)
def test_split_sizes_of_embedded_sets_are_what_their_readers_return(name):
    for split in ("train", "test"):
        images, labels = EMBEDDED_READERS[name](split, 8)
        assert len(images) == len(labels) == get_info(name).split_images(split)


@pytest.mark.parametrize("name", [n for n, i in REGISTRY.items() if i.source is Source.MEDMNIST])
def test_split_sizes_of_medmnist_sets_are_medmnists(name):
    from medmnist import INFO

    counts = INFO[name]["n_samples"]
    assert (get_info(name).split_images("train"), get_info(name).split_images("test")) == (
        counts["train"], counts["test"])


def test_every_downloadable_source_has_a_downloader():
    for info in REGISTRY.values():
        if info.source is not Source.EMBEDDED and info.downloadable:
            assert info.reader in DOWNLOADERS, info.name
    assert not get_info("imagenet").downloadable  # license: placed by hand


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as error:
        get_info("mnits")
    assert "mnits" in str(error.value)
    for name in REGISTRY:
        assert name in str(error.value)


def test_unknown_split():
    with pytest.raises(ValueError, match="valid splits: train, test"):
        get_info("mnist").split_name("validation")


@pytest.mark.parametrize(
    "size, chosen", [(None, 28), (8, 28), (28, 28), (32, 28), (46, 64), (64, 64), (96, 128), (176, 224), (512, 224)]
)
def test_medmnist_size_nearest(size, chosen):
    assert medmnist_size(size) == chosen


def test_medmnist_files_follow_size():
    assert get_info("octmnist").files("train", 28) == ("octmnist.npz",)
    assert get_info("octmnist").files("train", 64) == ("octmnist_64.npz",)
    assert get_info("octmnist").files("test", None) == ("octmnist.npz",)


def test_expected_files_named_for_error_messages():
    assert "MNIST/raw/train-images-idx3-ubyte" in get_info("mnist").files()
    assert get_info("svhn").files("test") == ("test_32x32.mat",)
    assert "tiny-imagenet-200/val/val_annotations.txt" in get_info("tinyimagenet").files("test")
    assert get_info("imagenet").files("train") == ("train/",)


def test_public_api_is_exported():
    """Every name the package's docstring lists is exported and resolves to the real object; nothing else is."""
    from vsgm.data import cache, registry

    assert set(re.findall(r":\w+:`(\w+)`", vsgm.data.__doc__)) == set(vsgm.data.__all__)
    for name in vsgm.data.__all__:
        obj = getattr(vsgm.data, name)
        if callable(obj):  # functions and classes: defined in a vsgm.data module under the exported name
            assert obj.__name__ == name and obj.__module__.startswith("vsgm.data."), name
    assert vsgm.data.REGISTRY is registry.REGISTRY and vsgm.data.SEED_DATASETS == tuple(SEED)
    assert vsgm.data.EMBEDDED_DATASETS == EMBEDDED_DATASETS and vsgm.data.SPLITS == ("train", "test")
    assert vsgm.data.FORMAT_VERSION == cache.FORMAT_VERSION >= 1
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        vsgm.data.nope
