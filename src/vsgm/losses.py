"""Denoising score matching (Vincent 2011; Song et al. 2021), per sample."""

from __future__ import annotations

import torch
from torch import nn

from .score_function import network_output
from .sde import VESDE


def drop_labels(y: torch.Tensor, drop_prob: float, null_label: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``null_label`` with probability ``drop_prob`` (classifier-free guidance training)."""
    if drop_prob <= 0:
        return y
    mask = torch.rand(y.shape, generator=generator, device=y.device) < drop_prob
    return torch.where(mask, torch.full_like(y, null_label), y)


def dsm_loss_at(model: nn.Module, sde: VESDE, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
    """DSM loss per sample at given times and noise: sum over pixels of (s * std + z)^2.

    Args:
        model: the score network.
        sde: the VE SDE.
        x0: clean data (batch, ...).
        t: times (batch,).
        noise: standard normal noise shaped like x0.
        y: labels or None.

    Returns:
        Loss per sample, shape (batch,).
    """
    xt = sde.perturb(x0, t, noise)
    # score * std == network output, so the std cancels: no division by a small std.
    out = network_output(model, xt, t, y, sde)
    return (out + noise).pow(2).flatten(1).sum(1)


def dsm_loss(model: nn.Module, sde: VESDE, x0: torch.Tensor, eps: float = 1e-3, y: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The seed's training loss per sample, with t ~ U(eps, 1) and z ~ N(0, I).

    Args:
        model: the score network.
        sde: the VE SDE.
        x0: clean data (batch, ...).
        eps: smallest time (the seed's ``--eps``).
        y: labels (already dropped for CFG) or None.
        generator: optional torch.Generator.

    Returns:
        Loss per sample, shape (batch,).
    """
    t, noise = dsm_draws(x0, eps, generator)
    return dsm_loss_at(model, sde, x0, t, noise, y)


def dsm_draws(x0: torch.Tensor, eps: float = 1e-3, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The random part of ``dsm_loss``: times t ~ U(eps, 1) per sample and noise z ~ N(0, I) like x0."""
    t = torch.rand(x0.shape[0], generator=generator, device=x0.device) * (1.0 - eps) + eps
    noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    return t, noise


def expected_oracle_loss(sde: VESDE, data_std: float, dim: int, t: torch.Tensor) -> torch.Tensor:
    """Analytic DSM loss of the exact score for data N(m, data_std^2 I) in ``dim`` dimensions at time t.

    With the exact score, std * s(x_t) = -std * x_t / (data_std^2 + std^2) and x_t = x_0 + std * z, so
    E|std * s + z|^2 = dim * data_std^2 / (data_std^2 + std(t)^2) (checked by Monte Carlo in tests/test_ood.py).
    """
    var = sde.marginal_std(t) ** 2
    return dim * data_std**2 / (data_std**2 + var)
