"""Reruns redo only what changed: a job reruns when its inputs or its options change, never because
the config file moved or the clone did. The config file's name is provenance: it reaches the record."""

import json
import shutil

import pytest
import yaml

from conftest import snakemake
from test_workflow import job_counts

pytestmark = pytest.mark.slow

TARGETS = ["results/notebooks/table2.html", "results/table5.csv"]


def plan(clone, config):
    proc = snakemake(*TARGETS, "-n", "--cores", "2", "--configfile", config, cwd=clone,
                     snakefile=clone / "Snakefile", check=True)
    out = proc.stdout + proc.stderr
    return {} if "Nothing to be done" in out else job_counts(out)


def test_the_record_names_the_config_file(tiny_clone):
    clone, config = tiny_clone
    record = json.loads((clone / "results/runs/clustering/digits/cce_plus/seed0.json").read_text())
    assert record["config"] == str(config)


def test_identical_config_at_another_path_reruns_nothing(tiny_clone, tmp_path):
    clone, config = tiny_clone
    copy = tmp_path / "elsewhere" / "my_tiny.yaml"
    copy.parent.mkdir()
    shutil.copy(config, copy)
    assert plan(clone, copy) == {}


def test_changing_one_method_option_reruns_that_method_only(tiny_clone, tmp_path):
    clone, config = tiny_clone
    changed = yaml.safe_load(config.read_text())
    changed["clustering"].setdefault("method_options", {})["cce_plus"] = {"max_iter": 150}
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    seeds = yaml.safe_load(config.read_text())["clustering"]["seeds"]
    proc = snakemake(*TARGETS, "-n", "--cores", "2", "--configfile", path, cwd=clone,
                     snakefile=clone / "Snakefile", check=True)
    out = proc.stdout + proc.stderr
    # the cce_plus runs of Table 2, and the tables and notebook that read them
    assert job_counts(out) == {"clustering_run": seeds, "table2": 1, "table5": 1, "notebook_table2": 1,
                               "total": seeds + 3}
    assert "variant=cce_plus" in out and "variant=cce," not in out and "variant=kmeans" not in out


def test_report_holds_every_table_and_figure_with_its_caption(tiny_clone):
    """The report of the whole config, as `make demo` builds it: every table and figure with its caption."""
    clone, config = tiny_clone
    snakemake("--cores", "1", "--report", "results/report.html", "--configfile", config, cwd=clone,
              snakefile=clone / "Snakefile", check=True)
    html = (clone / "results/report.html").read_text()
    captions = ("Table 1 of the paper", "Table 2 of the paper", "Table 3 of the paper", "Table 4 of the paper",
                "Table 5 of the paper", "Table 6 of the paper", "Figure 1 of the paper", "Figure 2 of the paper",
                "Figure 3 of the paper", "The lam study", "Learning curves of the networks trained from scratch",
                "The executed notebook")
    for caption in captions:
        assert caption in html, caption
    for output in ("table1.csv", "table2.csv", "table3.csv", "table4.csv", "table5.csv", "table6.csv", "figure1.png",
                   "figure2.png", "figure3.png", "lambda.png", "learning_curves.png", "lam_study.csv"):
        assert output in html, output
    # the report is made from the finished run: still nothing to do afterwards
    assert plan(clone, config) == {}


def test_moved_clone_reruns_nothing(tiny_clone, tmp_path):
    clone, config = tiny_clone
    moved = tmp_path / "moved"
    shutil.move(clone, moved)
    try:
        assert plan(moved, moved / "tests/configs/tiny.yaml") == {}
    finally:
        shutil.move(moved, clone)  # the fixture's clone, for any test after this one
