"""What a dataset is: its source, splits, files and sizes (:class:`DatasetInfo`), and the rules for
split names and medmnist's file sizes. The table of datasets is :mod:`vsgm.data.registry`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

SPLITS = ("train", "test")
MEDMNIST_SIZES = (28, 64, 128, 224)


class Source(enum.StrEnum):
    """Where a dataset comes from."""

    TORCHVISION = "torchvision"
    MEDMNIST = "medmnist"
    FOLDER = "folder"
    EMBEDDED = "embedded"


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of one dataset.

    Attributes:
        name: registry name (also the directory name under the data root).
        source: where the data comes from.
        reader: key of the reader/downloader in :mod:`vsgm.data.sources`.
        channels: channels of the images as stored (1 gray, 3 RGB).
        native_size: side of the stored images; ``None`` where it varies (or is generated).
        num_classes: number of labels (labels are ``0..num_classes-1``).
        train_split: the library's split name used for ``"train"``.
        test_split: the library's split name used for ``"test"``.
        train_files: files/directories (ending in ``/``) the library needs to read ``"train"``,
            relative to the dataset directory; ``{suffix}`` is the medmnist size suffix.
        test_files: the same for ``"test"``.
        train_images: images in ``"train"`` as distributed (the workflow sizes its memory requests
            by it; a folder filled by hand may hold fewer); ``None`` where unknown.
        test_images: the same for ``"test"``.
        url: where the data can be obtained (for error messages).
        library_root_is_parent: the library appends the dataset's name itself (DTD), so it is
            given the data root instead of the dataset directory.
        downloadable: ``vsgm download`` can fetch it (ImageNet: no, its license needs a manual download).
        description: one line for humans.
    """

    name: str
    source: Source
    reader: str
    channels: int
    native_size: int | None
    num_classes: int
    train_split: str = "train"
    test_split: str = "test"
    train_files: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()
    train_images: int | None = None
    test_images: int | None = None
    url: str = ""
    library_root_is_parent: bool = False
    downloadable: bool = True
    description: str = ""

    def split_name(self, split: str) -> str:
        """Map ``"train"``/``"test"`` to the library's split name.

        Args:
            split: ``"train"`` or ``"test"``.

        Returns:
            The split name the underlying library uses.
        """
        check_split(split)
        return self.train_split if split == "train" else self.test_split

    def split_images(self, split: str) -> int | None:
        """Images in ``"train"`` or ``"test"`` as distributed (``None`` where unknown)."""
        check_split(split)
        return self.train_images if split == "train" else self.test_images

    def files(self, split: str | None = None, size: int | None = None) -> tuple[str, ...]:
        """Files expected on disk for ``split`` (both splits when ``None``).

        Args:
            split: ``"train"``, ``"test"`` or ``None`` for both.
            size: target size (selects the medmnist file); ``None`` means 28.

        Returns:
            Paths relative to the dataset directory; directories end with ``/``.
        """
        if split is None:
            raw = tuple(dict.fromkeys(self.train_files + self.test_files))
        else:
            check_split(split)
            raw = self.train_files if split == "train" else self.test_files
        suffix = medmnist_suffix(size) if self.source is Source.MEDMNIST else ""
        return tuple(f.format(suffix=suffix) for f in raw)


def check_split(split: str) -> None:
    """Raise ValueError unless ``split`` is ``"train"`` or ``"test"``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def medmnist_size(size: int | None) -> int:
    """The medmnist file size (28, 64, 128 or 224) nearest to ``size``.

    Ties go to the larger file, so images are shrunk (area-averaged) rather than enlarged.

    Args:
        size: target size; ``None`` means 28 (medmnist's default).

    Returns:
        One of :data:`MEDMNIST_SIZES`.
    """
    if size is None:
        return 28
    if size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    return min(MEDMNIST_SIZES, key=lambda s: (abs(s - size), -s))


def medmnist_suffix(size: int | None) -> str:
    """medmnist's file-name suffix for the file chosen for ``size`` (``""`` for 28, else ``"_64"`` ...)."""
    chosen = medmnist_size(size)
    return "" if chosen == 28 else f"_{chosen}"
