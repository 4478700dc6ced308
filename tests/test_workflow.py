"""The Snakemake workflow: lint, a dry run of the paper's config, a real tiny run, bad input."""

import json
import re

import pandas as pd
import pytest
import yaml

from conftest import REPO, snakemake

pytestmark = pytest.mark.slow


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table."""
    block = output.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_lint(tmp_path):
    proc = snakemake("--lint", "--configfile", REPO / "config/config.yaml", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_dry_run_of_the_paper_config(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    c = config["clustering"]
    proc = snakemake("-n", "--cores", "all", "--configfile", REPO / "config/config.yaml", cwd=tmp_path, check=True)
    counts = job_counts(proc.stdout + proc.stderr)
    assert counts["clustering_run"] == len(c["datasets"]) * len(c["methods"]) * c["seeds"]
    assert counts["features"] == len(c["datasets"])
    assert counts["data"] == len(c["datasets"])
    for rule in ("table2", "notebook_table2", "notebook_figure1", "all"):
        assert counts[rule] == 1
    assert not (tmp_path / "results").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny config run end to end once; tests below read its outputs."""
    workdir = tmp_path_factory.mktemp("tiny")
    config = REPO / "tests/configs/tiny.yaml"
    proc = snakemake("--cores", "2", "--configfile", config, cwd=workdir)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return workdir, config


def test_tiny_run_produces_every_output(tiny_run):
    workdir, _ = tiny_run
    table = pd.read_csv(workdir / "results/table2.csv")
    assert list(table.columns) == ["method", "digits", "digits_std"]
    assert table.loc[0, "method"] == "kmeans"
    assert 50 < table.loc[0, "digits"] <= 100  # percent; KMeans on digits pixels scores ~70-80
    for seed in (0, 1):
        record = json.loads((workdir / f"results/runs/clustering/digits/kmeans/seed{seed}.json").read_text())
        assert record["seed"] == seed and record["dataset"] == "digits" and record["method"] == "kmeans"
        assert set(record["metrics"]) == {"accuracy", "nmi", "ari", "n_clusters_nonempty"}
        assert record["config"].endswith("tiny.yaml")
        assert record["versions"]["torch"] and record["device"] == "cpu"
    for name in ("table2", "figure1"):
        html = (workdir / f"results/notebooks/{name}.html").read_text()
        assert "Traceback" not in html
        nb = json.loads((workdir / f"results/notebooks/{name}.ipynb").read_text())
        assert all(c.get("outputs") is not None for c in nb["cells"] if c["cell_type"] == "code")
    png = (workdir / "results/figures/figure1.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_seed_determinism(tiny_run):
    workdir, _ = tiny_run
    a = json.loads((workdir / "results/runs/clustering/digits/kmeans/seed0.json").read_text())
    b = json.loads((workdir / "results/runs/clustering/digits/kmeans/seed1.json").read_text())
    assert a["metrics"] != b["metrics"]  # different seeds, different k-means++ starts


def test_rerun_does_nothing_and_deleting_a_record_reruns_only_its_job(tiny_run):
    workdir, config = tiny_run
    proc = snakemake("-n", "--cores", "2", "--configfile", config, cwd=workdir, check=True)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    (workdir / "results/runs/clustering/digits/kmeans/seed1.json").unlink()
    proc = snakemake("-n", "--cores", "2", "--configfile", config, cwd=workdir, check=True)
    assert job_counts(proc.stdout + proc.stderr) == {
        "all": 1, "clustering_run": 1, "notebook_table2": 1, "table2": 1, "total": 4,
    }
    assert "seed=1" in proc.stdout + proc.stderr


def write_config(tmp_path, **changes):
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"clustering__methods": ["kmeans", "kmedoids"]}, "'clustering.methods[1]': unknown method 'kmedoids'"),
        ({"clustering__seeds": -3}, "'clustering.seeds': -3 is less than the minimum of 1"),
        ({"datasets__digits": {"local_dir": "/no/such/dir"}},
         "'datasets.digits.local_dir': directory '/no/such/dir' does not exist"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, changes, message):
    config = write_config(tmp_path, **changes)
    proc = snakemake("--cores", "2", "--configfile", config, cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_malformed_yaml_stops(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("clustering:\n  datasets: [digits\n  seeds: 2\n")
    proc = snakemake("--cores", "2", "--configfile", path, cwd=tmp_path)
    assert proc.returncode != 0
    assert re.search(r"not valid (JSON or )?YAML", proc.stdout + proc.stderr)
    assert not (tmp_path / "results").exists()
