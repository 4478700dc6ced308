"""`make demo` on a machine without Debian's Fashion-MNIST package and without network: the data
step's own message (what is missing, where to put it, how to install it) reaches the terminal."""

import os
import subprocess

import pytest
import yaml

from conftest import BIN, REPO

pytestmark = pytest.mark.slow


def test_demo_without_fashion_mnist_says_why_and_what_to_do(tmp_path):
    config = {
        "data_root": "resources/data",
        # download: false stands for "no network": tests never reach the internet
        "datasets": {"fashion_mnist": {"download": False}},
        "features": {"batch_size": 256, "num_workers": 0, "device": "cpu"},
        "clustering": {"datasets": ["fashion_mnist"], "extractor": "pixels", "methods": ["kmeans"], "seeds": 1},
        "table1": {"Ks": [2], "lam_scales": ["mean"], "repeats": 1, "max_iter": 10, "reference_iter": 10,
                    "max_time": 1},
        "resources": {"clustering": {"threads": 1}},
    }
    path = tmp_path / "no_fmnist.yaml"
    path.write_text(yaml.safe_dump(config))
    # CCE_IGNORE_SYSTEM_DATA=1 hides /usr/share/datasets/fashion-mnist from the data step and keeps the
    # install script from installing the package: the state of a machine without it.
    env = {**os.environ, "CCE_IGNORE_SYSTEM_DATA": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    # -o: the venv is the one running this test; never reinstall it from inside a test
    proc = subprocess.run(["make", "-f", str(REPO / "Makefile"), "-o", str(REPO / ".venv/.installed"), "demo",
                           f"DEMO_CONFIG={path}", "CORES=1",
                           # Table 2 alone: the failing data step is its first job, and the jobs
                           # that do not need the data (Table 1, Figures 1 and 3) are not waited for
                           "DEMO_TARGETS=results/table2.csv"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    terminal = proc.stdout + proc.stderr
    assert proc.returncode != 0, terminal[-3000:]
    assert "dataset 'fashion_mnist' is not available" in terminal, terminal[-3000:]
    assert "apt-get install dataset-fashion-mnist" in terminal
    assert "--local-dir" in terminal  # the other remedy: where the four files can be put
    assert not (tmp_path / "results/report.html").exists()
