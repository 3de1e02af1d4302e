"""The one rule that brings any image set into a model's space (channels, size).

Every in- and out-of-distribution set goes through :func:`to_model_space`, so a
detector can never tell two sets apart by how they were resampled:

1. **Channels.** Gray -> RGB repeats the channel; RGB -> gray is ITU-R BT.601 luma,
   ``0.299 R + 0.587 G + 0.114 B``.
2. **Square.** A non-square image is center-cropped to its shorter side
   (equivalent to "resize the shorter side, then center-crop").
3. **Bottleneck.** An image larger than ``bottleneck`` (the native resolution of the
   model's training set) is first area-averaged down to ``bottleneck`` and rounded to
   uint8, exactly as if it had been stored at that resolution like the training set.
4. **Size.** Then it is resized to ``size``: area averaging when shrinking (each
   output pixel is the mean over its footprint, which is the anti-aliasing filter),
   bilinear (``align_corners=False``) when enlarging; rounded half-to-even to uint8.

So a 64px set scored by a model trained on 28px images at size 32 goes
64 -> 28 -> 32, exactly like the training set's own 28 -> 32. Everything is
vectorised on tensors (``torch.nn.functional.interpolate``), deterministic, and
processed in chunks to bound memory.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)
_CHUNK_PIXELS = 1 << 25  # floats per chunk (128 MiB of float32)


def _as_uint8_tensor(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Validate an N,C,H,W uint8 batch and return it as a tensor (no copy for numpy)."""
    x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"images must be a numpy array or a torch tensor, got {type(images).__name__}")
    if x.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {x.dtype}")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape N,C,H,W with C in (1, 3), got {tuple(x.shape)}")
    return x


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert a float N,C,H,W batch to ``channels`` (gray repeat / BT.601 luma).

    Args:
        x: float tensor with 1 or 3 channels.
        channels: 1 or 3.

    Returns:
        Float tensor with ``channels`` channels.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1)
    weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def center_crop_square(x: torch.Tensor) -> torch.Tensor:
    """Center-crop an N,C,H,W tensor to its shorter side.

    Args:
        x: any N,C,H,W tensor.

    Returns:
        An N,C,S,S view with ``S = min(H, W)``.
    """
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return x[..., top : top + side, left : left + side]


def resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a float N,C,S,S tensor to ``size``: area when shrinking, bilinear when enlarging.

    Args:
        x: float tensor, square images.
        size: output side.

    Returns:
        Float tensor N,C,size,size (``x`` itself when already that size).
    """
    current = x.shape[-1]
    if current == size:
        return x
    if size < current:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _quantize(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp_(0, 255).to(torch.uint8)


def _convert_chunk(chunk: torch.Tensor, channels: int, size: int, bottleneck: int | None) -> torch.Tensor:
    x = center_crop_square(chunk).float()
    if channels == 1:
        x = convert_channels(x, 1)
    if bottleneck is not None and x.shape[-1] > bottleneck:
        x = _quantize(resize_square(x, bottleneck)).float()
    x = _quantize(resize_square(x, size))
    return convert_channels(x, channels).contiguous() if channels == 3 else x


def to_model_space(
    images: torch.Tensor | np.ndarray, channels: int, size: int, bottleneck: int | None = None
) -> torch.Tensor | np.ndarray:
    """Bring uint8 images into a model's space by the one documented rule (see module docstring).

    Args:
        images: uint8 N,C,H,W with C in (1, 3), numpy or torch.
        channels: the model's channels, 1 or 3.
        size: the model's image side.
        bottleneck: native resolution of the model's training set; larger images are
            first area-averaged to it. ``None``: no bottleneck.

    Returns:
        uint8 N,channels,size,size, of the same type (numpy or torch) as ``images``.

    Raises:
        ValueError: bad shapes, dtype, channels, size or bottleneck.
    """
    x = _as_uint8_tensor(images)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if bottleneck is not None and (not isinstance(bottleneck, int) or bottleneck < 1):
        raise ValueError(f"bottleneck must be a positive integer or None, got {bottleneck!r}")
    n = x.shape[0]
    out = torch.empty((n, channels, size, size), dtype=torch.uint8, device=x.device)
    per_image = x.shape[1] * x.shape[2] * x.shape[3]
    step = max(1, _CHUNK_PIXELS // max(per_image, 1))
    for start in range(0, n, step):
        out[start : start + step] = _convert_chunk(x[start : start + step], channels, size, bottleneck)
    return out.numpy() if isinstance(images, np.ndarray) else out
