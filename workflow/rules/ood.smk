# Out-of-distribution detection, in three steps so that nothing is computed twice:
#   features (per model and set: the network's per-image features; the costly part),
#   scores   (per model and set: the scorers fitted on the model's training features),
#   pair     (per model and OOD set: test-vs-OOD metrics and the train-vs-test sanity rows).
# The sets of a model are `train` (its training images: the scorers are fitted on 80%, the
# rest is the sanity row), `test` (its test split: the in-distribution side of every pair) and
# each OOD set's test split, all prepared in the model's space by data_prepare. The
# in-distribution scores are computed once per model and reused by every pair.


rule ood_features:
    input:
        checkpoint="results/{model}/model.safetensors",
        data=features_data,
    output:
        features="results/{model}/features/{set}.parquet",
        cost="results/{model}/features/{set}.json",
    log:
        "logs/{model}/features/{set}.log",
    benchmark:
        "benchmarks/{model}/features/{set}.tsv"
    conda:
        "../envs/vsgm.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=lambda wc: mem_mb(
            plan.features_bytes(wc.model, wc.set),
            floor=4000,
            runtime_mb=CUDA_RUNTIME_MB,
        ),
        runtime=120,
    params:
        flags=plan.features_flags(),
        device=device,
        slots=gpu_slots,
    shell:
        "{params.slots} vsgm features --checkpoint {input.checkpoint} --data {input.data}"
        " --out {output.features} {params.flags} --device {params.device} > {log} 2>&1"


rule ood_score:
    input:
        train="results/{model}/features/train.parquet",
        features="results/{model}/features/{set}.parquet",
    output:
        scores="results/{model}/scores/{set}.parquet",
    log:
        "logs/{model}/scores/{set}.log",
    benchmark:
        "benchmarks/{model}/scores/{set}.tsv"
    conda:
        "../envs/vsgm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        flags=lambda wc: plan.score_flags(wc.set),
    shell:
        "vsgm score --train_features {input.train} --features {input.features}"
        " --out {output.scores} {params.flags} > {log} 2>&1"


rule ood_pair:
    input:
        in_scores="results/{model}/scores/test.parquet",
        out_scores="results/{model}/scores/{out}.parquet",
        sanity="results/{model}/scores/train.parquet",
        nfe="results/{model}/features/test.json",
    output:
        table=report(
            "results/{model}/ood_{out}.csv",
            caption="../report/ood_pair.rst",
            category="Out-of-distribution",
            subcategory="{model}",
            labels={"model": "{model}", "OOD set": "{out}", "figure": "metrics"},
        ),
        plots=report(
            directory("results/{model}/plots/{out}"),
            patterns=["{name}.png"],
            caption="../report/ood_plots.rst",
            category="Out-of-distribution",
            subcategory="{model}",
            labels={"model": "{model}", "OOD set": "{out}", "figure": "{name}"},
        ),
    log:
        "logs/{model}/pair/{out}.log",
    benchmark:
        "benchmarks/{model}/pair/{out}.tsv"
    conda:
        "../envs/vsgm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        seed=config["seed"],
    shell:
        "vsgm pair --in_scores {input.in_scores} --out_scores {input.out_scores}"
        " --sanity {input.sanity} --nfe_json {input.nfe} --model {wildcards.model}"
        " --out_name {wildcards.out} --seed {params.seed} --out {output.table}"
        " --plots {output.plots} > {log} 2>&1"
