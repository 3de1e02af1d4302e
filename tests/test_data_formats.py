"""Every seed dataset, written in its real on-disk format, read through load_split and prepare."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from data_fixtures import FOLDER_DATASETS, WRITERS, medmnist_file, write_image, write_medmnist

from vsgm.data import (
    SEED_DATASETS,
    CorruptFileError,
    DatasetUnavailableError,
    get_info,
    load_prepared,
    load_split,
    prepare,
)

ARRAY_DATASETS = [name for name in SEED_DATASETS if name not in FOLDER_DATASETS]


def test_every_seed_dataset_has_a_writer():
    assert sorted(WRITERS) == sorted(SEED_DATASETS)


@pytest.mark.parametrize("name", ARRAY_DATASETS)
@pytest.mark.parametrize("split", ["train", "test"])
def test_array_formats_load_exactly(tmp_path, monkeypatch, name, split):
    expected = WRITERS[name](tmp_path / name, monkeypatch)
    images, labels = load_split(name, split, tmp_path)
    want_images, want_labels = expected[split]
    info = get_info(name)
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    assert images.shape == want_images.shape and images.shape[1] == info.channels
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
    assert labels.min() >= 0 and labels.max() < info.num_classes


@pytest.mark.parametrize("name", FOLDER_DATASETS)
@pytest.mark.parametrize("split", ["train", "test"])
def test_folder_formats_load_resized_with_right_labels(tmp_path, monkeypatch, name, split):
    expected = WRITERS[name](tmp_path / name, monkeypatch)
    images, labels = load_split(name, split, tmp_path, size=16)
    colours, want_labels = expected[split]
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    assert images.shape == (len(want_labels), 3, 16, 16)
    np.testing.assert_array_equal(labels, want_labels)
    # each image is its class's flat colour (JPEG: within a few levels), so labels and pixels agree
    np.testing.assert_allclose(images.reshape(len(images), 3, -1).mean(-1), colours, atol=4)


@pytest.mark.parametrize("name", ["tinyimagenet", "places365"])
def test_fixed_size_folders_load_at_native_size_without_size(tmp_path, monkeypatch, name):
    WRITERS[name](tmp_path / name, monkeypatch)
    images, _ = load_split(name, "test", tmp_path)
    assert images.shape[-1] == get_info(name).native_size


@pytest.mark.parametrize("name", ["dtd", "imagenet"])
def test_variable_size_folders_need_a_size(tmp_path, monkeypatch, name):
    WRITERS[name](tmp_path / name, monkeypatch)
    with pytest.raises(ValueError, match="pass size"):
        load_split(name, "train", tmp_path)


@pytest.mark.parametrize("size, native", [(32, 28), (64, 64), (100, 128), (256, 224)])
def test_medmnist_reads_the_file_nearest_the_size(tmp_path, monkeypatch, size, native):
    write_medmnist("octmnist", native)(tmp_path / "octmnist", monkeypatch)
    images, labels = load_split("octmnist", "train", tmp_path, size=size)
    assert images.shape == (5, 1, native, native)
    with pytest.raises(DatasetUnavailableError, match="octmnist"):
        load_split("octmnist", "train", tmp_path, size=28 if native != 28 else 224)


def test_medmnist_chest_multilabel_is_any_finding(tmp_path, monkeypatch):
    WRITERS["chestmnist"](tmp_path / "chestmnist", monkeypatch)
    _, labels = load_split("chestmnist", "train", tmp_path)
    assert labels.tolist() == [0, 1, 0, 1, 0]


@pytest.mark.parametrize("name", SEED_DATASETS)
def test_prepare_every_seed_dataset_into_model_space(tmp_path, monkeypatch, name):
    WRITERS[name](tmp_path / "data" / name, monkeypatch)
    out = tmp_path / "prepared" / f"{name}.safetensors"
    meta = prepare(name, "test", tmp_path / "data", out, size=16, channels=3, bottleneck=32)
    data = load_prepared(out, size=16, channels=3)
    assert data.images.dtype == torch.uint8 and data.labels.dtype == torch.int64
    assert data.images.shape == (meta["count"], 3, 16, 16)
    assert json.loads(out.with_suffix(".json").read_text()) == data.meta == meta
    assert meta["dataset"] == name and meta["split"] == "test" and meta["source"] == str(get_info(name).source)
    if get_info(name).channels == 1:  # gray -> RGB repeats the channel
        assert torch.equal(data.images[:, 0], data.images[:, 1]) and torch.equal(data.images[:, 0], data.images[:, 2])


def test_missing_files_name_dataset_files_and_directory(tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        load_split("cifar10", "train", tmp_path)
    message = str(info.value)
    assert "cifar10" in message and "cifar-10-batches-py/data_batch_1" in message
    assert str(tmp_path / "cifar10") in message


def test_truncated_jpeg_names_the_file(tmp_path, monkeypatch):
    WRITERS["imagenet"](tmp_path / "imagenet", monkeypatch)
    victim = sorted((tmp_path / "imagenet" / "val").rglob("*.JPEG"))[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=victim.name):
        load_split("imagenet", "test", tmp_path, size=16)


def test_truncated_npz_names_the_file(tmp_path, monkeypatch):
    WRITERS["pneumoniamnist"](tmp_path / "pneumoniamnist", monkeypatch)
    path = tmp_path / "pneumoniamnist" / medmnist_file("pneumoniamnist", 28)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CorruptFileError, match="pneumoniamnist.npz"):
        load_split("pneumoniamnist", "train", tmp_path)


def test_truncated_idx_names_the_file(tmp_path, monkeypatch):
    WRITERS["mnist"](tmp_path / "mnist", monkeypatch)
    path = tmp_path / "mnist" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptFileError, match="t10k-images-idx3-ubyte"):
        load_split("mnist", "test", tmp_path)


def test_cifar_corrupt_batch_is_reported(tmp_path, monkeypatch):
    WRITERS["cifar10"](tmp_path / "cifar10", monkeypatch)
    path = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])  # md5 no longer matches
    with pytest.raises(CorruptFileError, match="cifar-10-batches-py"):
        load_split("cifar10", "train", tmp_path)


def test_tiny_val_with_unknown_wnid_names_the_annotations(tmp_path, monkeypatch):
    WRITERS["tinyimagenet"](tmp_path / "tinyimagenet", monkeypatch)
    annotations = tmp_path / "tinyimagenet" / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    annotations.write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(CorruptFileError, match="val_annotations.txt"):
        load_split("tinyimagenet", "test", tmp_path)


def test_grayscale_and_png_folder_images_become_rgb(tmp_path, monkeypatch):
    WRITERS["imagenet"](tmp_path / "imagenet", monkeypatch)
    gray = tmp_path / "imagenet" / "val" / "n01440764" / "gray.png"
    from PIL import Image

    Image.fromarray(np.full((20, 30), 77, dtype=np.uint8), "L").save(gray)
    images, labels = load_split("imagenet", "test", tmp_path, size=8)
    assert images.shape == (4, 3, 8, 8)
    row = int(np.flatnonzero((images == 77).all(axis=(1, 2, 3)))[0])
    assert labels[row] == 0


def test_non_square_folder_image_is_center_cropped(tmp_path, monkeypatch):
    WRITERS["imagenet"](tmp_path / "imagenet", monkeypatch)
    path = tmp_path / "imagenet" / "val" / "n01443537" / "wide.png"
    pixels = np.zeros((10, 30, 3), dtype=np.uint8)
    pixels[:, 10:20] = 255  # only the central square is white
    from PIL import Image

    Image.fromarray(pixels, "RGB").save(path)
    images, _ = load_split("imagenet", "test", tmp_path, size=10)
    assert (images == 255).all(axis=(1, 2, 3)).sum() == 1


def test_write_image_helper_makes_real_jpeg(tmp_path):
    write_image(tmp_path / "x.JPEG", np.array([1, 2, 3]), 8, 8)
    assert (tmp_path / "x.JPEG").read_bytes()[:3] == b"\xff\xd8\xff"


def test_prepare_decodes_only_the_selected_images(tmp_path, monkeypatch):
    WRITERS["imagenet"](tmp_path / "imagenet", monkeypatch)
    victim = next((tmp_path / "imagenet" / "val" / "n01443537").glob("*.JPEG"))  # class 1
    victim.write_bytes(b"not a jpeg")
    meta = prepare("imagenet", "test", tmp_path, tmp_path / "ok.safetensors", size=8, channels=3, classes=[0, 2])
    assert meta["count"] == 2
    with pytest.raises(CorruptFileError, match=victim.name):
        prepare("imagenet", "test", tmp_path, tmp_path / "bad.safetensors", size=8, channels=3, classes=[1])
    assert not (tmp_path / "bad.safetensors").exists()


def test_missing_medmnist_size_hint_names_the_size(tmp_path):
    with pytest.raises(DatasetUnavailableError, match=r"tissuemnist_64\.npz.*--size 64"):
        load_split("tissuemnist", "train", tmp_path, size=64)


def test_missing_imagenet_says_it_is_manual(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="cannot be downloaded automatically"):
        load_split("imagenet", "train", tmp_path, size=32)


def test_decoding_in_tasks_of_any_size_gives_the_same_images(tmp_path, monkeypatch):
    import vsgm.data.folders as folders

    WRITERS["dtd"](tmp_path / "dtd", monkeypatch)
    paths = sorted((tmp_path / "dtd").rglob("*.jpg"))
    assert len(paths) >= 5
    one_by_one = np.stack([folders.decode_image(p, 16) for p in paths])
    for chunk, threads in ((512, 1), (2, 3), (1, 2)):
        monkeypatch.setattr(folders, "DECODE_CHUNK", chunk)
        np.testing.assert_array_equal(folders.decode_images(paths, 16, threads=threads), one_by_one)
