# MutDet: mutually optimizing detection pre-training for oriented object detection in remote-sensing
# images, as a staged, cached pipeline. `snakemake --cores 2` runs the embedded default (config.yaml)
# end to end on CPU; `snakemake --profile slurm` reproduces the paper's tables on a cluster.
from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the embedded default; a config given with --configfile replaces it instead of being merged
# into it (merging would keep the synthetic dataset in every other config).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/synthetic.smk"
include: "rules/tiling.smk"
include: "rules/pseudo_labels.smk"
include: "rules/pretrain.smk"
include: "rules/finetune.smk"
include: "rules/tables.smk"
include: "rules/report.smk"


# Run in the Snakemake process itself, never as cluster jobs: seconds of light CPU work each (tables and
# pictures from small JSON/CSV files; the synthetic data set, tens of seconds) that would otherwise wait in
# a SLURM queue for a 2 GB slot. Everything else (tiling, pseudo-labels, training, prediction, evaluation)
# reads whole data sets or needs a GPU and is submitted.
localrules:
    all,
    generate_synthetic,
    table1,
    table2,
    table3,
    table4,
    table5,
    table6,
    table7,
    table8,
    table9,
    table5_small,
    training_curves,
    ap_curves,


rule all:
    input:
        get_final_outputs(),
    default_target: True
