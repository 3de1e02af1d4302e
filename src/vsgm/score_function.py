"""From a network to a score: s(x, t) = net(x, 1000 t) / std(t), with classifier-free guidance.

The UNet knows nothing of the SDE; this module is the one place where the
network output becomes a score. A network's *parametrisation* says how: vsgm's own
models see t * 1000 and output std(t) * score; models imported from the seed
(``vsgm import-seed``) see t as it is and output the score itself. The name is the
``parametrisation`` attribute of the network (set by ``vsgm.models.load_trained`` from
model.json; "vsgm" when absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .sde import VESDE, _expand

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# The UNet's sinusoidal time embedding is made for timesteps in [0, 1000].
TIME_SCALE = 1000.0


@dataclass(frozen=True)
class Parametrisation:
    """How a network's input time and output relate to the SDE's t and score.

    Attributes:
        time_scale: the network is called with t * time_scale.
        output_is_score: the output is s(x, t) itself (else std(t) * s(x, t)).
    """

    time_scale: float
    output_is_score: bool


PARAMETRISATIONS = {
    "vsgm": Parametrisation(TIME_SCALE, output_is_score=False),
    "seed": Parametrisation(1.0, output_is_score=True),  # VanSGM.py: model(x, t) is the score
}


def parametrisation_of(model: nn.Module) -> Parametrisation:
    """The parametrisation named by ``model.parametrisation`` ("vsgm" when the attribute is absent)."""
    name = getattr(model, "parametrisation", "vsgm")
    if name not in PARAMETRISATIONS:
        raise ValueError(f"parametrisation {name!r} is not one of {sorted(PARAMETRISATIONS)}")
    return PARAMETRISATIONS[name]


def _raw_output(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return model(x, t * parametrisation_of(model).time_scale, y)


def network_output(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                   sde: VESDE | None = None) -> torch.Tensor:
    """std(t) * s(x, t): the network called with time in its own scale (vsgm's: t * 1000).

    Args:
        model: the score network.
        x: inputs (batch, ...).
        t: times (batch,).
        y: labels or None.
        sde: the SDE, needed for networks whose output is the score itself (the seed's).

    Returns:
        The noise-scaled score, shaped like x.
    """
    out = _raw_output(model, x, t, y)
    if parametrisation_of(model).output_is_score:
        if sde is None:
            raise ValueError("a network whose output is the score needs the SDE to scale it by std(t)")
        out = out * _expand(sde.marginal_std(t), x)
    return out


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
    is_score = parametrisation_of(model).output_is_score

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if not guided:
            out = _raw_output(model, x, t, y)
        else:
            null = torch.full_like(y, null_label)
            cond, uncond = _raw_output(model, torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).chunk(2)
            out = uncond + cfg * (cond - uncond)
        return out if is_score else out / _expand(sde.marginal_std(t), x)

    return score
