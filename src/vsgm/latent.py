"""Latent mode (``--latent``): the score model works in the latent space of a diffusers AutoencoderKL.

Images are encoded once (posterior mean times the autoencoder's scaling factor,
as in latent diffusion), the UNet trains and samples there, and samples are
decoded back to images for grids, sample files and quality numbers. diffusers is
an optional extra (``pip install 'vsgm[latent]'``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


class LatentCodec:
    """A frozen AutoencoderKL with encode/decode in the [-1, 1] image scale.

    Args:
        name_or_path: a local folder (``save_pretrained`` layout) or a hub name (needs the network once).
        device: where the autoencoder runs.
    """

    def __init__(self, name_or_path: str | os.PathLike, device: str | torch.device = "cpu"):
        try:
            from diffusers import AutoencoderKL
        except ImportError as err:
            raise RuntimeError("--latent needs diffusers: pip install 'vsgm[latent]'") from err
        path = Path(name_or_path)
        local = path.exists()
        if not local and (path.is_absolute() or str(name_or_path).startswith(".")):
            raise RuntimeError(f"cannot load the autoencoder {str(name_or_path)!r}: no such folder")
        try:
            self.vae = AutoencoderKL.from_pretrained(str(name_or_path), local_files_only=local)
        except (OSError, ValueError) as err:
            raise RuntimeError(f"cannot load the autoencoder {name_or_path!r}: {err}") from None
        self.vae = self.vae.to(device).eval().requires_grad_(False)
        self.scale = float(getattr(self.vae.config, "scaling_factor", 1.0) or 1.0)
        self.device = torch.device(device)

    @property
    def factor(self) -> int:
        """Spatial downsampling of the encoder."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_shape(self, channels: int, size: int) -> tuple[int, int]:
        """(latent channels, latent size) for images of ``channels`` x ``size`` x ``size``."""
        if channels != self.vae.config.in_channels:
            raise ValueError(f"the autoencoder takes {self.vae.config.in_channels}-channel images, the data has "
                             f"{channels}; set the dataset's channels to match")
        if size % self.factor:
            raise ValueError(f"image size {size} is not divisible by the autoencoder's downsampling {self.factor}")
        return self.vae.config.latent_channels, size // self.factor

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Images in [-1, 1] -> scaled latents (posterior mean)."""
        out = [self.vae.encode(x[i:i + batch_size].to(self.device)).latent_dist.mean * self.scale
               for i in range(0, len(x), batch_size)]
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Scaled latents -> images in [-1, 1] (clamped)."""
        out = [self.vae.decode(z[i:i + batch_size].to(self.device) / self.scale).sample
               for i in range(0, len(z), batch_size)]
        return torch.cat(out).clamp(-1, 1)
