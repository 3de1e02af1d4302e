"""``vsgm aggregate``: the tables and figures over every model of a results directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_overwrite


def cmd_aggregate(args: argparse.Namespace) -> None:
    from ..guards import refuse_existing
    from ..report import OUTPUTS, SWEEP_OUTPUTS, aggregate_results

    refuse_existing([Path(args.out_dir) / name for name in (*OUTPUTS, *SWEEP_OUTPUTS)], args.overwrite)
    paths = aggregate_results(args.results, args.out_dir)
    print("wrote " + ", ".join(map(str, paths)))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="AUROC tables, heatmap, solver table and sample montage over all models")
    p.add_argument("--results", default="results")
    p.add_argument("--out_dir", default="aggregate", help="where the tables and figures go (default: aggregate)")
    add_overwrite(p)
    p.set_defaults(func=cmd_aggregate)
