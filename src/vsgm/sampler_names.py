"""Sampler names, torch-free: the one list that the workflow's config check, ``vsgm.options`` and the
CLI read, and from which ``vsgm.samplers`` builds its registry's enums.

Names: ``em``, ``pc``, ``ode-<solver>`` (the seed's grid in t) and ``ode-<solver>-logstd`` (the same
ODE with log std(t) as the time variable).
"""

from __future__ import annotations

import re

# the seed's probability-flow ODE solvers (torchdiffeq method names)
SOLVERS = ("euler", "rk4", "midpoint", "explicit_adams", "implicit_adams", "dopri5", "dopri8", "bosh3",
           "adaptive_heun")
ADAPTIVE_SOLVERS = frozenset({"dopri5", "dopri8", "bosh3", "adaptive_heun"})
GRIDS = ("t", "logstd")
SDE_SAMPLERS = ("em", "pc")

SAMPLER_PATTERN = re.compile(rf"^({'|'.join(SDE_SAMPLERS)}|ode-({'|'.join(SOLVERS)})(-logstd)?)$")


def all_sampler_names() -> list[str]:
    """Every sampler name the registry accepts."""
    odes = [f"ode-{s}{g}" for g in ("", "-logstd") for s in SOLVERS]
    return [*SDE_SAMPLERS, *odes]


def is_sampler_name(name: str) -> bool:
    """True when ``name`` is one of ``all_sampler_names()``."""
    return bool(SAMPLER_PATTERN.match(name))
