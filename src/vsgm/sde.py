"""The variance-exploding SDE of the Vanilla SGM (Song et al., ICLR 2021).

dx = sigma^t dw on t in [0, 1]: no drift, diffusion g(t) = sigma^t, and the
perturbation kernel p_t(x_t | x_0) = N(x_0, std(t)^2 I) with
std(t)^2 = (sigma^(2t) - 1) / (2 ln sigma).

Every function of t here is finite for all real t, not only on [eps, 1]:
adaptive ODE solvers evaluate the drift slightly outside the integration
interval (see notes on torchdiffeq), and a NaN there kills the solve.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

# Below this time std(t) is clamped: std(T_FLOOR) ~ 1e-3, far below any eps in use.
T_FLOOR = 1e-6


class VESDE:
    """Variance-exploding SDE with diffusion coefficient g(t) = sigma^t.

    Args:
        sigma: the seed's ``--sigma`` (default 25).
    """

    def __init__(self, sigma: float = 25.0):
        if not sigma > 1.0:
            raise ValueError(f"sigma must be > 1 for the VE SDE, got {sigma}")
        self.sigma = float(sigma)
        self.log_sigma = math.log(self.sigma)

    def marginal_std(self, t: torch.Tensor) -> torch.Tensor:
        """std(t) = sqrt((sigma^(2t) - 1) / (2 ln sigma)), finite for every t (clamped below T_FLOOR)."""
        t = torch.as_tensor(t).clamp(min=T_FLOOR)
        return torch.sqrt(torch.expm1(2.0 * t * self.log_sigma) / (2.0 * self.log_sigma))

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        """g(t) = sigma^t."""
        return torch.exp(torch.as_tensor(t) * self.log_sigma)

    def log_std(self, t: float) -> float:
        """log std(t) of one time, in float64."""
        return float(torch.log(self.marginal_std(torch.tensor(t, dtype=torch.float64))))

    def time_from_log_std(self, log_std: torch.Tensor) -> torch.Tensor:
        """Inverse of log std(t): t = log1p(2 ln sigma * std^2) / (2 ln sigma); finite for every input."""
        log_std = torch.as_tensor(log_std)
        return torch.log1p(2.0 * self.log_sigma * torch.exp(2.0 * log_std)) / (2.0 * self.log_sigma)

    def prior_std(self) -> float:
        """Standard deviation of the prior N(0, std(1)^2 I)."""
        return float(self.marginal_std(torch.tensor(1.0, dtype=torch.float64)))

    def prior_sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
        """Draw x_1 ~ N(0, std(1)^2 I).

        Args:
            shape: full batch shape.
            generator: optional torch.Generator for reproducibility.
            device: where to put the sample.

        Returns:
            The prior sample.
        """
        return torch.randn(shape, generator=generator, device=device) * self.prior_std()

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """Log density of the prior, summed over all but the batch dimension."""
        std = self.prior_std()
        dim = z[0].numel()
        sq = z.flatten(1).pow(2).sum(1)
        return -0.5 * dim * math.log(2 * math.pi * std**2) - sq / (2 * std**2)

    def perturb(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = x_0 + std(t) * noise, with t of shape (batch,)."""
        return x0 + noise * _expand(self.marginal_std(t), x0)

    def reverse(self, score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE for the score s(x, t), or with ``probability_flow`` its probability-flow ODE
        (score_sde's ``sde.reverse(score_fn, probability_flow)``)."""
        return ReverseSDE(self, score, probability_flow)


class ReverseSDE:
    """The reverse-time VE SDE dx = [f - g(t)^2 s(x, t)] dt + g(t) dw (Song et al., ICLR 2021, eq. 6), or with
    ``probability_flow`` the ODE dx = [f - 1/2 g(t)^2 s(x, t)] dt (eq. 13); f = 0 for the VE SDE. Every sampler
    and the likelihood take the drift from here.

    Times may come in float64 (the samplers' grids); g is evaluated at that precision and the score at the
    samples' dtype.
    """

    def __init__(self, sde: VESDE, score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 probability_flow: bool = False):
        self.sde, self.score, self.probability_flow = sde, score, probability_flow
        self.weight = 0.5 if probability_flow else 1.0  # of the g^2 s term

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """f - w g(t)^2 s(x, t), w = 1 (SDE) or 1/2 (ODE); g^2 is formed in the samples' dtype."""
        return -self.weight * self.sde.diffusion(t).to(x.dtype) ** 2 * self.score(x, t.to(x.dtype))

    def log_std_drift(self, x: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        """The drift with rho = log std(t) as the time variable: drift * dt/drho = -2 w std^2 s(x, t(rho)),
        since drho/dt = g^2 / (2 std^2); finite for every rho."""
        t = self.sde.time_from_log_std(log_std).to(x.dtype)
        return -2 * self.weight * torch.exp(2 * log_std).to(x.dtype) * self.score(x, t)

    def discretize(self, x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One Euler-Maruyama step back in time from t by dt > 0: (the mean's increment -drift * dt =
        w g(t)^2 dt s(x, t), the noise's scale g(t) sqrt(dt), zero for the ODE). g(t)^2 dt is formed at the
        times' precision before it meets the samples' dtype."""
        g2dt = self.sde.diffusion(t) ** 2 * dt
        increment = (self.weight * g2dt).to(x.dtype) * self.score(x, t.to(x.dtype))
        noise = torch.zeros((), dtype=x.dtype, device=x.device) if self.probability_flow else torch.sqrt(g2dt)
        return increment, noise.to(x.dtype)


def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a (batch,) tensor to broadcast against ``like`` (batch, ...)."""
    return v.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)
