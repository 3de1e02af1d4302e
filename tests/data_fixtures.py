"""Writers for every seed dataset's real on-disk format, plus a local HTTP server.

Each ``write_<name>(dataset_dir, monkeypatch)`` writes a few images exactly as the
library stores them under ``dataset_dir = {root}/{name}`` and returns the expected
``{"train": (images, labels), "test": (images, labels)}``. Array formats return the
exact uint8 N,C,H,W arrays; image-folder formats use one flat colour per class
(JPEG keeps flat colours within a few levels) and return per-image colours N,3
instead of images. Where a torchvision class verifies md5 sums on load, the
expected sums are patched to those of the files written (the format stays real).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import pickle
import socket
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

Expected = dict[str, tuple[np.ndarray, np.ndarray]]


def md5(path: Path) -> str:
    """md5 hex digest of a file."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def rng_images(seed: int, n: int, channels: int, size: int) -> np.ndarray:
    """Deterministic random uint8 images N,C,S,S."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)


# ---------------------------------------------------------------- MNIST / FashionMNIST
def idx_bytes(array: np.ndarray) -> bytes:
    """An array in the idx (LeCun) format: magic 0x0000080N (uint8, N dims), big-endian dims, data."""
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def mnist_arrays(seed: int = 0) -> Expected:
    """Small MNIST-like train/test arrays (28x28 gray)."""
    rng = np.random.default_rng(seed)
    return {
        "train": (rng_images(seed, 6, 1, 28), rng.integers(0, 10, 6).astype(np.int64)),
        "test": (rng_images(seed + 1, 4, 1, 28), rng.integers(0, 10, 4).astype(np.int64)),
    }


def write_idx_files(folder: Path, expected: Expected, gz: bool = False) -> list[Path]:
    """Write the four MNIST idx files (optionally gzipped, as served by the mirrors)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = expected[split]
        for stem, array in ((f"{prefix}-images-idx3-ubyte", images[:, 0]), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = idx_bytes(array)
            path = folder / (stem + (".gz" if gz else ""))
            path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
            written.append(path)
    return written


def _write_mnist_like(folder_name: str):
    def write(dataset_dir: Path, monkeypatch) -> Expected:
        expected = mnist_arrays(3 if folder_name == "FashionMNIST" else 0)
        write_idx_files(dataset_dir / folder_name / "raw", expected)
        return expected

    return write


# ---------------------------------------------------------------- CIFAR
def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(dataset_dir: Path, monkeypatch) -> Expected:
    """cifar-10-batches-py: five training batches, a test batch and batches.meta."""
    from torchvision.datasets import CIFAR10

    base = dataset_dir / "cifar-10-batches-py"
    images = rng_images(10, 12, 3, 32)
    labels = np.arange(12, dtype=np.int64) % 10
    names = [f"data_batch_{i}" for i in range(1, 6)]
    for i, name in enumerate(names):  # 5 batches of 2 images, then 2 test images
        rows = slice(2 * i, 2 * i + 2)
        _pickle(
            base / name,
            {
                "batch_label": name,
                "labels": labels[rows].tolist(),
                "data": images[rows].reshape(2, -1),
                "filenames": ["x.png", "y.png"],
            },
        )
    _pickle(
        base / "test_batch",
        {
            "batch_label": "test",
            "labels": labels[10:].tolist(),
            "data": images[10:].reshape(2, -1),
            "filenames": ["a.png", "b.png"],
        },
    )
    _pickle(base / "batches.meta", {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072})
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5(base / n)] for n in names])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(base / "test_batch")]])
    monkeypatch.setattr(
        CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": md5(base / "batches.meta")}
    )
    return {"train": (images[:10], labels[:10]), "test": (images[10:], labels[10:])}


def write_cifar100(dataset_dir: Path, monkeypatch) -> Expected:
    """cifar-100-python: train, test (fine and coarse labels) and meta."""
    from torchvision.datasets import CIFAR100

    base = dataset_dir / "cifar-100-python"
    images = rng_images(11, 7, 3, 32)
    fine = np.array([0, 99, 42, 7, 13, 55, 98], dtype=np.int64)
    for name, rows in (("train", slice(0, 5)), ("test", slice(5, 7))):
        n = len(fine[rows])
        _pickle(
            base / name,
            {
                "filenames": ["f.png"] * n,
                "batch_label": name,
                "fine_labels": fine[rows].tolist(),
                "coarse_labels": (fine[rows] // 5).tolist(),
                "data": images[rows].reshape(n, -1),
            },
        )
    _pickle(
        base / "meta",
        {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]},
    )
    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5(base / "train")]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5(base / "test")]])
    monkeypatch.setattr(CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names", "md5": md5(base / "meta")})
    return {"train": (images[:5], fine[:5]), "test": (images[5:], fine[5:])}


# ---------------------------------------------------------------- SVHN
def write_svhn(dataset_dir: Path, monkeypatch) -> Expected:
    """train_32x32.mat / test_32x32.mat: X is 32x32x3xN, y is Nx1 with 10 meaning digit 0."""
    import scipy.io
    from torchvision.datasets import SVHN

    dataset_dir.mkdir(parents=True, exist_ok=True)
    expected, split_list = {}, dict(SVHN.split_list)
    for split, n, seed in (("train", 5, 20), ("test", 3, 21)):
        images = rng_images(seed, n, 3, 32)
        digits = np.array([0, 1, 9, 0, 5][:n], dtype=np.int64)
        stored = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        path = dataset_dir / f"{split}_32x32.mat"
        scipy.io.savemat(path, {"X": images.transpose(2, 3, 1, 0), "y": stored})
        url, filename, _ = split_list[split]
        split_list[split] = [url, filename, md5(path)]
        expected[split] = (images, digits)
    monkeypatch.setattr(SVHN, "split_list", split_list)
    return expected


# ---------------------------------------------------------------- image folders
PALETTE = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]], dtype=np.uint8)


def write_image(path: Path, colour: np.ndarray, width: int, height: int, fmt: str = "JPEG") -> None:
    """A flat-colour RGB image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.broadcast_to(np.asarray(colour, dtype=np.uint8), (height, width, 3)).copy()
    Image.fromarray(pixels, "RGB").save(path, format=fmt, quality=95)


def write_dtd(dataset_dir: Path, monkeypatch) -> Expected:
    """dtd/images/<class>/<class>_<k>.jpg of varying sizes, dtd/labels/{train,val,test}1.txt."""
    base = dataset_dir / "dtd"
    classes = ["banded", "dotted", "striped"]  # sorted: labels 0, 1, 2
    lines = {"train1": [], "val1": [], "test1": []}
    sizes = [(40, 30), (33, 50), (64, 64)]
    for c, name in enumerate(classes):
        for k, split in enumerate(["train1", "train1", "test1", "val1"]):
            file = f"{name}_{k:04d}.jpg"
            width, height = sizes[(c + k) % 3]
            write_image(base / "images" / name / file, PALETTE[c], width, height)
            lines[split].append(f"{name}/{file}")
    for split, entries in lines.items():
        (base / "labels").mkdir(parents=True, exist_ok=True)
        (base / "labels" / f"{split}.txt").write_text("\n".join(entries) + "\n")
    labels_train = np.repeat(np.arange(3), 2)
    return {"train": (PALETTE[labels_train], labels_train), "test": (PALETTE[:3], np.arange(3))}


def write_places365(dataset_dir: Path, monkeypatch) -> Expected:
    """Places365 small: categories, file lists, data_256_standard/<l>/<class>/*.jpg and val_256/*.jpg."""
    from torchvision.datasets import Places365

    dataset_dir.mkdir(parents=True, exist_ok=True)
    categories = ["/a/abbey", "/b/beach", "/c/canyon"]
    (dataset_dir / "categories_places365.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(categories)))
    train_lines, train_labels = [], [0, 1, 2, 2]
    for k, label in enumerate(train_labels):
        rel = f"{categories[label]}/{k:08d}.jpg"
        write_image(dataset_dir / "data_256_standard" / rel.lstrip("/"), PALETTE[label], 256, 256)
        train_lines.append(f"{rel} {label}")
    val_lines, val_labels = [], [2, 0]
    for k, label in enumerate(val_labels):
        file = f"Places365_val_{k + 1:08d}.jpg"
        write_image(dataset_dir / "val_256" / file, PALETTE[label], 256, 256)
        val_lines.append(f"{file} {label}")
    (dataset_dir / "places365_train_standard.txt").write_text("\n".join(train_lines) + "\n")
    (dataset_dir / "places365_val.txt").write_text("\n".join(val_lines) + "\n")
    monkeypatch.setattr(
        Places365, "_CATEGORIES_META", ("categories_places365.txt", md5(dataset_dir / "categories_places365.txt"))
    )
    file_lists = dict(Places365._FILE_LIST_META)
    for split, file in (("train-standard", "places365_train_standard.txt"), ("val", "places365_val.txt")):
        file_lists[split] = (file, md5(dataset_dir / file))
    monkeypatch.setattr(Places365, "_FILE_LIST_META", file_lists)
    return {
        "train": (PALETTE[train_labels], np.array(train_labels)),
        "test": (PALETTE[val_labels], np.array(val_labels)),
    }


def write_tinyimagenet(dataset_dir: Path, monkeypatch) -> Expected:
    """tiny-imagenet-200/{train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt, wnids.txt}."""
    base = dataset_dir / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819", "n01641577"]
    (base).mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")  # file order is not the label order
    train_labels = []
    for c, wnid in enumerate(wnids):
        for k in range(2):
            write_image(base / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", PALETTE[c], 64, 64)
            train_labels.append(c)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{wnid}_0.JPEG\t0\t0\t63\t63\n")
    val_labels, lines = [1, 2, 0, 1], []
    for k, label in enumerate(val_labels):
        write_image(base / "val" / "images" / f"val_{k}.JPEG", PALETTE[label], 64, 64)
        lines.append(f"val_{k}.JPEG\t{wnids[label]}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (base / "test" / "images").mkdir(parents=True)
    return {
        "train": (PALETTE[train_labels], np.array(train_labels)),
        "test": (PALETTE[val_labels], np.array(val_labels)),
    }


def write_imagenet(dataset_dir: Path, monkeypatch) -> Expected:
    """train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (ImageFolder layout), varying sizes."""
    wnids = ["n01440764", "n01443537", "n15075141"]
    expected = {}
    for split, per_class in (("train", 2), ("val", 1)):
        labels = []
        for c, wnid in enumerate(wnids):
            for k in range(per_class):
                write_image(dataset_dir / split / wnid / f"{wnid}_{split}_{k}.JPEG", PALETTE[c], 50 + 7 * k, 40 + 5 * c)
                labels.append(c)
        expected["train" if split == "train" else "test"] = (PALETTE[labels], np.array(labels))
    return expected


# ---------------------------------------------------------------- medmnist
def medmnist_arrays(flag: str, size: int) -> dict[str, np.ndarray]:
    """npz contents as medmnist 3 stores them: {split}_images N,S,S uint8, {split}_labels N,L."""
    contents = {}
    for k, (split, n) in enumerate((("train", 5), ("val", 2), ("test", 3))):
        contents[f"{split}_images"] = rng_images(30 + k, n, 1, size)[:, 0]
        if flag == "chestmnist":
            labels = np.zeros((n, 14), dtype=np.uint8)
            labels[1::2, (k + 3) % 14] = 1  # odd images have one finding
        else:
            labels = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
        contents[f"{split}_labels"] = labels
    return contents


def medmnist_file(flag: str, size: int) -> str:
    """medmnist 3's file name for ``flag`` at ``size``."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def write_medmnist(flag: str, size: int = 28):
    def write(dataset_dir: Path, monkeypatch) -> Expected:
        dataset_dir.mkdir(parents=True, exist_ok=True)
        contents = medmnist_arrays(flag, size)
        np.savez(dataset_dir / medmnist_file(flag, size), **contents)
        expected = {}
        for split in ("train", "test"):
            labels = contents[f"{split}_labels"]
            labels = (labels.sum(1) > 0) if flag == "chestmnist" else labels[:, 0]
            expected[split] = (contents[f"{split}_images"][:, None], labels.astype(np.int64))
        return expected

    return write


WRITERS = {
    "mnist": _write_mnist_like("MNIST"),
    "fashionmnist": _write_mnist_like("FashionMNIST"),
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "svhn": write_svhn,
    "places365": write_places365,
    "dtd": write_dtd,
    "chestmnist": write_medmnist("chestmnist"),
    "octmnist": write_medmnist("octmnist"),
    "tissuemnist": write_medmnist("tissuemnist"),
    "pneumoniamnist": write_medmnist("pneumoniamnist"),
    "tinyimagenet": write_tinyimagenet,
    "imagenet": write_imagenet,
}
FOLDER_DATASETS = ("places365", "dtd", "tinyimagenet", "imagenet")


# ---------------------------------------------------------------- local HTTP
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature of the base class
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (ephemeral port) in a thread; yield the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
