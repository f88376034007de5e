# The CIFAR-10 study: download -> preprocess -> gates -> coarse/fine lambda search -> final runs -> report.
# This file only wires: the rules live in workflow/rules, the work in workflow/scripts and the
# handbackprop package.
from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"  # so --directory elsewhere still finds it


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/gates.smk"
include: "workflow/rules/user_model.smk"
include: "workflow/rules/lr_range.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/final.smk"
include: "workflow/rules/bonus.smk"
include: "workflow/rules/report.smk"


onerror:
    print_failures()


rule all:
    default_target: True
    input:
        all_targets,
