# vsgm: the Vanilla Score-Based Generative Model (VE SDE) as a reproducible benchmark.
#
#   snakemake --cores all                                    # default run (config/config.yaml, CPU)
#   snakemake --cores all --configfile config/benchmark.yaml # the seed's benchmark (GPUs: see profiles/)
#   snakemake --cores all results/photos/ood_flat.csv       # one file and only what it needs
#   snakemake results/svhn/ood_cifar10.csv --cores all --configfile config/benchmark.yaml
#                                                            # (targets before --configfile, which takes every word after it)
#   snakemake --report results/report.html                   # HTML report of a finished run
#
# A --configfile replaces config/config.yaml (it is not merged into it); --config KEY=VALUE
# overrides single values. See workflow/schemas/config.schema.yaml for every key.

from snakemake.utils import min_version

min_version("9.0")


# config/config.yaml unless --configfile names the config: a --configfile replaces it (Snakemake
# would merge the two), and --config KEY=VALUE overrides single values of either. (Snakemake's
# --replace-workflow-config would also drop config/config.yaml for a bare --config KEY=VALUE.)
if not workflow.configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/ood.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        plan.all_targets(),
