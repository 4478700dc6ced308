# Helpers shared by the rules: config validation, paths and target lists.
import json
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError

import cce.config
from cce.config import ConfigError, validate_config

try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

DATA_ROOT = config["data_root"]
CONFIG_FILES = ",".join(str(f) for f in workflow.configfiles) or "<none>"
NOTEBOOK_DIR = Path(workflow.basedir) / "notebooks"
CLUSTERING = config["clustering"]


wildcard_constraints:
    dataset="[a-z0-9_]+",
    extractor="[a-z0-9_]+",
    method="[a-z0-9_]+",
    seed="[0-9]+",


def stage_resources(stage):
    return config["resources"][stage]


def notebook_template(name):
    return str(NOTEBOOK_DIR / f"{name}.ipynb")


def manifest_path(dataset):
    return f"{DATA_ROOT}/{dataset}/manifest.json"


def features_path(dataset, extractor):
    return f"results/features/{dataset}/{extractor}.npz"


def clustering_records(datasets=None, methods=None):
    return expand(
        "results/runs/clustering/{dataset}/{method}/seed{seed}.json",
        dataset=datasets or CLUSTERING["datasets"],
        method=methods or CLUSTERING["methods"],
        seed=range(CLUSTERING["seeds"]),
    )


def run_options(experiment, dataset, method):
    """The run's complete options as JSON: a change in the config reruns the job."""
    return json.dumps(cce.config.run_options(config, experiment, dataset, method), sort_keys=True)


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
    return clustering_records() + [
        "results/table2.csv",
        "results/notebooks/table2.html",
        "results/figures/figure1.png",
        "results/notebooks/figure1.html",
    ]
