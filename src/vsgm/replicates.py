"""Replicates: the same configured model trained several times with different seeds.

Replicate 0 of model ``digits`` is ``digits`` (its paths are those of a run without replicates);
replicate r > 0 is ``digits-r{r}`` (results/digits-r1/...). Dataset keys hold only letters and
digits, so the separator cannot occur in a key and the names stay unambiguous as wildcards.
Torch-free: the workflow imports it.
"""

from __future__ import annotations

import re

SEPARATOR = "-r"
_SUFFIX = re.compile(rf"{re.escape(SEPARATOR)}(\d+)")


def instance_name(model: str, replicate: int) -> str:
    """The name (path component) of one replicate of a model."""
    return model if replicate == 0 else f"{model}{SEPARATOR}{replicate}"


def instances(models: list[str], replicates: int) -> list[str]:
    """Every replicate of every model, model by model."""
    return [instance_name(m, r) for m in models for r in range(replicates)]


def base_of(name: str) -> str:
    """The configured model (or dataset key) behind a replicate's name, in any name built from it
    (``digits-r1`` and ``digits-r1_train`` -> ``digits`` and ``digits_train``)."""
    return _SUFFIX.sub("", name)


def replicate_of(name: str) -> int:
    """The replicate number in a name (0 without a suffix)."""
    found = _SUFFIX.search(name)
    return int(found.group(1)) if found else 0
