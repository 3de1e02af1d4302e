"""bits/dim of an oracle score on Gaussian data against the closed form."""

import math

import pytest
import torch

from vsgm.likelihood import bits_per_dim, log_likelihood
from vsgm.samplers import Grid, Solver
from vsgm.sde import VESDE

# Zero mean: the ODE ends at the prior N(0, std(1)^2), which ignores the data mean (as in Song et al.);
# with m != 0 that approximation, not the solver, would dominate the error.
S, M, EPS = 0.5, 0.0, 1e-3


def oracle(sde):
    def score(x, t):
        var = sde.marginal_std(torch.as_tensor(t)).to(x.dtype) ** 2
        return -(x - M) / (S**2 + var)
    return score


def exact_logp(sde, x):
    var = S**2 + sde.marginal_std(torch.tensor(EPS, dtype=torch.float64)).item() ** 2
    d = x[0].numel()
    return -0.5 * d * math.log(2 * math.pi * var) - ((x - M) ** 2).flatten(1).sum(1) / (2 * var)


@pytest.mark.parametrize("solver,grid,steps", [(Solver.rk4, Grid.logstd, 20), (Solver.dopri5, Grid.t, None),
                                               (Solver.rk4, Grid.t, 200)])
def test_exact_trace_matches_closed_form(solver, grid, steps):
    sde = VESDE(25)
    x = M + S * torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    logp, nfe = log_likelihood(oracle(sde), sde, x, eps=EPS, solver=solver, grid=grid, num_steps=steps or 1,
                               hutchinson=False)
    assert torch.allclose(logp, exact_logp(sde, x), atol=0.02)
    assert nfe > 0


def test_hutchinson_is_unbiased_and_bits_per_dim_matches():
    sde = VESDE(25)
    g = torch.Generator().manual_seed(1)
    x = M + S * torch.randn(2000, 4, dtype=torch.float64, generator=g)
    logp, _ = log_likelihood(oracle(sde), sde, x, eps=EPS, hutchinson=True, generator=g)
    exact = exact_logp(sde, x)
    # per-sample estimates are noisy, their mean is not: standard error of the mean difference is small
    diff = logp - exact
    assert abs(diff.mean().item()) < 4 * diff.std().item() / math.sqrt(len(diff)) + 0.01
    bpd = bits_per_dim(logp, 4).mean().item()
    assert bpd == pytest.approx(bits_per_dim(exact, 4).mean().item(), abs=0.02)
