"""Tests of vsgm.viz: grid geometry, value mapping, valid PNGs, atomic writes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from vsgm.viz import (  # noqa: E402
    image_grid,
    montage,
    plot_auroc_heatmap,
    plot_roc_curves,
    plot_score_histograms,
    save_image_grid,
)


def _open_png(path) -> Image.Image:
    assert path.exists()
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()
        return img.copy()


def _no_temp_files(directory) -> bool:
    return not any(".tmp" in p.name for p in directory.rglob("*"))


# --------------------------------------------------------------------------- image grids


def test_image_grid_geometry_and_value_mapping():
    images = torch.zeros(16, 1, 8, 8)
    images[0] = -1.0
    images[1] = 1.0
    images[2] = 5.0  # clamped to +1
    images[3] = -7.0  # clamped to -1
    grid = image_grid(images, nrow=4)
    # 4 x 4 tiles of 8 px, 1 px padding between and around: 4 * (8 + 1) + 1 = 37
    assert grid.shape == (37, 37, 1) and grid.dtype == np.uint8
    tile = lambda r, c: grid[1 + r * 9 : 9 + r * 9, 1 + c * 9 : 9 + c * 9, 0]  # noqa: E731
    assert (tile(0, 0) == 0).all()
    assert (tile(0, 1) == 255).all()
    assert (tile(0, 2) == 255).all()
    assert (tile(0, 3) == 0).all()
    assert (tile(1, 0) == 128).all()  # 0.0 -> 127.5 -> 128
    assert (grid[0, :, 0] == 0).all() and (grid[:, 9, 0] == 0).all()  # padding


def test_image_grid_default_nrow_rgb_and_partial_row():
    grid = image_grid(torch.rand(5, 3, 4, 6) * 2 - 1)  # nrow = ceil(sqrt(5)) = 3 -> 2 rows
    assert grid.shape == (2 * 5 + 1, 3 * 7 + 1, 3)
    single = image_grid(torch.ones(1, 3, 4, 4))
    assert single.shape == (6, 6, 3)
    assert (single[1:5, 1:5] == 255).all()


def test_image_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="C in"):
        image_grid(torch.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        image_grid(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="nrow"):
        image_grid(torch.zeros(2, 1, 8, 8), nrow=0)


def test_save_image_grid_upscales_small_images(tmp_path):
    out = tmp_path / "sub" / "grid.png"
    save_image_grid(torch.zeros(16, 1, 8, 8), out, nrow=4)
    img = _open_png(out)
    factor = -(-256 // 37)  # ceil(256 / 37) = 7
    assert img.size == (37 * factor, 37 * factor) and img.mode == "L"
    arr = np.asarray(img)
    assert arr[factor * 1, factor * 1] == 128 and arr[0, 0] == 0
    assert _no_temp_files(tmp_path)


def test_save_image_grid_rgb_large_not_upscaled(tmp_path):
    out = tmp_path / "grid.png"
    save_image_grid(torch.ones(4, 3, 150, 150), out, nrow=2)
    img = _open_png(out)
    assert img.size == (303, 303) and img.mode == "RGB"


# --------------------------------------------------------------------------- plots


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, 300), rng.normal(1, 1, 200)


def test_plots_are_valid_pngs_and_leave_no_open_figures(tmp_path, scores):
    s_in, s_out = scores
    before = plt.get_fignums()
    plot_score_histograms(s_in, s_out, tmp_path / "hist.png", "title", "MNIST", "FashionMNIST")
    plot_roc_curves({"a": (s_in, s_out), "b": (s_out, s_in)}, tmp_path / "roc.png", "roc")
    table = pd.DataFrame(
        [[0.9, 0.3, np.nan], [0.5, 0.12, 0.99]], index=["mnist", "cifar10"], columns=["svhn", "fashion", "noise"]
    )
    plot_auroc_heatmap(table, tmp_path / "heat1.png", "one scorer")
    plot_auroc_heatmap({"score_norm": table, "likelihood": table.T.T * 0.5}, tmp_path / "heat2.png", "two")
    for name in ("hist", "roc", "heat1", "heat2"):
        img = _open_png(tmp_path / f"{name}.png")
        assert img.size[0] > 100 and img.size[1] > 100
    # two subplots side by side -> wider than the single one
    assert _open_png(tmp_path / "heat2.png").size[0] > _open_png(tmp_path / "heat1.png").size[0]
    assert plt.get_fignums() == before
    assert _no_temp_files(tmp_path)


def test_histogram_with_constant_scores(tmp_path):
    plot_score_histograms([1.0] * 10, [1.0] * 5, tmp_path / "h.png", "t", "in", "out")
    _open_png(tmp_path / "h.png")


def test_plot_input_errors(tmp_path, scores):
    s_in, _ = scores
    with pytest.raises(ValueError, match="non-finite"):
        plot_score_histograms(s_in, [np.nan, 1.0], tmp_path / "h.png", "t", "a", "b")
    with pytest.raises(ValueError, match="empty"):
        plot_roc_curves({}, tmp_path / "r.png", "t")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        plot_auroc_heatmap(pd.DataFrame([[1.5]]), tmp_path / "m.png", "t")
    assert not any(tmp_path.iterdir())


def test_montage_with_paths_arrays_and_missing_cells(tmp_path):
    save_image_grid(torch.zeros(4, 1, 8, 8), tmp_path / "g1.png")
    save_image_grid(torch.rand(4, 3, 8, 8) * 2 - 1, tmp_path / "g2.png")
    grids = {
        ("mnist", "euler_maruyama"): tmp_path / "g1.png",
        ("mnist", "pc"): str(tmp_path / "g2.png"),
        ("cifar10", "pc"): image_grid(torch.rand(4, 3, 8, 8) * 2 - 1),
        ("cifar10", "ode"): image_grid(torch.zeros(4, 1, 8, 8)),
        # ("mnist", "ode") and ("cifar10", "euler_maruyama") are missing -> blank
    }
    before = plt.get_fignums()
    montage(grids, tmp_path / "samples.png")
    img = _open_png(tmp_path / "samples.png")
    assert img.size[0] > img.size[1]  # 2 rows x 3 columns
    assert plt.get_fignums() == before
    with pytest.raises(ValueError, match="empty"):
        montage({}, tmp_path / "empty.png")


# --------------------------------------------------------------------------- atomic writes


def test_failed_write_leaves_no_temp_file(tmp_path, scores):
    s_in, s_out = scores
    # The target is an existing directory: the PNG is rendered into the temp file,
    # then the final rename fails; the temp file must be cleaned up.
    target = tmp_path / "out.png"
    target.mkdir()
    with pytest.raises(OSError):
        plot_score_histograms(s_in, s_out, target, "t", "a", "b")
    with pytest.raises(OSError):
        save_image_grid(torch.zeros(4, 1, 8, 8), target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"] and not any(target.iterdir())

    # The parent "directory" is a regular file: nothing can be created at all.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        plot_roc_curves({"a": (s_in, s_out)}, blocker / "roc.png", "t")
    with pytest.raises(OSError):
        montage({("a", "b"): np.zeros((4, 4), np.uint8)}, blocker / "m.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "out.png"]


def test_existing_file_replaced_only_on_success(tmp_path, monkeypatch):
    target = tmp_path / "grid.png"
    save_image_grid(torch.zeros(1, 1, 8, 8), target)
    original = target.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(RuntimeError):
        save_image_grid(torch.ones(1, 1, 8, 8), target)
    assert target.read_bytes() == original
    assert _no_temp_files(tmp_path)
