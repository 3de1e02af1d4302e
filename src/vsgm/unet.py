"""The seed's UNet (the ADM / guided-diffusion design of Dhariwal & Nichol 2021), every option kept.

Works for 1-, 2- and 3-D signals (3-D: the first spatial axis is not resampled).
2-D models keep weights and activations in channels-last memory format: oneDNN's
convolutions (CPU) and cuDNN's tensor-core kernels (GPU) run on it without a
layout reorder per call (2.2x faster training on a 2-core CPU, measured with
`vsgm bench`).
Attention runs through ``scaled_dot_product_attention`` and recomputes nothing
in the backward pass unless ``use_checkpoint`` asks for it. On a CPU, each
GroupNorm followed by SiLU (with the time embedding added before it) is one
fused kernel (``vsgm.fused``).
"""

from __future__ import annotations

import math
from itertools import repeat

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from . import fused
from .unet_config import UNetConfig


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims](*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    return {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[dims](*args, **kwargs)


# On a CPU, batches are split so that one full-resolution feature map of a chunk fits in this many bytes:
# the elementwise layers (GroupNorm, SiLU, adds) then read their inputs from cache instead of memory.
# 8 MiB beat 16 MiB on a 2-core CPU (2 MiB L2 per core) in training and inference alike.
CPU_CHUNK_BYTES = 8 << 20


def cpu_chunk(batch: int, width: int, pixels: int) -> int:
    """Images per pass on a CPU for a UNet whose full-resolution level has ``width`` channels of ``pixels``
    values each (float32): chunks whose feature map fits in ``CPU_CHUNK_BYTES``.
    A training step of the seed's UNet at 1x32x32, batch 128, went from 0.59 to 0.72 of the matmul peak
    (``vsgm bench``) in chunks of 64 and to 0.745 in chunks of 32; its forward pass (0.66 whole, 0.76 in
    chunks of 64, 0.80 in chunks of 32) and the OOD feature passes gain too."""
    return max(1, min(batch, CPU_CHUNK_BYTES // max(4 * width * pixels, 1)))


def normalization(channels: int, silu: bool = False) -> nn.GroupNorm:
    """GroupNorm with 32 groups where the width allows (fewer for narrow test models); followed by SiLU
    in one module if ``silu``."""
    return (GroupNormSiLU if silu else nn.GroupNorm)(math.gcd(32, channels), channels)


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, shape (batch, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepBlock(nn.Module):
    """A module whose forward takes the time embedding as a second argument."""


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


def _resample_factor(dims: int) -> tuple[int, ...] | int:
    return (1, 2, 2) if dims == 3 else 2


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by 2 (not along depth for dims 3), then a 3x3 convolution if ``use_conv``."""

    def __init__(self, channels: int, use_conv: bool, dims: int):
        super().__init__()
        self.dims = dims
        self.conv = conv_nd(dims, channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x):
        x = F.interpolate(x, scale_factor=_resample_factor(self.dims), mode="nearest")
        return self.conv(x) if self.conv is not None else x


def add_to_fresh(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """fresh + other, written into ``fresh`` (a tensor nothing else reads) when no autograd graph is
    recorded: inference then allocates one tensor less. (In training the in-place add measured slower.)"""
    return fresh + other if torch.is_grad_enabled() else fresh.add_(other)


class GroupNormSiLU(nn.GroupNorm):
    """silu(GroupNorm(x + shift)), shift None or a constant per image and channel (the time embedding).
    On a CPU one fused kernel (``vsgm.fused``) for float32 channels-last input; elsewhere PyTorch's ops."""

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        if self.affine and fused.applies(x):
            return fused.group_norm_silu(x, shift, self.weight, self.bias, self.num_groups, self.eps)
        if shift is not None:
            x = add_to_fresh(x, shift)
        return F.silu(super().forward(x), inplace=not torch.is_grad_enabled())


class FreshSiLU(nn.Module):
    """SiLU for inputs nothing else reads (a normalisation's fresh output): without autograd it overwrites
    its input, saving a tensor allocation and a pass over memory; with autograd it is plain SiLU, whose
    backward needs the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x, inplace=not torch.is_grad_enabled())


class Downsample(nn.Module):
    """Downsampling by 2 (not along depth for dims 3): a strided 3x3 convolution if ``use_conv``, else average pooling."""

    def __init__(self, channels: int, use_conv: bool, dims: int):
        super().__init__()
        stride = _resample_factor(dims)
        if use_conv:
            self.op = conv_nd(dims, channels, channels, 3, stride=stride, padding=1)
        else:
            self.op = avg_pool_nd(dims, kernel_size=stride, stride=stride)

    def forward(self, x):
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block with time conditioning (added, or FiLM scale-shift), optional up/down sampling."""

    def __init__(self, channels, emb_channels, dropout, out_channels=None, use_scale_shift_norm=False,
                 dims=2, use_checkpoint=False, up=False, down=False):
        super().__init__()
        self.out_channels = out_channels or channels
        self.use_checkpoint = use_checkpoint
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_norm = normalization(channels, silu=True)
        self.in_conv = conv_nd(dims, channels, self.out_channels, 3, padding=1)
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False, dims), Upsample(channels, False, dims)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False, dims), Downsample(channels, False, dims)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels))
        self.out_norm = normalization(self.out_channels, silu=not use_scale_shift_norm)
        self.out_layers = nn.Sequential(
            FreshSiLU() if use_scale_shift_norm else nn.Identity(),  # else out_norm applies it; keeps out_layers.2
            nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, self.out_channels, self.out_channels, 3, padding=1)))
        self.skip = nn.Identity() if self.out_channels == channels else conv_nd(dims, channels, self.out_channels, 1)

    def forward(self, x, emb):
        if self.use_checkpoint and self.training:
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x, emb):
        h = self.in_norm(x)
        if self.updown:
            h, x = self.h_upd(h), self.x_upd(x)
        h = self.in_conv(h)
        emb_out = self.emb_layers(emb).type(h.dtype)
        emb_out = emb_out.reshape(*emb_out.shape, *([1] * (h.dim() - 2)))
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = torch.addcmul(shift, self.out_norm(h), 1 + scale)
        else:
            h = self.out_norm(h, emb_out)
        return add_to_fresh(self.out_layers(h), self.skip(x))


def widths_without_time(net: nn.Module) -> list[int]:
    """Widths at which the added time embedding is normalised away: without scale-shift norm a ResBlock adds
    the embedding (a constant per channel) right before a GroupNorm, and a group of one channel removes
    any constant (ADM's 32 groups at widths of 32 or less)."""
    return sorted({b.out_channels for b in net.modules() if isinstance(b, ResBlock) and not b.use_scale_shift_norm
                   and b.out_norm.num_groups == b.out_channels})


class AttentionBlock(nn.Module):
    """Self-attention over all spatial positions.

    ``use_new_attention_order`` splits q, k, v before the heads (QKVAttention);
    otherwise the heads are split first (the legacy order). Both run through
    ``scaled_dot_product_attention`` on (batch, tokens, channels) views; the parameters keep the
    reference's 1x1 ``Conv1d`` layout.
    """

    def __init__(self, channels, num_heads=1, num_head_channels=-1, use_checkpoint=False,
                 use_new_attention_order=False):
        super().__init__()
        self.num_heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        self.use_checkpoint = use_checkpoint
        self.new_order = use_new_attention_order
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x):
        if self.use_checkpoint and self.training:
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x):
        # tokens last: on a channels-last input every reshape below is a view, and the 1x1 convolutions
        # run as plain matrix products
        b, c, *spatial = x.shape
        tokens = self.norm(x).movedim(1, -1).reshape(b, -1, c)
        length, heads = tokens.shape[1], self.num_heads
        ch = c // heads
        qkv = F.linear(tokens, self.qkv.weight.squeeze(-1), self.qkv.bias)
        if self.new_order:
            q, k, v = (z.reshape(b, length, heads, ch).transpose(1, 2) for z in qkv.chunk(3, dim=-1))
        else:
            q, k, v = qkv.reshape(b, length, heads, 3 * ch).transpose(1, 2).split(ch, dim=-1)
        out = _attention(q, k, v).transpose(1, 2).reshape(b, length, c)
        out = F.linear(out, self.proj_out.weight.squeeze(-1), self.proj_out.bias)
        return add_to_fresh(out.reshape(b, *spatial, c).movedim(-1, 1), x)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``scaled_dot_product_attention``; in CPU training under bf16 autocast through PyTorch's math kernel,
    whose backward (matrix products) made the seed UNet's bf16 training step 5% faster than the CPU flash
    kernel's backward (8 ms per call against 1 ms forward). fp32 and inference keep the default choice."""
    if (q.device.type == "cpu" and torch.is_grad_enabled() and torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()):
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


class UNetModel(nn.Module):
    """The full UNet with time embedding and optional class conditioning.

    Args:
        config: a validated UNetConfig.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        config.validate()
        self.config = c = config
        emb_dim = c.model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(c.model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(c.num_classes, emb_dim) if c.num_classes else None

        def res(ch_in, ch_out, **kw):
            return ResBlock(ch_in, emb_dim, c.dropout, out_channels=ch_out, dims=c.dims,
                            use_checkpoint=c.use_checkpoint, use_scale_shift_norm=c.use_scale_shift_norm, **kw)

        def attn(ch, heads):
            return AttentionBlock(ch, num_heads=heads, num_head_channels=c.num_head_channels,
                                  use_checkpoint=c.use_checkpoint, use_new_attention_order=c.use_new_attention_order)

        ch = input_ch = int(c.channel_mult[0] * c.model_channels)
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(c.dims, c.in_channels, ch, 3, padding=1))])
        skip_chs, ds = [ch], 1
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                layers = [res(ch, int(mult * c.model_channels))]
                ch = int(mult * c.model_channels)
                if ds in c.attention_resolutions:
                    layers.append(attn(ch, c.num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chs.append(ch)
            if level != len(c.channel_mult) - 1:
                down = res(ch, ch, down=True) if c.resblock_updown else Downsample(ch, c.conv_resample, c.dims)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chs.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), attn(ch, c.num_heads), res(ch, ch))
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(c.channel_mult))[::-1]:
            for i in range(c.num_res_blocks + 1):
                layers = [res(ch + skip_chs.pop(), int(c.model_channels * mult))]
                ch = int(c.model_channels * mult)
                if ds in c.attention_resolutions:
                    layers.append(attn(ch, c.num_heads))
                if level and i == c.num_res_blocks:
                    layers.append(res(ch, ch, up=True) if c.resblock_updown else Upsample(ch, c.conv_resample, c.dims))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        # the Identity keeps the convolution's name (out.2) in checkpoints from before the fused SiLU
        self.out = nn.Sequential(normalization(ch, silu=True), nn.Identity(),
                                 zero_module(conv_nd(c.dims, input_ch, c.in_channels, 3, padding=1)))
        self.memory_format = torch.channels_last if c.dims == 2 else torch.contiguous_format
        self.to(memory_format=self.memory_format)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the UNet.

        Args:
            x: input (batch, C, *spatial).
            timesteps: (batch,) float timesteps (the caller scales them, see vsgm.score_function).
            y: (batch,) class labels for a conditional model.

        Returns:
            Output shaped like x.
        """
        if (y is not None) != (self.label_emb is not None):
            raise ValueError("labels must be given if and only if the model is class-conditional")
        chunk = self.inference_chunk(x)
        if chunk < len(x):
            labels = y.split(chunk) if y is not None else repeat(None)
            return torch.cat([self._forward(*part) for part in zip(x.split(chunk), timesteps.split(chunk), labels)])
        return self._forward(x, timesteps, y)

    def inference_chunk(self, x: torch.Tensor) -> int:
        """Images per pass: without autograd on a CPU, cache-sized chunks (``cpu_chunk``); else all of x."""
        if torch.is_grad_enabled() or x.device.type != "cpu":
            return len(x)
        c = self.config
        return cpu_chunk(len(x), c.model_channels * c.channel_mult[0], x[0, 0].numel())

    def _forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(x.dtype))
        if y is not None:
            emb = emb + self.label_emb(y)
        hs, h = [], x.contiguous(memory_format=self.memory_format)
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
