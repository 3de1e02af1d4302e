"""The outlier scorers in one table, torch-free: name, class, the network passes behind its features, and how
``vsgm bench`` describes that work.

``vsgm.ood`` builds its registry from it, the feature config its NFE per scorer, ``vsgm.tables`` its order,
``vsgm pair``'s input check the names it accepts, and ``vsgm bench`` its rows.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Iterable

# the network passes a feature table is made of, and the columns each leaves in it
PASS_COLUMNS = {"loss": "loss_t", "norms": "norm_", "bpd": "bpd"}


@dataclasses.dataclass(frozen=True)
class ScorerEntry:
    """One scorer.

    Args:
        name: its column in a score table and its name on the command line.
        cls: its class in ``vsgm.ood`` (imported when asked for: the table itself stays torch-free).
        passes: the network passes behind its features (keys of ``PASS_COLUMNS``).
        bench: ``vsgm bench``'s words for that work, formatted with the bench's result.
    """

    name: str
    cls: str
    passes: tuple[str, ...]
    bench: str

    def load(self) -> type:
        """The scorer class."""
        return getattr(importlib.import_module("vsgm.ood"), self.cls)


SCORER_TABLE = (
    ScorerEntry("loss", "LossScorer", ("loss",), "{score_loss_times} times, batched"),
    ScorerEntry("msma", "MSMAScorer", ("norms",), "{score_msma_levels} levels"),
    ScorerEntry("msma_knn", "KNNScorer", ("norms",), "msma's levels, kNN"),
    ScorerEntry("fisher", "FisherScorer", ("loss", "norms"), "loss + msma_knn"),
    ScorerEntry("bpd", "BPDScorer", ("bpd",), "ODE, {score_bpd_steps} rk4 steps"),
)
SCORER_NAMES = tuple(e.name for e in SCORER_TABLE)
SCORER_PASSES = {e.name: e.passes for e in SCORER_TABLE}


def has_pass(columns: Iterable[str], name: str) -> bool:
    """Whether a feature table with these columns holds the features of network pass ``name``."""
    return any(str(c).startswith(PASS_COLUMNS[name]) for c in columns)


def available_scorers(columns: Iterable[str]) -> list[str]:
    """The scorers whose features are all among ``columns`` (in the table's order)."""
    columns = list(columns)
    return [e.name for e in SCORER_TABLE if all(has_pass(columns, p) for p in e.passes)]
