"""Checks of options that belong together, without torch: ``vsgm train`` runs them before it loads
any data, and the workflow's config check runs the same functions before it plans any job.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

from .domains import OPTIONS


def _numbers(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(key path, leaf) for every number in a nested dict/list config."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{where}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield where, value


def range_problems(values: dict[str, Any], prefix: str = "") -> list[str]:
    """One line per value outside its option's range (:data:`vsgm.domains.OPTIONS`, matched by the last
    key name; list entries one by one) and per non-finite number anywhere (NaN, inf).

    Args:
        values: a (nested) config section or an options dict.
        prefix: the section's key path for the messages.

    Returns:
        The problems (empty when all is well).
    """
    problems = []
    for where, value in _numbers(values, prefix):
        name = where.rsplit(".", 1)[-1].split("[", 1)[0]
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{where}: must be a finite number, got {value}")
        elif name in OPTIONS:
            problem = OPTIONS[name].check(value, where)
            if problem:
                problems.append(problem)
    return problems


def train_problems(options: dict[str, Any]) -> list[str]:
    """What ``vsgm train`` refuses in a set of options before any work: each value's range, and the
    combinations (warmup below n_epochs, guidance only on a conditional model).

    Args:
        options: seed-named options (the train, model, sde and sample groups; missing keys are skipped).

    Returns:
        One line per problem, naming the option.
    """
    return range_problems(options) or combination_problems(options)


def combination_problems(options: dict[str, Any]) -> list[str]:
    """The options of train_problems that are wrong together (each value in its range)."""
    problems = []
    n_epochs, warmup = options.get("n_epochs"), options.get("warmup")
    if n_epochs is not None and warmup is not None and not warmup < n_epochs:
        problems.append(f"warmup ({warmup} epochs) must be below n_epochs ({n_epochs})")
    if options.get("cfg", 1.0) != 1.0 and not options.get("conditional", False):
        problems.append(f"cfg {options['cfg']} (classifier-free guidance) needs a conditional model: "
                        "add --conditional (train.conditional: true) or leave cfg at 1")
    return problems


def check_train_options(options: dict[str, Any]) -> None:
    """Raise ValueError with the first problem of :func:`train_problems`."""
    problems = train_problems(options)
    if problems:
        raise ValueError(problems[0])
