"""From a network to a score: s(x, t) = net(x, t) / std(t), with classifier-free guidance.

The UNet knows nothing of the SDE; this module is the one place where the
network output becomes a score.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .sde import VESDE, _expand

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# The UNet's sinusoidal time embedding is made for timesteps in [0, 1000].
TIME_SCALE = 1000.0


def network_output(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Call the network with time scaled to its embedding's range (t * 1000)."""
    return model(x, t * TIME_SCALE, y)


def make_score_fn(model: nn.Module, sde: VESDE, y: torch.Tensor | None = None, cfg: float = 1.0,
                  null_label: int | None = None) -> ScoreFn:
    """Build s(x, t) for a trained model.

    With labels ``y`` and a guidance weight ``cfg`` != 1 the score is the
    classifier-free mix s = s_uncond + cfg * (s_cond - s_uncond): cfg = 1 is the
    plain conditional score, cfg = 0 the unconditional one, cfg > 1 guides.
    Both halves run in one batched forward.

    Args:
        model: the score network (UNet).
        sde: the SDE whose marginal std scales the output.
        y: class labels (batch,) or None for an unconditional model.
        cfg: guidance weight (the seed's ``--cfg``).
        null_label: the label meaning "no label" (n_classes), needed when cfg != 1.

    Returns:
        A function (x, t) -> score, with t a scalar or (batch,) tensor.
    """
    guided = y is not None and cfg != 1.0
    if guided and null_label is None:
        raise ValueError("classifier-free guidance (cfg != 1) needs the null label of a conditional model")

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        std = _expand(sde.marginal_std(t), x)
        if not guided:
            return network_output(model, x, t, y) / std
        null = torch.full_like(y, null_label)
        out = network_output(model, torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        cond, uncond = out.chunk(2)
        return (uncond + cfg * (cond - uncond)) / std

    return score
