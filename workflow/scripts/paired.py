"""Rule sample_paired: all samplers of one model compared in one paired bootstrap
(:func:`vsgm.paired_quality.paired_table`), written atomically to ``output.paired``."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821 (snakemake injects it)

from vsgm.io import write_table  # noqa: E402
from vsgm.paired_quality import paired_table  # noqa: E402

table = paired_table(
    snakemake.wildcards.model,  # noqa: F821
    snakemake.input.classifier,  # noqa: F821
    list(snakemake.input.samples),  # noqa: F821
    snakemake.input.reference,  # noqa: F821
    snakemake.input.train_reference,  # noqa: F821
    seed=snakemake.params.seed,  # noqa: F821
)
write_table(snakemake.output.paired, table)  # noqa: F821
print(table.to_string())
