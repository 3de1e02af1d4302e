"""The dataset registry: one table, name -> :class:`DatasetInfo`.

Every dataset lives in its own directory ``{root}/{name}/`` (``root`` defaults to
``resources/data``). Inside it, each dataset keeps the layout of the library that
reads it, so files fetched by hand on an offline cluster can be dropped in as-is:

=================  ==========================================================================
dataset            files under ``{root}/{name}/``
=================  ==========================================================================
mnist              ``MNIST/raw/{train,t10k}-images-idx3-ubyte``, ``MNIST/raw/{train,t10k}-labels-idx1-ubyte``
fashionmnist       ``FashionMNIST/raw/...`` (same four files as MNIST)
cifar10            ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
cifar100           ``cifar-100-python/{train,test,meta}``
svhn               ``train_32x32.mat``, ``test_32x32.mat``
places365          ``categories_places365.txt``, ``places365_train_standard.txt``, ``places365_val.txt``,
                   ``data_256_standard/<letter>/<class>/*.jpg``, ``val_256/*.jpg`` (the "small", 256px set)
dtd                ``dtd/images/<class>/*.jpg``, ``dtd/labels/{train1,test1}.txt`` (torchvision's DTD
                   root is ``{root}``; it appends ``dtd/dtd``)
chestmnist, ...    ``{flag}.npz`` (28px) or ``{flag}_{64,128,224}.npz`` (medmnist >= 3)
tinyimagenet       ``tiny-imagenet-200/train/<wnid>/images/*.JPEG``, ``tiny-imagenet-200/val/images/*.JPEG``,
                   ``tiny-imagenet-200/val/val_annotations.txt`` (the unzipped official archive)
imagenet           ``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG`` (the standard ImageFolder layout)
digits, photos,    nothing: embedded in scikit-learn or generated (see :mod:`vsgm.data.embedded`)
noise, flat
=================  ==========================================================================

Split names: every dataset exposes ``"train"`` (used for training) and ``"test"``
(used for evaluation); :class:`DatasetInfo` maps them to the library's own split
names (SVHN ``train``/``test``, Places365 ``train-standard``/``val``, DTD
``train``/``test`` of partition 1, Tiny ImageNet and ImageNet ``train``/``val``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .dataset_info import (MEDMNIST_SIZES, SPLITS, DatasetInfo, Source, check_split, medmnist_size,
                           medmnist_suffix)

__all__ = ["MEDMNIST_SIZES", "SPLITS", "DatasetInfo", "Source", "check_split", "medmnist_size", "medmnist_suffix",
           "REGISTRY", "SEED_DATASETS", "EMBEDDED_DATASETS", "dataset_names", "get_info", "native_size", "data_dir"]

def _mnist_files(folder: str) -> tuple[str, ...]:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return tuple(f"{folder}/raw/{s}" for s in stems)


_CIFAR10_FILES = tuple(
    f"cifar-10-batches-py/{f}" for f in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
)
_CIFAR100_FILES = tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta"))
_TINY = "tiny-imagenet-200"


def _medmnist(name: str, num_classes: int, train_images: int, test_images: int, description: str) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        source=Source.MEDMNIST,
        reader="medmnist",
        channels=1,
        native_size=28,
        num_classes=num_classes,
        train_files=(f"{name}{{suffix}}.npz",),
        test_files=(f"{name}{{suffix}}.npz",),
        train_images=train_images,
        test_images=test_images,
        url="https://zenodo.org/records/10519652",
        description=description,
    )


def _embedded(name: str, channels: int, native_size: int | None, num_classes: int, train_images: int,
              test_images: int, description: str) -> DatasetInfo:
    return DatasetInfo(
        name=name,
        source=Source.EMBEDDED,
        reader=name,
        channels=channels,
        native_size=native_size,
        num_classes=num_classes,
        train_images=train_images,
        test_images=test_images,
        description=description,
    )


REGISTRY: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="mnist",
            source=Source.TORCHVISION,
            reader="mnist",
            channels=1,
            native_size=28,
            num_classes=10,
            train_files=_mnist_files("MNIST"),
            test_files=_mnist_files("MNIST"),
            train_images=60_000,
            test_images=10_000,
            url="https://ossci-datasets.s3.amazonaws.com/mnist/",
            description="handwritten digits",
        ),
        DatasetInfo(
            name="fashionmnist",
            source=Source.TORCHVISION,
            reader="fashionmnist",
            channels=1,
            native_size=28,
            num_classes=10,
            train_files=_mnist_files("FashionMNIST"),
            test_files=_mnist_files("FashionMNIST"),
            train_images=60_000,
            test_images=10_000,
            url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            description="Zalando clothing items",
        ),
        DatasetInfo(
            name="cifar10",
            source=Source.TORCHVISION,
            reader="cifar10",
            channels=3,
            native_size=32,
            num_classes=10,
            train_files=_CIFAR10_FILES,
            test_files=_CIFAR10_FILES,
            train_images=50_000,
            test_images=10_000,
            url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            description="10 classes of natural images",
        ),
        DatasetInfo(
            name="cifar100",
            source=Source.TORCHVISION,
            reader="cifar100",
            channels=3,
            native_size=32,
            num_classes=100,
            train_files=_CIFAR100_FILES,
            test_files=_CIFAR100_FILES,
            train_images=50_000,
            test_images=10_000,
            url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            description="100 classes of natural images (fine labels)",
        ),
        DatasetInfo(
            name="svhn",
            source=Source.TORCHVISION,
            reader="svhn",
            channels=3,
            native_size=32,
            num_classes=10,
            train_files=("train_32x32.mat",),
            test_files=("test_32x32.mat",),
            train_images=73_257,
            test_images=26_032,
            url="http://ufldl.stanford.edu/housenumbers/",
            description="street view house numbers (digit 0 has label 0)",
        ),
        DatasetInfo(
            name="places365",
            source=Source.TORCHVISION,
            reader="places365",
            channels=3,
            native_size=256,
            num_classes=365,
            train_split="train-standard",
            test_split="val",
            train_files=("categories_places365.txt", "places365_train_standard.txt", "data_256_standard/"),
            test_files=("categories_places365.txt", "places365_val.txt", "val_256/"),
            train_images=1_803_460,
            test_images=36_500,
            url="http://data.csail.mit.edu/places/places365/",
            description="scenes, small (256px) images",
        ),
        DatasetInfo(
            name="dtd",
            source=Source.TORCHVISION,
            reader="dtd",
            channels=3,
            native_size=None,
            num_classes=47,
            train_files=("dtd/images/", "dtd/labels/train1.txt"),
            test_files=("dtd/images/", "dtd/labels/test1.txt"),
            train_images=1_880,
            test_images=1_880,
            url="https://www.robots.ox.ac.uk/~vgg/data/dtd/",
            library_root_is_parent=True,
            description="describable textures, partition 1",
        ),
        _medmnist("chestmnist", 2, 78_468, 22_433, "chest X-rays; label 1 = any of the 14 findings, 0 = none"),
        _medmnist("octmnist", 4, 97_477, 1_000, "retinal OCT scans"),
        _medmnist("tissuemnist", 8, 165_466, 47_280, "kidney cortex microscopy"),
        _medmnist("pneumoniamnist", 2, 4_708, 624, "pediatric chest X-rays, pneumonia vs normal"),
        DatasetInfo(
            name="tinyimagenet",
            source=Source.FOLDER,
            reader="tinyimagenet",
            channels=3,
            native_size=64,
            num_classes=200,
            test_split="val",
            train_files=(f"{_TINY}/train/",),
            test_files=(f"{_TINY}/train/", f"{_TINY}/val/images/", f"{_TINY}/val/val_annotations.txt"),
            train_images=100_000,
            test_images=10_000,
            url="http://cs231n.stanford.edu/tiny-imagenet-200.zip",
            description="Tiny ImageNet, 200 classes, 64px",
        ),
        DatasetInfo(
            name="imagenet",
            source=Source.FOLDER,
            reader="imagenet",
            channels=3,
            native_size=None,
            num_classes=1000,
            test_split="val",
            train_files=("train/",),
            test_files=("train/", "val/"),
            train_images=1_281_167,
            test_images=50_000,
            url="https://image-net.org/",
            downloadable=False,
            description="ILSVRC-2012 in ImageFolder layout (train/<wnid>, val/<wnid>)",
        ),
        _embedded("digits", 1, 8, 10, 1438, 359, "scikit-learn handwritten digits, 8x8 (offline)"),
        _embedded("photos", 3, 16, 2, 4410, 1470, "16px patches of scikit-learn's two sample photos (offline)"),
        _embedded("noise", 3, None, 1, 2000, 1000, "uniform noise images (offline, far OOD)"),
        _embedded("flat", 3, None, 1, 2000, 1000, "constant colour plus a smooth gradient (offline, simpler OOD)"),
    )
}

SEED_DATASETS: tuple[str, ...] = (
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
)
EMBEDDED_DATASETS: tuple[str, ...] = tuple(n for n, i in REGISTRY.items() if i.source is Source.EMBEDDED)


def dataset_names() -> list[str]:
    """All registered dataset names, in registry order.

    Returns:
        The names accepted by :func:`get_info`.
    """
    return list(REGISTRY)


def get_info(name: str) -> DatasetInfo:
    """Look a dataset up by name.

    Args:
        name: registry name, e.g. ``"cifar10"``.

    Returns:
        Its :class:`DatasetInfo`.

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(REGISTRY)}") from None


def native_size(name: str, size: int | None = None) -> int | None:
    """The resolution the images of ``name`` have on disk when prepared at ``size``.

    This is what a model trained on ``name`` sees before any resize, i.e. the
    ``bottleneck`` to pass to :func:`vsgm.data.to_model_space` for every set
    scored by that model. For medmnist it depends on the file chosen for ``size``.

    Args:
        name: registry name.
        size: target size of the model.

    Returns:
        The native side, or ``None`` when it varies (folders of any size, generated sets).
    """
    info = get_info(name)
    if info.source is Source.MEDMNIST:
        return medmnist_size(size)
    return info.native_size


def data_dir(name: str, root: str | os.PathLike) -> Path:
    """The directory that holds dataset ``name`` under the data root.

    Args:
        name: registry name.
        root: the data root (e.g. ``resources/data``).

    Returns:
        ``{root}/{name}``.
    """
    get_info(name)
    return Path(root) / name
