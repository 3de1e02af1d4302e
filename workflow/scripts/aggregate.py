"""Rule report_aggregate: the benchmark's tables and figures from the files this config produced.

Calls :func:`vsgm.report.aggregate` with the explicit input lists (``vsgm aggregate`` would glob
the results directory instead and could pick up models that are no longer configured). It
writes every output atomically into the directory of ``output.auroc`` (results/).
"""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 (snakemake injects it)

from pathlib import Path  # noqa: E402

from vsgm.report import aggregate  # noqa: E402

out_dir = Path(snakemake.output.auroc).parent  # noqa: F821
written = aggregate(
    pair_csvs=list(snakemake.input.ood),  # noqa: F821
    sample_jsons=list(snakemake.input.samples),  # noqa: F821
    quality_jsons=list(snakemake.input.quality),  # noqa: F821
    out_dir=out_dir,
    sweep_csvs=list(snakemake.input.sweeps),  # noqa: F821
    histories=list(snakemake.input.histories),  # noqa: F821
    paired_csvs=list(snakemake.input.paired),  # noqa: F821
)
expected = {Path(p) for p in snakemake.output}  # noqa: F821
missing = expected - set(written)
if missing:
    raise RuntimeError(f"vsgm.report.aggregate did not write {sorted(map(str, missing))}")
print("wrote " + ", ".join(map(str, written)))
