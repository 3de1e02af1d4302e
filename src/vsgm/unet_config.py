"""The UNet's options and the combinations it refuses, without torch: the workflow checks a config
with them before any job runs (:mod:`vsgm.unet` builds the network from them)."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence


@dataclasses.dataclass
class UNetConfig:
    """Architecture options under their seed names (defaults are the seed's)."""

    image_size: int = 32
    in_channels: int = 1
    model_channels: int = 64
    num_res_blocks: int = 2
    attention_resolutions: Sequence[int] = (4,)
    dropout: float = 0.0
    channel_mult: Sequence[int] = (1, 2, 2)
    conv_resample: bool = True
    dims: int = 2
    num_classes: int | None = None  # n_classes + 1 when conditional (the extra label is "no label")
    num_heads: int = 4
    num_head_channels: int = 32
    use_scale_shift_norm: bool = False
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    use_checkpoint: bool = False

    @classmethod
    def from_options(cls, options: dict, channels: int, size: int) -> UNetConfig:
        """The config of seed-named options (conditional models get n_classes + 1 labels), validated.

        Args:
            options: seed-named options (model_channels, channel_mult, ...).
            channels: input channels of the data the model sees.
            size: spatial size of the data the model sees.
        """
        cfg = cls(
            image_size=size, in_channels=channels,
            model_channels=options["model_channels"], num_res_blocks=options["num_res_blocks"],
            attention_resolutions=tuple(options["attention_resolutions"]), dropout=options["dropout"],
            channel_mult=tuple(options["channel_mult"]), conv_resample=options["conv_resample"],
            dims=options["dims"], num_heads=options["num_heads"], num_head_channels=options["num_head_channels"],
            use_scale_shift_norm=options["use_scale_shift_norm"], resblock_updown=options["resblock_updown"],
            use_new_attention_order=options["use_new_attention_order"],
            use_checkpoint=options.get("use_checkpoint", False),
            num_classes=options["n_classes"] + 1 if options["conditional"] else None,
        )
        cfg.validate()
        return cfg

    def widths_without_time(self) -> list[int]:
        """The ResBlock widths (model_channels x channel_mult) where the time embedding is normalised away:
        without scale-shift norm it is added right before a GroupNorm of gcd(32, width) groups (as
        :func:`vsgm.unet.normalization` builds it), and a group of one channel removes any constant.

        Returns:
            Sorted widths (empty when the network sees the noise level at every width).
        """
        if self.use_scale_shift_norm:
            return []
        widths = {self.model_channels * m for m in self.channel_mult}
        return sorted(w for w in widths if math.gcd(32, w) == w)

    def validate(self) -> None:
        """Refuse impossible combinations with a message naming the option."""
        if not self.channel_mult:
            raise ValueError("channel_mult must not be empty")
        if self.dims not in (1, 2, 3):
            raise ValueError(f"dims must be 1, 2 or 3, got {self.dims}")
        if self.model_channels < 1 or self.num_res_blocks < 1:
            raise ValueError("model_channels and num_res_blocks must be >= 1")
        if any(m < 1 for m in self.channel_mult):
            raise ValueError(f"channel_mult entries must be >= 1, got {list(self.channel_mult)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        deepest = 2 ** (len(self.channel_mult) - 1)
        bad = [r for r in self.attention_resolutions if r not in {2**i for i in range(len(self.channel_mult))}]
        if bad:
            raise ValueError(f"attention_resolutions {bad} are not downsample rates of this UNet "
                             f"(channel_mult {list(self.channel_mult)} gives 1..{deepest})")
        if self.image_size % deepest:
            raise ValueError(f"image size {self.image_size} is not divisible by the UNet's total downsampling "
                             f"{deepest} (channel_mult {list(self.channel_mult)})")
        # the widths that get attention: the listed rates, and the middle block at the deepest level
        widths = {self.model_channels * m for level, m in enumerate(self.channel_mult)
                  if 2**level in self.attention_resolutions} | {self.model_channels * self.channel_mult[-1]}
        if self.num_head_channels != -1:
            bad_w = sorted(w for w in widths if w % self.num_head_channels)
            if bad_w:
                raise ValueError(f"num_head_channels {self.num_head_channels} does not divide the attention "
                                 f"width(s) {bad_w} (model_channels {self.model_channels} x channel_mult)")
        elif any(w % self.num_heads for w in widths):
            raise ValueError(f"num_heads {self.num_heads} does not divide the attention width(s) {sorted(widths)}")
