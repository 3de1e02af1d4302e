"""The config check and the plan of the jobs: the logic lives in vsgm.workflow (tested there); this
file builds its Plan from the config and gives the rules the few functions of the wildcards that
compute something (a path through a replicate's model, a flag string, a memory estimate).
"""

import os
import sys

from snakemake.exceptions import WorkflowError

# vsgm.workflow and the modules it uses are torch-free: they are taken from the workflow's own
# source tree, so the Snakefile parses in an environment that holds only Snakemake (--sdm conda
# builds vsgm's environment for the jobs).
_SOURCE_TREE = os.path.join(workflow.basedir, "src")
if os.path.isdir(os.path.join(_SOURCE_TREE, "vsgm")) and _SOURCE_TREE not in sys.path:
    sys.path.insert(0, _SOURCE_TREE)

from vsgm.workflow import (
    AGGREGATE_CAPTIONS,
    CUDA_RUNTIME_MB,
    Plan,
    imported_model,
    mem_mb,
)
from vsgm.workflow_schema import ConfigError, load_schema

try:
    plan = Plan.checked(
        config, load_schema(workflow.source_path("../schemas/config.schema.yaml"))
    )
except ConfigError as err:
    raise WorkflowError(str(err)) from None


wildcard_constraints:
    **plan.constraints(),


# -- input functions: the prepared files of a model are shared by its replicates ----------------


def prepare_input(wildcards):
    """The download flag of the set's dataset, at the model's size."""
    size = config["models"][wildcards.model]["size"]
    return plan.download_flag(wildcards.key, size)


def train_input(wildcards):
    """The prepared training split; none for an imported model, which is then never retrained
    (its outputs exist and no input is newer)."""
    if imported_model(wildcards.model):
        return []
    return plan.prepared(wildcards.model, wildcards.model, "train")


def own_split(split):
    """An input function: the model's own prepared split."""
    return lambda wildcards: plan.prepared(wildcards.model, wildcards.model, split)


def classifier(wildcards):
    return plan.classifier_file(wildcards.model)


def features_data(wildcards):
    return plan.set_data(wildcards.model, wildcards.set)


# -- params that depend on the job's resources ---------------------------------------------------


def launch_flags(wildcards, resources, threads):
    """accelerate launch flags: one process per GPU of the job (resource ``gpu``), else one CPU process."""
    return plan.launch_flags(int(resources.gpu), threads)


def gpu_slots(wildcards, resources):
    """Command prefix that gives a GPU job GPUs of its own on a local multi-GPU machine (vsgm.gpu_slots;
    under SLURM it leaves the scheduler's choice alone); empty for CPU jobs."""
    gpus = int(resources.gpu)
    return f"python -m vsgm.gpu_slots --gpus {gpus} --" if gpus > 0 else ""


def device(wildcards, resources):
    """--device of the inference commands: cuda when the job holds a GPU."""
    return "cuda" if int(resources.gpu) > 0 else "cpu"


# -- the aggregate files, annotated for the report -----------------------------------------------


def aggregate_outputs():
    """Outputs of report_aggregate (only there: the caption paths are relative to workflow/rules/)."""
    outputs = {}
    for name, path in plan.aggregate_files().items():
        if name in AGGREGATE_CAPTIONS:
            caption, label = AGGREGATE_CAPTIONS[name]
            path = report(
                path,
                caption=f"../report/{caption}",
                category="Summary",
                labels={"table": label},
            )
        outputs[name] = path
    return outputs
