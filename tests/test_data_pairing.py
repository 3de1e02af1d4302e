"""The pairing rule: every set converted to a model's channels and size the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vsgm.data import to_model_space


# ---------------------------------------------------------------- to_model_space

def test_gray_to_rgb_repeats_exactly():
    gray = np.random.default_rng(0).integers(0, 256, (3, 1, 8, 8), dtype=np.uint8)
    rgb = to_model_space(gray, channels=3, size=8)
    assert isinstance(rgb, np.ndarray) and rgb.shape == (3, 3, 8, 8)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, c], gray[:, 0])


def test_rgb_to_gray_is_bt601_luma():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30), (255, 255, 255), (0, 0, 0)]
    rgb = torch.tensor(colours, dtype=torch.uint8).view(-1, 3, 1, 1).expand(-1, 3, 4, 4).contiguous()
    gray = to_model_space(rgb, channels=1, size=4)
    assert isinstance(gray, torch.Tensor) and gray.shape == (6, 1, 4, 4)
    # 0.299*255=76.2, 0.587*255=149.7, 0.114*255=29.1, 2.99+11.74+3.42=18.15
    assert gray[:, 0, 0, 0].tolist() == [76, 150, 29, 18, 255, 0]


def test_same_space_is_identity():
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(to_model_space(images, 3, 16, bottleneck=16), images)
    assert torch.equal(to_model_space(images, 3, 16, bottleneck=32), images)


def _stripes(size=32, period=4):
    column = (np.arange(size) // (period // 2)) % 2 * 255
    return np.broadcast_to(column.astype(np.uint8), (1, 1, size, size)).copy()


def test_bottleneck_goes_through_native_resolution():
    stripes = _stripes()  # period-4 stripes survive 32->16 but not 32->8
    through = to_model_space(stripes, channels=1, size=16, bottleneck=8)
    native = to_model_space(stripes, channels=1, size=8)
    np.testing.assert_array_equal(through, to_model_space(native, channels=1, size=16))
    assert (through == 128).all()  # 8px is flat mean grey (127.5, rounded half to even), upsampled flat
    direct = to_model_space(stripes, channels=1, size=16)
    assert set(np.unique(direct)) == {0, 255}  # without the bottleneck the stripes remain


def test_shrinking_is_area_average_and_enlarging_is_bilinear():
    image = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4) * 10
    small = to_model_space(image, 1, 2)
    np.testing.assert_array_equal(small[0, 0], [[25, 45], [105, 125]])  # 2x2 block means
    flat = np.full((1, 1, 2, 2), 77, dtype=np.uint8)
    assert (to_model_space(flat, 1, 7) == 77).all()


def test_range_preserved_and_dtype():
    rng = np.random.default_rng(2)
    images = rng.integers(40, 201, (5, 3, 20, 20), dtype=np.uint8)
    for size, bottleneck in ((8, None), (33, None), (16, 10), (64, 12)):
        out = to_model_space(images, 3, size, bottleneck)
        assert out.dtype == np.uint8 and out.shape == (5, 3, size, size)
        assert out.min() >= 40 and out.max() <= 200


def test_non_square_is_center_cropped():
    image = np.zeros((1, 1, 4, 8), dtype=np.uint8)
    image[..., 2:6] = 200
    assert (to_model_space(image, 1, 4) == 200).all()


def test_deterministic():
    images = np.random.default_rng(3).integers(0, 256, (7, 3, 30, 30), dtype=np.uint8)
    np.testing.assert_array_equal(to_model_space(images, 1, 17, 24), to_model_space(images, 1, 17, 24))


@pytest.mark.parametrize(
    "kwargs",
    [dict(channels=2, size=8), dict(channels=1, size=0), dict(channels=1, size=8, bottleneck=0)],
)
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        to_model_space(np.zeros((1, 1, 8, 8), dtype=np.uint8), **kwargs)


def test_bad_images_raise_value_error():
    with pytest.raises(ValueError, match="uint8"):
        to_model_space(np.zeros((1, 1, 8, 8), dtype=np.float32), 1, 8)
    with pytest.raises(ValueError, match="N,C,H,W"):
        to_model_space(np.zeros((1, 8, 8), dtype=np.uint8), 1, 8)


# ---------------------------------------------------------------- embedded sets
