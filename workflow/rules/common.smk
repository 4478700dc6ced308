# Helpers shared by the rules: config validation, paths and target lists.
import json
import os
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

from cce.data import image_folders
from cce.pipeline.config import ConfigError, validate_config
from cce.pipeline.gallery import gallery_targets
from cce.pipeline.experiments import (
    DEEP_EXPERIMENTS,
    HEAD_EXPERIMENTS,
    PREDICTIONS_PATTERN,
    RECORD_PATTERN,
    TARGET_EXPERIMENTS,
    VARIANT_PATTERN,
    parse_variant,
    planned_runs,
    run_options,
)

try:
    validate_config(config)  # the schema ships with the library: src/cce/pipeline/schemas/config.schema.yaml
except ConfigError as err:
    raise WorkflowError(str(err)) from None

DATA_ROOT = config["data_root"]
IMAGE_FOLDERS = image_folders(config["datasets"])  # {name: folder} of the datasets of kind image_folder
# The config file's name is provenance, not a reason to rerun: the run records get it through the
# environment, so that a copy of the config at another path (or a moved clone) reruns nothing.
# What a job's result depends on (its inputs and its options) are its params and inputs.
os.environ["CCE_CONFIG_FILES"] = ",".join(str(f) for f in workflow.configfiles) or "<none>"


envvars:
    "CCE_CONFIG_FILES",  # passed on to remote jobs (SLURM)


# Relative to the working directory, so that moving the clone does not change the notebooks' inputs.
NOTEBOOK_DIR = Path(os.path.relpath(Path(workflow.basedir) / "notebooks"))
# Table 5 compares L_CCE (PGD) with L_CCE+ (EM) on the clustering experiment's runs.
TABLE5_METHODS = [m for m in ("cce", "cce_plus") if m in config["clustering"]["methods"]]
NETWORK_EXPERIMENTS = DEEP_EXPERIMENTS + TARGET_EXPERIMENTS  # all trained by network_run (deep.smk)
# Deep runs: Table 3 compares the losses (every method but L_CCE), Table 6 L_CCE with L_CCE+.
DEEP_METHODS = (config.get("deep") or {}).get("methods", [])
TABLE3_METHODS = [m for m in DEEP_METHODS if m != "cce"]
TABLE6_METHODS = [m for m in ("cce", "cce_plus") if m in DEEP_METHODS]


def table4_columns():
    """Table 4's columns in the paper's order: every dataset at the largest fraction, then the next."""
    section = config.get("weak") or {}
    fractions = sorted(section.get("fractions", []), reverse=True)
    return [f"{d}@{f:g}" for f in fractions for d in section.get("datasets", [])]


wildcard_constraints:
    dataset="[a-z0-9_]+",
    extractor="[a-z0-9_]+",
    method="[a-z0-9_]+",
    seed="[0-9]+",
    experiment="|".join(HEAD_EXPERIMENTS),
    variant=VARIANT_PATTERN,


def landing_page():
    """The report's landing page: workflow/report/workflow.rst, then what this config ran and at which size
    against the paper's config (cce.pipeline.report), written under .snakemake/ (Snakemake reads a file)."""
    from cce.pipeline.config import load_config
    from cce.pipeline.report import write_landing_page

    base = Path(workflow.basedir)
    return write_landing_page(base / "workflow/report/workflow.rst", config, load_config(base / "config/config.yaml"),
                              ".snakemake/cce/workflow.rst", config_files=[str(f) for f in workflow.configfiles])


def stage_resources(stage):
    return config["resources"][stage]


def notebook_template(name):
    return str(NOTEBOOK_DIR / f"{name}.ipynb")


def manifest_path(dataset):
    return f"{DATA_ROOT}/{dataset}/manifest.json"


def features_path(dataset, extractor):
    return f"results/features/{dataset}/{extractor}.npz"


def checkpoint_path(experiment, dataset, variant, seed):
    return f"results/checkpoints/{experiment}/{dataset}/{variant}/seed{seed}.ckpt"


def network_run_args(wildcards):
    """What a network run varies, as arguments of its command (python -m cce deep|weak|noisy)."""
    name, varied = parse_variant(wildcards.variant)
    if wildcards.experiment == "noisy":
        return f"--loss {name} --eta {varied['eta']:g}"
    if wildcards.experiment == "weak":
        return f"--method {name} --fraction {varied['fraction']:g}"
    return f"--method {name}"


def records(experiment, methods=None):
    """Record paths of an experiment's runs (optionally only some methods); none if the config has no such section."""
    if not config.get(experiment):
        return []
    return [
        run.record
        for run in planned_runs(config, experiment)
        if methods is None or run.method in methods
    ]


def run_options_json(experiment, dataset, variant):
    """The run's complete options as JSON: a change in the config reruns the job."""
    return json.dumps(run_options(config, experiment, dataset, variant), sort_keys=True)


def data_args(wildcards):
    opts = config["datasets"].get(wildcards.dataset, {})
    args = []
    if opts.get("local_dir"):
        args += ["--local-dir", shlex.quote(opts["local_dir"])]
    if not opts.get("download", True):
        args.append("--no-download")
    return " ".join(args)


def all_targets():
    # The run records are targets too, so that deleting one record reruns that job
    # (Snakemake does not rebuild a missing intermediate whose consumers are up to date).
    targets = records("clustering") + [
        "results/table2.csv",
        "results/notebooks/table2.html",
        "results/figures/figure1.png",
        "results/notebooks/figure1.html",
        "results/table1.csv",
        "results/notebooks/table1.html",
        "results/figures/figure3.png",
        "results/notebooks/figure3.html",
    ]
    if TABLE5_METHODS:
        targets += ["results/table5.csv", "results/notebooks/table5.html"]
    if config.get("deep"):
        targets += records("deep") + ["results/deep_curves.csv", "results/figures/learning_curves.png",
                                      "results/notebooks/learning_curves.html"]
        if TABLE3_METHODS:
            targets += ["results/table3.csv", "results/notebooks/table3.html"]
        if TABLE6_METHODS:
            targets += ["results/table6.csv", "results/notebooks/table6.html"]
    if config.get("weak"):
        targets += records("weak") + ["results/table4.csv", "results/notebooks/table4.html"]
    if config.get("noisy"):
        targets += records("noisy") + ["results/figures/figure2.png", "results/notebooks/figure2.html"]
    if config.get("lam_study"):
        targets += records("lam_study") + ["results/figures/lambda.png", "results/notebooks/lambda.html"]
    return targets + gallery_targets(config)  # gallery.smk
