# Training: one score model per configured model key, under accelerate.
# The job's `gpu` resource (0 here; set by a profile) decides the launch: one process per GPU,
# or one CPU process. A killed job leaves results/{model}/resume.safetensors and continues from
# it when rerun with the same options. One thread by default: on a CPU, jobs side by side beat
# several OpenMP threads per job (2 threads on 2 busy cores measured 20x slower than 1).
# GPU profiles raise it.
# The progress grids (results/{model}/progress/epoch_NNNN.png, every train.sample_and_save_freq
# epochs but the last) are not outputs, like the resume file: Snakemake deletes a job's outputs
# when it fails and again before it reruns, so a training resumed after a kill would keep only
# the grids drawn after the kill (and a run of no more epochs than the frequency draws none).


rule train_model:
    input:
        data=train_input,
    output:
        model="results/{model}/model.safetensors",
        meta="results/{model}/model.json",
        history=report(
            "results/{model}/train.csv",
            caption="../report/train.rst",
            category="Models",
            labels={"model": "{model}", "file": "training history"},
        ),
    log:
        "logs/{model}/train.log",
    benchmark:
        "benchmarks/{model}/train.tsv"
    conda:
        "../envs/vsgm.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=lambda wc: mem_mb(
            plan.train_split_bytes(wc.model), floor=8000, runtime_mb=CUDA_RUNTIME_MB
        ),
        runtime=240,
    params:
        launch=launch_flags,
        slots=gpu_slots,
        flags=lambda wc: plan.train_flags(wc.model),
        out_dir="results/{model}",
    shell:
        "{params.slots} accelerate launch {params.launch} -m vsgm.cli train"
        " --data {input.data} --out_dir {params.out_dir} {params.flags} > {log} 2>&1"
