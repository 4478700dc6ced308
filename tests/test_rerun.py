"""Reruns redo only what changed: a job reruns when its inputs or its options change, never because
the config file moved or the clone did. The config file's name is provenance: it reaches the record."""

import json
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO, snakemake
from test_workflow import job_counts

pytestmark = pytest.mark.slow

TARGETS = ["results/notebooks/table2.html", "results/table5.csv"]


def copy_working_tree(dest):
    """The repository's files as a fresh clone has them (tracked and untracked, not ignored)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def finished_clone(tmp_path_factory):
    """A copy of the repository that ran the tiny config's Table 2 and Table 5 in place."""
    clone = copy_working_tree(tmp_path_factory.mktemp("clone") / "repo")
    config = clone / "tests/configs/tiny.yaml"
    proc = snakemake(*TARGETS, "--cores", "2", "--configfile", config, cwd=clone, snakefile=clone / "Snakefile")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return clone, config


def plan(clone, config):
    proc = snakemake(*TARGETS, "-n", "--cores", "2", "--configfile", config, cwd=clone,
                     snakefile=clone / "Snakefile", check=True)
    out = proc.stdout + proc.stderr
    return {} if "Nothing to be done" in out else job_counts(out)


def test_the_record_names_the_config_file(finished_clone):
    clone, config = finished_clone
    record = json.loads((clone / "results/runs/clustering/digits/cce_plus/seed0.json").read_text())
    assert record["config"] == str(config)


def test_identical_config_at_another_path_reruns_nothing(finished_clone, tmp_path):
    clone, config = finished_clone
    copy = tmp_path / "elsewhere" / "my_tiny.yaml"
    copy.parent.mkdir()
    shutil.copy(config, copy)
    assert plan(clone, copy) == {}


def test_changing_one_method_option_reruns_that_method_only(finished_clone, tmp_path):
    clone, config = finished_clone
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


def test_report_holds_the_tables_with_their_captions(finished_clone):
    clone, config = finished_clone
    snakemake(*TARGETS, "--cores", "1", "--report", "results/report.html", "--configfile", config, cwd=clone,
              snakefile=clone / "Snakefile", check=True)
    html = (clone / "results/report.html").read_text()
    for caption in ("Table 2 of the paper", "Table 5 of the paper", "The executed notebook"):
        assert caption in html, caption
    assert "table2.csv" in html and "table5.csv" in html
    # the report is made from the finished run: still nothing to do afterwards
    assert plan(clone, config) == {}


def test_moved_clone_reruns_nothing(finished_clone, tmp_path):
    clone, config = finished_clone
    moved = tmp_path / "moved"
    shutil.move(clone, moved)
    try:
        assert plan(moved, moved / "tests/configs/tiny.yaml") == {}
    finally:
        shutil.move(moved, clone)  # the fixture's clone, for any test after this one
