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
        f"{LOGS}/download/{{name}}-{{res}}.log",
    benchmark:
        f"{BENCHMARKS}/download/{{name}}-{{res}}.tsv"
    localrule: True
    conda:
        "../envs/vsgm.yaml"
    params:
        flags=get_download_params,
    shell:
        "vsgm download {params.flags} > {log} 2>&1"


rule data_prepare:
    input:
        get_prepare_input,
    output:
        data=f"{PREPARED}/{{model}}/{{key}}_{{split}}.safetensors",
        meta=f"{PREPARED}/{{model}}/{{key}}_{{split}}.json",
    log:
        f"{LOGS}/{{model}}/prepare/{{key}}_{{split}}.log",
    benchmark:
        f"{BENCHMARKS}/{{model}}/prepare/{{key}}_{{split}}.tsv"
    conda:
        "../envs/vsgm.yaml"
    resources:
        mem_mb=mem_mb_for(prepare_bytes, floor=4000),
        runtime=60,
    params:
        flags=get_prepare_params,
    shell:
        "vsgm prepare {params.flags} --out {output.data} > {log} 2>&1"
