# Data: fetch each registry dataset once (a local job: compute nodes may have no internet), then
# prepare every split a model needs in the model's space. One rule converts every set the same
# way (vsgm prepare, i.e. vsgm.data.to_model_space): channels to the model's (gray <-> RGB),
# size through the native resolution of the model's training set (the bottleneck), then to the
# model's size, so outliers carry no resampling signature of their own.
# The download flag is per dataset and, for medmnist (one file per resolution), per resolution.


rule data_download:
    output:
        touch(f"{config['data_root']}/{{name}}/.vsgm-download-{{res}}"),
    log:
        "logs/download/{name}-{res}.log",
    benchmark:
        "benchmarks/download/{name}-{res}.tsv"
    localrule: True
    conda:
        "../envs/vsgm.yaml"
    params:
        flags=lambda wc: plan.download_flags(wc.name, wc.res),
    shell:
        "vsgm download {params.flags} > {log} 2>&1"


rule data_prepare:
    input:
        prepare_input,
    output:
        data="resources/prepared/{model}/{key}_{split}.safetensors",
        meta="resources/prepared/{model}/{key}_{split}.json",
    log:
        "logs/{model}/prepare/{key}_{split}.log",
    benchmark:
        "benchmarks/{model}/prepare/{key}_{split}.tsv"
    conda:
        "../envs/vsgm.yaml"
    resources:
        mem_mb=lambda wc: mem_mb(
            plan.prepare_bytes(wc.model, wc.key, wc.split), floor=4000
        ),
        runtime=60,
    params:
        flags=lambda wc: plan.prepare_flags(wc.model, wc.key, wc.split),
    shell:
        "vsgm prepare {params.flags} --out {output.data} > {log} 2>&1"
