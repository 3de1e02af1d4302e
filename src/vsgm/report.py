"""The benchmark's aggregate outputs: AUROC table (csv, md, heatmap), solver table, sample montage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from .io import write_table, write_text
from .sweep import cost_to_quality
from .guards import read_json
from .quality_metrics import METRICS
from .tables import (SAMPLE_FIELDS, auroc_markdown, auroc_matrix, collect_pairs, scorer_order, solvers_table,
                     with_replicate_spread)
from .viz import montage, plot_auroc_heatmap, plot_loss_curves, plot_quality_vs_nfe

OUTPUTS = ("auroc.csv", "auroc.md", "auroc.png", "solvers.csv", "samples.png")  # and loss.png with histories
SWEEP_OUTPUTS = ("solver_sweep.csv", "solver_efficiency.csv", "solver_sweep.png")


def aggregate(pair_csvs: Sequence[str | os.PathLike], sample_jsons: Sequence[str | os.PathLike],
              quality_jsons: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
              sweep_csvs: Sequence[str | os.PathLike] = (),
              histories: Sequence[str | os.PathLike] = (),
              paired_csvs: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """Write every aggregate output from explicit inputs (the workflow lists them; nothing is globbed).

    Sample grids are found beside their JSON files (``samples/{sampler}.png``). With solver
    sweeps, also ``solver_sweep.csv`` (every setting), ``solver_efficiency.csv`` (per metric, the NFE each
    sampler needs before its interval overlaps the converged quality's; see sweep.cost_to_quality) and ``solver_sweep.png``.
    With the models' paired comparisons (``quality/paired.csv``), solvers.csv gets each sampler's difference
    to its model's best sampler with the paired interval.

    Returns:
        The paths written.
    """
    out = Path(out_dir)
    written = [out / name for name in OUTPUTS]
    if sweep_csvs:
        table = pd.concat([pd.read_csv(p) for p in sweep_csvs], ignore_index=True)
        write_table(out / "solver_sweep.csv", table)
        write_table(out / "solver_efficiency.csv", cost_to_quality(table))
        plot_quality_vs_nfe(table, out / "solver_sweep.png", title="sample quality against cost")
        written += [out / name for name in SWEEP_OUTPUTS]
    long = with_replicate_spread(collect_pairs(pair_csvs), ["out", "comparison", "scorer"], ["auroc"])
    write_table(out / "auroc.csv", long)
    write_text(out / "auroc.md", auroc_markdown(long))
    scorers = scorer_order(long["scorer"])
    plot_auroc_heatmap({s: auroc_matrix(long, s) for s in scorers}, out / "auroc.png",
                       title="AUROC: in-distribution (rows) vs outliers (columns)")
    solvers = solvers_table(sample_jsons, quality_jsons, paired_csvs)
    spread = [m for m in METRICS if m in solvers and solvers[m].notna().any()]
    write_table(out / "solvers.csv", with_replicate_spread(solvers, ["sampler"], spread) if spread else solvers)
    grids = {}
    for js in sample_jsons:
        d = read_json(js, SAMPLE_FIELDS)
        grids[(str(d.get("model") or d.get("dataset")), d["sampler"])] = Path(js).with_suffix(".png")
    montage(grids, out / "samples.png", row_label="model", col_label="sampler", captions=quality_captions(solvers))
    if histories:
        plot_loss_curves({Path(h).parent.name: pd.read_csv(h) for h in histories}, out / "loss.png",
                         title="training loss")
        written.append(out / "loss.png")
    return written


def quality_captions(solvers: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Per (model, sampler), its NFE and quality metrics with their 95% intervals, for the sample montage.

    Where the paired comparison tells a metric apart from the model's best sampler (its paired interval
    excludes 0), the line ends with the difference, e.g. ``precision 0.69 [0.62, 0.77]; -0.10 vs pc``.
    """
    out = {}
    for _, row in solvers.iterrows():
        if pd.isna(row.get("fd")):
            continue
        lines = [f"NFE {row['nfe']:.0f}" if pd.notna(row.get("nfe")) else "real images"]
        for name, fmt in (("fd", "{:.2f}"), ("kid", "{:.3f}"), ("precision", "{:.2f}"), ("recall", "{:.2f}")):
            bounds = [row.get(f"{name}_{b}") for b in ("lo", "hi")]
            if pd.notna(row.get(name)):
                interval = f" [{fmt.format(bounds[0])}, {fmt.format(bounds[1])}]" if all(map(pd.notna, bounds)) else ""
                lines.append(f"{name.upper() if len(name) < 4 else name} {fmt.format(row[name])}{interval}"
                             f"{_told_apart(row, name, fmt)}")
        out[(str(row["model"]), str(row["sampler"]))] = "\n".join(lines)
    return out


def _told_apart(row: pd.Series, metric: str, fmt: str) -> str:
    """``; -0.10 vs pc`` where the paired interval of ``metric``'s difference to the best sampler excludes 0."""
    distinct = row.get(f"{metric}_distinct")
    if distinct is None or pd.isna(distinct) or not bool(distinct):
        return ""
    return f"; {fmt.replace(':', ':+').format(row[f'{metric}_diff'])} vs {row[f'{metric}_vs']}"


def aggregate_results(results: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """``vsgm aggregate``: everything found under a results directory."""
    root = Path(results)
    return aggregate(sorted(root.glob("*/ood_*.csv")), sorted(root.glob("*/samples/*.json")),
                     sorted(root.glob("*/quality/*.json")), out_dir, sorted(root.glob("*/solver_sweep.csv")),
                     sorted(root.glob("*/train.csv")), sorted(root.glob("*/quality/paired.csv")))
