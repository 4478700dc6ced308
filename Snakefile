"""Reproduce "Collision Cross-entropy and EM Algorithm for Self-labeled Classification".

    snakemake --cores all results/table2.csv        # one table
    snakemake --cores all                           # every table, figure and notebook
    snakemake --cores all --configfile config/demo.yaml   # offline CPU demo (make demo)

The configuration is validated against src/cce/pipeline/schemas/config.schema.yaml
before any job runs. README.md says which rule writes which file.
"""

from snakemake.utils import min_version

min_version("9.0")

# A config given with --configfile replaces the paper's config instead of being
# deep-merged into it (a demo must not inherit the paper's datasets).
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config/config.yaml"


include: "workflow/rules/common.smk"


# workflow/report/workflow.rst and a table of what this config ran (common.smk)
report: landing_page()


include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/clustering.smk"
include: "workflow/rules/deep.smk"
include: "workflow/rules/weak.smk"
include: "workflow/rules/noisy.smk"
include: "workflow/rules/table1.smk"
include: "workflow/rules/notebooks.smk"
include: "workflow/rules/gallery.smk"


rule all:
    input:
        all_targets(),
    default_target: True
