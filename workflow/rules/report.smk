# Aggregation: the benchmark's tables and figures from exactly the files this config produces
# (nothing is globbed, so results of models no longer configured are not mixed in).
# `snakemake --report results/report.html` then collects them with the per-model outputs.


rule report_aggregate:
    input:
        unpack(get_aggregate_input),
    output:
        **aggregate_outputs(),
    log:
        f"{LOGS}/aggregate.log",
    benchmark:
        f"{BENCHMARKS}/aggregate.tsv"
    localrule: True
    conda:
        "../envs/vsgm.yaml"
    script:
        "../scripts/aggregate.py"
