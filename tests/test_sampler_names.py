"""The torch-free sampler names agree with the registry that parses them."""

import pytest

from vsgm.sampler_names import GRIDS, all_sampler_names, is_sampler_name
from vsgm.samplers import Grid, Solver, parse_sampler


def test_every_name_parses_and_round_trips():
    for name in all_sampler_names():
        assert is_sampler_name(name)
        assert parse_sampler(name).name == name


@pytest.mark.parametrize("name", ["ode", "ode-", "ode-euler-t", "em-logstd", "ode-rk45", "PC ", "ode-euler-logstd-x"])
def test_invalid_names_are_refused_by_both(name):
    assert not is_sampler_name(name)
    with pytest.raises(ValueError):
        parse_sampler(name)


def test_enums_come_from_the_names():
    assert tuple(g.value for g in Grid) == GRIDS
    assert {s.value for s in Solver if s.adaptive} == {"dopri5", "dopri8", "bosh3", "adaptive_heun"}
