"""Samplers for the reverse VE SDE: a registry from name to sampler.

Names (the workflow's ``{sampler}`` wildcard and ``vsgm sample --sampler``):
``em``, ``pc``, ``ode-<solver>`` (the seed's grid in t) and
``ode-<solver>-logstd`` (the same ODE with log std(t) as the time variable).
Each sampler is registered (``@register``) with what it is: the ``SamplerSettings`` fields it reads,
whether it adapts its steps to tolerances, and its score evaluations (NFE) per step. ``sample`` runs
one and returns the samples, the NFE and the wall time.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import math
import warnings
from typing import Any, Callable

import torch
from torchdiffeq import odeint

from .options import option
from .sampler_names import ADAPTIVE_SOLVERS, SOLVERS, all_sampler_names
from .score_function import ScoreFn
from .sde import VESDE
from .timing import timed


class _SolverName(str, enum.Enum):
    @property
    def adaptive(self) -> bool:
        return self.value in ADAPTIVE_SOLVERS


# the seed's probability-flow ODE solvers (torchdiffeq method names), from vsgm.sampler_names
Solver = _SolverName("Solver", {name: name for name in SOLVERS})
ADAPTIVE = {Solver(name) for name in ADAPTIVE_SOLVERS}


class Grid(str, enum.Enum):
    """Time variable of the probability-flow ODE."""

    t = "t"  # the seed: uniform steps in t from 1 to eps
    logstd = "logstd"  # uniform steps in log std(t): dx/drho = -std^2 * score


@dataclasses.dataclass
class SampleResult:
    """Samples plus their cost."""

    samples: torch.Tensor
    nfe: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """A parsed sampler name with its settings.

    Args:
        kind: "em", "pc" or "ode".
        solver: ODE solver (ode only).
        grid: ODE time variable (ode only).
    """

    kind: str
    solver: Solver | None = None
    grid: Grid = Grid.t

    @property
    def name(self) -> str:
        if self.kind != "ode":
            return self.kind
        return f"ode-{self.solver.value}" + ("-logstd" if self.grid is Grid.logstd else "")


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """The numbers that tune a sampler (the seed's sampling options); each sampler reads the fields it
    declares at registration (``Method.settings``), ``sample`` reads ``eps`` and ``denoise`` itself.

    Args:
        num_steps: steps of em, pc and the fixed-step ODE solvers.
        eps: final time.
        snr: signal-to-noise ratio of the Langevin corrector (pc).
        atol, rtol: tolerances of the adaptive ODE solvers.
        denoise: end with one Tweedie denoising step at t = eps (one more score evaluation; see
            ``tweedie_denoise``).
    """

    num_steps: int = option("num_steps").default
    eps: float = option("eps").default
    snr: float = option("snr").default
    atol: float = option("atol").default
    rtol: float = option("rtol").default
    denoise: bool = option("denoise").default

    def __post_init__(self):
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")


SETTINGS = tuple(f.name for f in dataclasses.fields(SamplerSettings))


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered sampler: its function, the settings it reads and what it costs.

    Args:
        name: the sampler's name (``SamplerSpec.name``).
        fn: ``fn(score, sde, x, [generator,] **settings) -> (samples, nfe)``.
        settings: the ``SamplerSettings`` fields passed to ``fn`` (and no others).
        adaptive: steps chosen by the tolerances (atol, rtol) rather than num_steps.
        nfe_per_step: score evaluations per step of a fixed-step sampler; None where it varies.
        stochastic: draws noise after the prior (``fn`` takes the generator).
    """

    name: str
    fn: Callable[..., tuple[torch.Tensor, int]]
    settings: tuple[str, ...]
    adaptive: bool
    nfe_per_step: int | None
    stochastic: bool

    @property
    def varies(self) -> tuple[str, ...]:
        """The settings that trade cost for accuracy: the tolerances of an adaptive sampler, else num_steps."""
        return ("atol", "rtol") if self.adaptive else ("num_steps",)

    def vary(self, settings: SamplerSettings, value: float) -> SamplerSettings:
        """``settings`` with the fields this sampler ``varies`` set to ``value``."""
        return dataclasses.replace(settings, **{name: value for name in self.varies})

    def expected_nfe(self, settings: SamplerSettings) -> int | None:
        """Score evaluations of one batch (the denoising step included); None where it varies."""
        if self.nfe_per_step is None:
            return None
        return self.nfe_per_step * settings.num_steps + int(settings.denoise)

    def __call__(self, score: ScoreFn, sde: VESDE, x: torch.Tensor, settings: SamplerSettings,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        kwargs = {name: getattr(settings, name) for name in self.settings}
        if self.stochastic:
            kwargs["generator"] = generator
        return self.fn(score, sde, x, **kwargs)


class Registry(dict):
    """Sampler name -> Method; ``register`` refuses a name twice."""

    def register(self, name: str, *, settings: tuple[str, ...], adaptive: bool = False,
                 nfe_per_step: int | None = None, stochastic: bool = False) -> Callable:
        """Decorator: register ``fn`` under ``name``. ValueError for a duplicate name, for a setting that
        ``SamplerSettings`` lacks or ``fn`` does not take by name, for an argument of ``fn`` without a default
        that is not declared, and for ``fn(**kwargs)``."""
        def decorator(fn: Callable) -> Callable:
            if name in self:
                raise ValueError(f"sampler {name!r} is already registered")
            passed = {*settings, *(["generator"] if stochastic else [])}
            params = list(inspect.signature(fn).parameters.values())[3:]  # after score, sde, x
            required = {p.name for p in params if p.default is p.empty}
            if set(settings) - set(SETTINGS) or not required <= passed <= {p.name for p in params} or any(
                    p.kind is p.VAR_KEYWORD for p in params):
                raise ValueError(f"sampler {name!r}: it takes {[p.name for p in params]}, but declares "
                                 f"{sorted(passed)} (settings from {', '.join(SETTINGS)})")
            self[name] = Method(name, fn, tuple(settings), adaptive, nfe_per_step, stochastic)
            return fn
        return decorator


SAMPLERS = Registry()
register = SAMPLERS.register


def parse_sampler(name: str) -> SamplerSpec:
    """Parse ``em``, ``pc``, ``ode-<solver>`` or ``ode-<solver>-logstd``; ValueError listing valid names."""
    parts = name.lower().split("-")
    if parts[0] in ("em", "pc") and len(parts) == 1:
        return SamplerSpec(parts[0])
    if parts[0] == "ode" and len(parts) in (2, 3) and parts[1] in Solver.__members__:
        if len(parts) == 2 or parts[2] == Grid.logstd.value:
            grid = Grid.logstd if len(parts) == 3 else Grid.t
            return SamplerSpec("ode", Solver(parts[1]), grid)
    raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(all_sampler_names())}")


def method(spec: SamplerSpec | str) -> Method:
    """The registered sampler of a SamplerSpec or name."""
    return SAMPLERS[(parse_sampler(spec) if isinstance(spec, str) else spec).name]


def spec_from_options(options: dict) -> SamplerSpec:
    """The sampler the seed's options name: ``sampler_type`` EM/PC/ODE, with ``solver`` and ``grid`` for ODE."""
    kind = options["sampler_type"].lower()
    if kind == "ode":
        return SamplerSpec("ode", Solver(options["solver"]), Grid(options["grid"]))
    return SamplerSpec(kind)


def _time_grid(eps: float, num_steps: int, device) -> torch.Tensor:
    return torch.linspace(1.0, eps, num_steps + 1, device=device, dtype=torch.float64)


@register("em", settings=("num_steps", "eps"), nfe_per_step=1, stochastic=True)
@torch.no_grad()
def euler_maruyama(score: ScoreFn, sde: VESDE, x: torch.Tensor, num_steps: int, eps: float,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
    """Euler-Maruyama on the reverse SDE (Song et al., ICLR 2021, eq. 6); the last step returns the mean.

    Returns:
        Samples and NFE (= num_steps).
    """
    reverse = sde.reverse(score)
    ts = _time_grid(eps, num_steps, x.device)
    mean = x
    for i in range(num_steps):
        increment, noise = reverse.discretize(x, ts[i], ts[i] - ts[i + 1])
        mean = x + increment
        x = mean + noise * torch.randn(x.shape, generator=generator, device=x.device)
    return mean, num_steps


@register("pc", settings=("num_steps", "eps", "snr"), nfe_per_step=2, stochastic=True)
@torch.no_grad()
def predictor_corrector(score: ScoreFn, sde: VESDE, x: torch.Tensor, num_steps: int, eps: float, snr: float,
                        generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
    """Predictor-corrector: one Langevin corrector step at signal-to-noise ``snr``, then an EM predictor
    step (Song et al., ICLR 2021, alg. 4). The Langevin step size uses the batch-mean score norm,
    as the reference does (a per-sample norm explodes where the score vanishes, e.g. in low dimension).

    Returns:
        Samples and NFE (= 2 * num_steps).
    """
    reverse = sde.reverse(score)
    ts = _time_grid(eps, num_steps, x.device)
    noise_norm = math.sqrt(x[0].numel())
    mean = x
    for i in range(num_steps):
        grad = score(x, ts[i].to(x.dtype))
        grad_norm = grad.flatten(1).norm(dim=1).mean().clamp(min=1e-12)
        step = 2 * (snr * noise_norm / grad_norm) ** 2
        x = x + step * grad + torch.sqrt(2 * step) * torch.randn(x.shape, generator=generator, device=x.device)
        increment, noise = reverse.discretize(x, ts[i], ts[i] - ts[i + 1])
        mean = x + increment
        x = mean + noise * torch.randn(x.shape, generator=generator, device=x.device)
    return mean, 2 * num_steps


def ode_drift(score: ScoreFn, sde: VESDE, grid: Grid) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Right-hand side ``f(time, x)`` of the probability-flow ODE (``VESDE.reverse``) in the chosen time variable:
    dx/dt = -1/2 g(t)^2 s(x, t) on the t grid, dx/drho = -std^2 s(x, t(rho)) with rho = log std(t). Both are
    finite for every time value."""
    flow = sde.reverse(score, probability_flow=True)
    if grid is Grid.t:
        return lambda t, x: flow.drift(x, t)
    return lambda rho, x: flow.log_std_drift(x, rho)


def ode_endpoints(sde: VESDE, grid: Grid, eps: float) -> tuple[float, float]:
    """Start (t = 1) and end (t = eps) of the sampling integration in the ODE's time variable."""
    if grid is Grid.t:
        return 1.0, eps
    return sde.log_std(1.0), sde.log_std(eps)


def solve_ode(drift, state: torch.Tensor | tuple[torch.Tensor, ...], start: float, end: float, solver: Solver,
              num_steps: int, atol: float, rtol: float) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Integrate ``drift`` from start to end with torchdiffeq and return the final state (a tensor or a tuple
    of tensors, as given); fixed-step solvers take exactly num_steps steps."""
    device = (state[0] if isinstance(state, tuple) else state).device
    span = torch.tensor([start, end], dtype=torch.float64, device=device)
    if solver.adaptive:
        out = odeint(drift, state, span, method=solver.value, atol=atol, rtol=rtol)
    else:
        grid = torch.linspace(start, end, num_steps + 1, dtype=torch.float64, device=device)
        out = odeint(drift, state, span, method=solver.value, options={"grid_constructor": lambda *_: grid})
    return tuple(o[-1] for o in out) if isinstance(state, tuple) else out[-1]


class Counted:
    """Wrap a score function to count its evaluations (and call ``tick`` on each, e.g. a progress bar's)."""

    def __init__(self, fn: ScoreFn, tick: Callable[[], Any] | None = None):
        self.fn, self.calls, self.tick = fn, 0, tick

    def __call__(self, x, t):
        self.calls += 1
        if self.tick is not None:
            self.tick()
        return self.fn(x, t)


@torch.no_grad()
def probability_flow(score: ScoreFn, sde: VESDE, x: torch.Tensor, solver: Solver, grid: Grid, eps: float,
                     num_steps: int | None = None, atol: float | None = None,
                     rtol: float | None = None) -> tuple[torch.Tensor, int]:
    """Probability-flow ODE (Song et al., ICLR 2021, eq. 13) solved with torchdiffeq (Chen et al. 2018):
    num_steps steps of a fixed-step solver, or an adaptive one to atol and rtol.

    Returns:
        Samples and the NFE actually spent.
    """
    counted = Counted(score)
    start, end = ode_endpoints(sde, grid, eps)
    out = solve_ode(ode_drift(counted, sde, grid), x, start, end, solver, num_steps, atol, rtol)
    return out, counted.calls


# score evaluations per step of the fixed-step ODE solvers; the Adams methods' vary with their start and iterations
ODE_NFE_PER_STEP = {Solver.euler: 1, Solver.midpoint: 2, Solver.rk4: 4}

for _solver in Solver:
    for _grid in Grid:
        register(SamplerSpec("ode", _solver, _grid).name,
                 settings=("eps", "atol", "rtol") if _solver.adaptive else ("eps", "num_steps"),
                 adaptive=_solver.adaptive, nfe_per_step=ODE_NFE_PER_STEP.get(_solver))(
            functools.partial(probability_flow, solver=_solver, grid=_grid))
del _solver, _grid


@torch.no_grad()
def tweedie_denoise(score: ScoreFn, sde: VESDE, x: torch.Tensor, eps: float) -> torch.Tensor:
    """One last denoising step at t = eps: E[x_0 | x_eps] = x + std(eps)^2 s(x, eps) (Tweedie's formula;
    score_sde's ``noise_removal``). The probability-flow ODE ends at t = eps, where its samples still carry
    noise of std(eps); EM and PC end on the mean of their last step instead, which removes most of it.
    Costs one score evaluation."""
    t = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    return x + (sde.marginal_std(t) ** 2).to(x.dtype) * score(x, t)


def stability_warning(spec: SamplerSpec, num_steps: int) -> str | None:
    """A warning for settings known to fail (see the solver notes), else None."""
    if spec.kind == "ode" and spec.solver is Solver.explicit_adams and (spec.grid is Grid.logstd or num_steps < 1000):
        return ("explicit_adams diverges on the VE probability-flow ODE at this setting "
                "(stiff near t=1); use >= 1000 steps on the t grid, or another solver")
    return None


def sample(score: ScoreFn, sde: VESDE, shape: tuple[int, ...], spec: SamplerSpec | str,
           settings: SamplerSettings = SamplerSettings(), generator: torch.Generator | None = None,
           device: torch.device | str = "cpu", warmup: Callable[[], Any] | None = None) -> SampleResult:
    """Draw samples from the prior and run the chosen sampler.

    Args:
        score: s(x, t), see ``vsgm.score_function.make_score_fn``.
        sde: the VE SDE.
        shape: (n, C, H, W) (or any signal shape).
        spec: a SamplerSpec or a sampler name.
        settings: steps, tolerances, snr, eps and denoise; the sampler reads those it declares.
        generator: torch.Generator for the prior and the SDE noise.
        device: device of the samples.
        warmup: called before the clock starts (see ``warm_up``).

    Returns:
        SampleResult with samples, NFE and seconds (the device's work included: see vsgm.timing).
    """
    if isinstance(spec, str):
        spec = parse_sampler(spec)
    message = stability_warning(spec, settings.num_steps)
    if message:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    x = sde.prior_sample(shape, generator=generator, device=device)
    run_sampler = method(spec)

    def run():
        out, nfe = run_sampler(score, sde, x, settings, generator)
        if settings.denoise:
            out, nfe = tweedie_denoise(score, sde, out, settings.eps), nfe + 1
        return out, nfe

    (out, nfe), seconds = timed(run, device, warmup)
    return SampleResult(out, nfe, seconds)


def warm_up(score: ScoreFn, shape: tuple[int, ...], device: torch.device | str) -> Callable[[], Any]:
    """One untimed score evaluation at the prior's time on a batch of ``shape`` (CUDA start-up, cuDNN's
    algorithm search), for ``sample(warmup=...)``. Draws no random numbers."""
    @torch.no_grad()
    def call():
        score(torch.zeros(shape, device=device), torch.ones(shape[0], device=device))
    return call
