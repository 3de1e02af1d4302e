"""Log-likelihood and bits/dim by the probability-flow ODE (Song et al., ICLR 2021, app. D.2).

log p_0(x_0) = log p_1(x_1) + int_0^1 div f(x_t, t) dt along the ODE from the data to the
prior; the divergence comes from a Hutchinson trace estimate (one noise vector per sample
and solve) or exactly (small dimensions, tests).
"""

from __future__ import annotations

import math

import torch

from .samplers import Counted, Grid, Solver, ode_drift, ode_endpoints, solve_ode
from .score_function import ScoreFn
from .sde import VESDE


def _divergence(f: torch.Tensor, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
    if noise is not None:  # Hutchinson: E[z^T (df/dx) z]
        (vjp,) = torch.autograd.grad((f * noise).sum(), x, create_graph=False)
        return (vjp * noise).flatten(1).sum(1)
    flat = f.flatten(1)
    div = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
    for i in range(flat.shape[1]):  # exact trace, one backward per dimension
        (g,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)
        div = div + g.flatten(1)[:, i]
    return div


def log_likelihood(score: ScoreFn, sde: VESDE, x: torch.Tensor, eps: float = 1e-3, solver: Solver = Solver.rk4,
                   grid: Grid = Grid.logstd, num_steps: int = 20, atol: float = 1e-5, rtol: float = 1e-5,
                   hutchinson: bool = True, generator: torch.Generator | None = None,
                   noise: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """log p_eps(x) per sample (nats) and the number of score evaluations.

    Args:
        score: s(x, t).
        sde: the VE SDE.
        x: data at time eps (batch, ...).
        eps: the time the data sits at.
        solver, grid, num_steps, atol, rtol: how to solve the ODE (as for sampling).
        hutchinson: Rademacher trace estimate (True) or the exact trace (False; one backward per dimension).
        generator: for the Hutchinson noise.
        noise: the Hutchinson vectors (shaped like x), instead of drawing them from ``generator``.

    Returns:
        (log-likelihood per sample, NFE)
    """
    if not hutchinson:
        noise = None
    elif noise is None:
        noise = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
    counted = Counted(score)
    drift = ode_drift(counted, sde, grid)

    def augmented(t, state):
        xt, _ = state
        with torch.enable_grad():
            xt = xt.detach().requires_grad_(True)
            f = drift(t, xt)
            div = _divergence(f, xt, noise)
        return f.detach(), div.detach()

    end, start = ode_endpoints(sde, grid, eps)  # integrate forward: data (eps) -> prior (1)
    state = (x, torch.zeros(x.shape[0], device=x.device, dtype=x.dtype))
    x1, delta = solve_ode(augmented, state, start, end, solver, num_steps, atol, rtol)
    return sde.prior_logp(x1) + delta, counted.calls


def bits_per_dim(logp: torch.Tensor, dim: int, levels: int = 256) -> torch.Tensor:
    """Bits/dim of images stored with ``levels`` levels and scaled to [-1, 1] (uniform dequantisation)."""
    bin_width = 2.0 / (levels - 1)
    return (-logp / dim - math.log(bin_width)) / math.log(2.0)
