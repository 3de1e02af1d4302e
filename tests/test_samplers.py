"""Every sampler against an exact answer (Gaussian data N(m, s^2 I) has a closed-form noised score), and the
sampler contract: the registry, the settings each sampler declares, the reverse SDE."""

import dataclasses
import math
import warnings

import pytest
import torch

from vsgm.samplers import (SAMPLERS, Grid, Registry, SamplerSettings, Solver, all_sampler_names, ode_drift,
                           ode_endpoints, parse_sampler, sample, solve_ode)
from vsgm.sde import VESDE

MEAN, STD = 0.3, 0.5
N = 4000


def oracle(sde):
    def score(x, t):
        var = sde.marginal_std(torch.as_tensor(t, dtype=torch.float64)).to(x.dtype) ** 2
        return -(x - MEAN) / (STD**2 + var)
    return score


def run(name, num_steps=100, **kw):
    sde = VESDE(25.0)
    g = torch.Generator().manual_seed(0)
    return sample(oracle(sde), sde, (N, 1), name, SamplerSettings(num_steps=num_steps, **kw), generator=g)


# (sampler, num_steps, tolerance on the std). The tolerances state what each method reaches at that setting;
# the std at t=eps is sqrt(0.25 + 0.001) ~ 0.501, so the target is that, not 0.5.
FIXED = [
    ("em", 100, 0.03, 1),
    ("pc", 100, 0.03, 2),
    ("ode-euler", 100, 0.04, 1),  # euler is first order: 0.477 at 100 steps on the t grid
    ("ode-midpoint", 100, 0.01, 2),
    ("ode-rk4", 100, 0.01, 4),
    ("ode-rk4-logstd", 10, 0.01, 4),  # 10 steps in log std do what 100 do in t
    ("ode-midpoint-logstd", 50, 0.015, 2),
]


@pytest.mark.parametrize("name,steps,tol,per_step", FIXED)
def test_fixed_step_samplers_match_gaussian(name, steps, tol, per_step):
    res = run(name, num_steps=steps)
    target = math.sqrt(STD**2 + VESDE(25).marginal_std(torch.tensor(1e-3)).item() ** 2)
    assert abs(res.samples.mean().item() - MEAN) < 0.05
    assert abs(res.samples.std().item() - target) < tol
    assert res.nfe == per_step * steps
    assert res.seconds > 0


@pytest.mark.parametrize("solver", ["dopri5", "dopri8", "bosh3", "adaptive_heun"])
@pytest.mark.parametrize("grid", ["", "-logstd"])
def test_adaptive_solvers_survive_times_outside_the_interval(solver, grid):
    # At the seed's tolerances the adaptive solvers evaluate t < eps; a NaN there kills the solve.
    res = run(f"ode-{solver}{grid}", atol=1e-5, rtol=1e-5)
    assert abs(res.samples.std().item() - 0.501) < 0.01
    assert abs(res.samples.mean().item() - MEAN) < 0.05
    assert res.nfe > 10


def test_implicit_adams_matches_gaussian():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchdiffeq: functional iteration did not converge
        res = run("ode-implicit_adams", num_steps=100)
    assert abs(res.samples.std().item() - 0.501) < 0.01
    assert res.nfe >= 100


def test_explicit_adams_warns_at_100_steps_and_works_at_1000():
    with pytest.warns(RuntimeWarning, match="explicit_adams diverges"):
        bad = run("ode-explicit_adams", num_steps=100)
    assert not abs(bad.samples.std().item() - 0.501) < 0.05  # the documented failure is real
    res = run("ode-explicit_adams", num_steps=1000)
    assert abs(res.samples.std().item() - 0.501) < 0.01


def test_parse_names_round_trip_and_reject_unknown():
    for name in all_sampler_names():
        assert parse_sampler(name).name == name
    spec = parse_sampler("ode-rk4-logstd")
    assert spec.solver is Solver.rk4 and spec.grid is Grid.logstd
    with pytest.raises(ValueError, match="valid: em, pc"):
        parse_sampler("ode-rk5")


def test_samplers_are_reproducible_with_a_generator():
    a, b = run("em", num_steps=20), run("em", num_steps=20)
    assert torch.equal(a.samples, b.samples)


def test_invalid_steps_refused():
    with pytest.raises(ValueError, match="num_steps"):
        run("em", num_steps=0)


@pytest.mark.parametrize("name", ["ode-rk4-logstd", "em", "pc"])
def test_denoise_applies_tweedies_formula_at_eps(name):
    # At eps = 0.1 the samples carry noise of variance v = std(eps)^2 = 0.14; Tweedie's E[x0 | x] for Gaussian
    # data is m + (x - m) s^2 / (s^2 + v): the same samples, shrunk towards the mean, for one more evaluation.
    eps = 0.1
    v = VESDE(25.0).marginal_std(torch.tensor(eps, dtype=torch.float64)).item() ** 2
    plain = run(name, num_steps=20, eps=eps)
    denoised = run(name, num_steps=20, eps=eps, denoise=True)
    assert denoised.nfe == plain.nfe + 1
    expected = MEAN + (plain.samples - MEAN) * STD**2 / (STD**2 + v)
    assert torch.allclose(denoised.samples, expected, atol=1e-5)
    if name.startswith("ode"):  # the ODE ends at the marginal of t = eps; its denoised std is s^2 / sqrt(s^2 + v)
        assert abs(plain.samples.std().item() - math.sqrt(STD**2 + v)) < 0.01
        assert abs(denoised.samples.std().item() - STD**2 / math.sqrt(STD**2 + v)) < 0.01


# -- the sampler contract: settings, registry, the reverse SDE ---------------------------------------------------


def test_every_name_is_registered_once_with_what_it_is():
    assert sorted(SAMPLERS) == sorted(all_sampler_names())
    assert [SAMPLERS[name].nfe_per_step for name in ("em", "pc", "ode-rk4-logstd")] == [1, 2, 4]
    assert SAMPLERS["ode-dopri5"].adaptive and SAMPLERS["ode-dopri5"].varies == ("atol", "rtol")
    assert not SAMPLERS["ode-implicit_adams"].adaptive and SAMPLERS["ode-implicit_adams"].nfe_per_step is None
    assert SAMPLERS["em"].stochastic and not SAMPLERS["ode-euler"].stochastic
    with pytest.raises(ValueError, match="'em' is already registered"):
        SAMPLERS.register("em", settings=("num_steps",))(lambda score, sde, x, num_steps: (x, 0))


def test_registration_refuses_settings_the_function_does_not_take_and_catch_alls():
    registry = Registry()
    with pytest.raises(ValueError, match="'a': it takes"):  # snr not declared, but needed
        registry.register("a", settings=("num_steps",))(lambda score, sde, x, num_steps, snr: (x, 0))
    with pytest.raises(ValueError, match="'b': it takes"):  # swallows what it does not use
        registry.register("b", settings=("num_steps",))(lambda score, sde, x, num_steps, **_: (x, 0))
    with pytest.raises(ValueError, match="'c': it takes"):  # not a setting
        registry.register("c", settings=("steps",))(lambda score, sde, x, steps: (x, 0))
    assert not registry


def test_each_sampler_gets_only_the_settings_it_declares():
    registry, seen = Registry(), {}

    @registry.register("probe", settings=("snr", "eps"))
    def probe(score, sde, x, eps, snr):
        seen.update(eps=eps, snr=snr)
        return x, 0

    registry["probe"](None, None, torch.zeros(1), SamplerSettings(eps=0.25, snr=0.5, num_steps=3))
    assert seen == {"eps": 0.25, "snr": 0.5}


@pytest.mark.parametrize("name", all_sampler_names())
def test_only_the_declared_settings_change_a_samplers_output(name):
    """Changing a setting a sampler does not declare leaves its samples bit for bit; the one it varies does not."""
    entry = SAMPLERS[name]
    base = SamplerSettings(num_steps=1000 if name == "ode-explicit_adams" else 6, atol=1e-3, rtol=1e-3)
    others = {"num_steps": 1001 if name == "ode-explicit_adams" else 7, "snr": 0.3, "atol": 1e-2, "rtol": 1e-2}
    sde = VESDE(25.0)

    def draw(settings):
        g = torch.Generator().manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sample(oracle(sde), sde, (64, 1), name, settings, generator=g).samples

    reference = draw(base)
    for field, value in others.items():
        changed = draw(dataclasses.replace(base, **{field: value}))
        assert torch.equal(changed, reference) == (field not in entry.settings), field
    assert not torch.equal(draw(entry.vary(base, others[entry.varies[0]])), reference)


def test_settings_refuse_impossible_values():
    with pytest.raises(ValueError, match="eps must be in"):
        SamplerSettings(eps=1.5)
    assert SamplerSettings().num_steps == 100 and SamplerSettings().snr == 0.16  # the seed's defaults


S0 = 0.5  # Gaussian data N(0, S0^2): the noised score is exact, s(x, t) = -x / (S0^2 + std(t)^2)


def gaussian_score(sde):
    return lambda x, t: -x / (S0**2 + sde.marginal_std(t).to(x.dtype) ** 2)


def test_reverse_drift_matches_its_closed_form():
    sde = VESDE(25.0)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    for t in (0.01, 0.5, 1.0):
        t = torch.tensor(t, dtype=torch.float64)
        g2, var = 25.0 ** (2 * t.item()), sde.marginal_std(t).item() ** 2
        assert math.isclose(var, (25.0 ** (2 * t.item()) - 1) / (2 * math.log(25.0)), rel_tol=1e-12)
        for flow, w in ((False, 1.0), (True, 0.5)):
            reverse = sde.reverse(gaussian_score(sde), probability_flow=flow)
            torch.testing.assert_close(reverse.drift(x, t), w * g2 * x / (S0**2 + var), rtol=1e-12, atol=0)
            # dx/drho with rho = log std(t): dt/drho = 2 std^2 / g^2
            rho = torch.log(sde.marginal_std(t))
            torch.testing.assert_close(reverse.log_std_drift(x, rho), 2 * w * var * x / (S0**2 + var), rtol=1e-9,
                                       atol=0)
            increment, noise = reverse.discretize(x, t, torch.tensor(0.01, dtype=torch.float64))
            torch.testing.assert_close(increment, -w * g2 * 0.01 * x / (S0**2 + var), rtol=1e-12, atol=0)
            assert noise.item() == (0.0 if flow else pytest.approx(math.sqrt(g2 * 0.01), rel=1e-12))


@pytest.mark.parametrize("solver,grid,steps,rtol", [(Solver.rk4, Grid.logstd, 20, 2e-4),
                                                     (Solver.rk4, Grid.t, 200, 2e-4)])
def test_probability_flow_maps_the_prior_back_to_the_data(solver, grid, steps, rtol):
    """For Gaussian data the flow is linear: x_t = x_1 sqrt((S0^2 + std(t)^2) / (S0^2 + std(1)^2)), so it maps
    N(0, S0^2 + std(1)^2) onto N(0, S0^2 + std(eps)^2), which is N(0, S0^2) to 1e-3."""
    sde, eps = VESDE(25.0), 1e-3
    x1 = torch.randn(20_000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x1 = x1 * math.sqrt(S0**2 + sde.prior_std() ** 2)
    start, end = ode_endpoints(sde, grid, eps)
    x0 = solve_ode(ode_drift(gaussian_score(sde), sde, grid), x1, start, end, solver, steps, None, None)
    var_eps = sde.marginal_std(torch.tensor(eps, dtype=torch.float64)).item() ** 2
    exact = x1 * math.sqrt((S0**2 + var_eps) / (S0**2 + sde.prior_std() ** 2))
    torch.testing.assert_close(x0, exact, rtol=rtol, atol=0)  # a linear map: the error is relative
    assert abs(x0.std().item() - S0) < 0.01
