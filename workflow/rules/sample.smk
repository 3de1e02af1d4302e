# Sampling: one job per (model, sampler); each writes a grid, the samples and their cost (NFE,
# seconds). With sample.quality, a small classifier per model gives each sampler FD, KID, precision
# and recall against the test split, with 95% bootstrap intervals (and the real-vs-real floor:
# as many training images as samples vs the test split).


rule sample_model:
    input:
        checkpoint="results/{model}/model.safetensors",
    output:
        grid=report(
            "results/{model}/samples/{sampler}.png",
            caption="../report/samples.rst",
            category="Samples",
            subcategory="{model}",
            labels={"model": "{model}", "sampler": "{sampler}"},
        ),
        samples="results/{model}/samples/{sampler}.npz",
        cost="results/{model}/samples/{sampler}.json",
    log:
        "logs/{model}/sample/{sampler}.log",
    benchmark:
        "benchmarks/{model}/sample/{sampler}.tsv"
    conda:
        "../envs/vsgm.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=4000,
        runtime=120,
    params:
        flags=plan.sample_flags(),
        device=device,
        slots=gpu_slots,
        prefix="results/{model}/samples/{sampler}",
    shell:
        "{params.slots} vsgm sample --checkpoint {input.checkpoint} --sampler {wildcards.sampler}"
        " {params.flags} --device {params.device} --out {params.prefix} > {log} 2>&1"


rule sample_classifier:
    input:
        data=own_split("train"),
    output:
        classifier="results/{model}/classifier.safetensors",
        meta="results/{model}/classifier.json",
    log:
        "logs/{model}/classifier.log",
    benchmark:
        "benchmarks/{model}/classifier.tsv"
    conda:
        "../envs/vsgm.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=lambda wc: mem_mb(plan.train_split_bytes(wc.model), floor=4000),
        runtime=120,
    params:
        seed=config["seed"],
        device=device,
        slots=gpu_slots,
    shell:
        "{params.slots} vsgm classifier --data {input.data} --out {output.classifier} --seed {params.seed}"
        " --device {params.device} > {log} 2>&1"


rule sample_quality:
    input:
        classifier=classifier,
        samples="results/{model}/samples/{sampler}.npz",
        cost="results/{model}/samples/{sampler}.json",
        reference=own_split("test"),
        train_reference=own_split("train"),
    output:
        quality="results/{model}/quality/{sampler}.json",
    log:
        "logs/{model}/quality/{sampler}.log",
    benchmark:
        "benchmarks/{model}/quality/{sampler}.tsv"
    conda:
        "../envs/vsgm.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc: mem_mb(plan.quality_bytes(wc.model), floor=4000),
        runtime=60,
    params:
        seed=config["seed"],
    shell:
        "vsgm quality --classifier {input.classifier} --samples {input.samples}"
        " --reference {input.reference} --train_reference {input.train_reference}"
        " --seed {params.seed} --out {output.quality} > {log} 2>&1"


# all samplers of a model in one bootstrap that resamples the test split once per draw: each sampler's
# difference to the best one, with an interval free of the test split's noise (solvers.csv's *_diff columns)
rule sample_paired:
    input:
        classifier=classifier,
        samples=expand(
            "results/{{model}}/samples/{sampler}.npz", sampler=plan.samplers()
        ),
        reference=own_split("test"),
        train_reference=own_split("train"),
    output:
        paired="results/{model}/quality/paired.csv",
    log:
        "logs/{model}/quality/paired.log",
    benchmark:
        "benchmarks/{model}/quality/paired.tsv"
    conda:
        "../envs/vsgm.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc: mem_mb(plan.quality_bytes(wc.model), floor=4000),
        runtime=60,
    params:
        seed=config["seed"],
    shell:
        "vsgm paired --model {wildcards.model} --classifier {input.classifier} --samples {input.samples}"
        " --reference {input.reference} --train_reference {input.train_reference}"
        " --seed {params.seed} --out {output.paired} > {log} 2>&1"


rule sample_sweep:
    input:
        checkpoint="results/{model}/model.safetensors",
        classifier=classifier,
        reference=own_split("test"),
    output:
        sweep=report(
            "results/{model}/solver_sweep.csv",
            caption="../report/solver_sweep_model.rst",
            category="Samples",
            subcategory="{model}",
            labels={"model": "{model}", "sampler": "sweep"},
        ),
    log:
        "logs/{model}/sweep.log",
    benchmark:
        "benchmarks/{model}/sweep.tsv"
    conda:
        "../envs/vsgm.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=lambda wc: mem_mb(
            plan.sweep_bytes(wc.model), floor=4000, runtime_mb=CUDA_RUNTIME_MB
        ),
        runtime=240,
    params:
        flags=plan.sweep_flags(),
        device=device,
        slots=gpu_slots,
    shell:
        "{params.slots} vsgm sweep --checkpoint {input.checkpoint} --classifier {input.classifier}"
        " --reference {input.reference} {params.flags} --device {params.device}"
        " --out {output.sweep} > {log} 2>&1"
