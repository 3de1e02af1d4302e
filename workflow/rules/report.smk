# Aggregation: the benchmark's tables and figures from exactly the files this config produces
# (nothing is globbed, so results of models no longer configured are not mixed in).
# `snakemake --report results/report.html` then collects them with the per-model outputs.


rule report_aggregate:
    input:
        **plan.aggregate_inputs(),
    output:
        **aggregate_outputs(),
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    localrule: True
    conda:
        "../envs/vsgm.yaml"
    script:
        "../scripts/aggregate.py"
