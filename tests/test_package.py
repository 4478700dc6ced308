"""`pip install .` (not editable) gives a library that validates configs away from the repository:
the config schema and the paper's numbers ship as package data."""

import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(out), str(REPO)], check=True, capture_output=True, text=True)
    (path,) = out.glob("cce-*.whl")
    return path


def test_wheel_carries_the_schema_and_the_paper_numbers(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cce/pipeline/schemas/config.schema.yaml" in names
    assert {"cce/paper/table1.csv", "cce/paper/table2.csv", "cce/paper/table5.csv"} <= names


def test_installed_wheel_validates_a_config_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The wheel alone goes into the fresh venv; its dependencies (torch and the rest, gigabytes) are the
    # test interpreter's, appended after the venv's own site-packages, whose copy of cce therefore wins.
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", site, str(wheel)],
                   check=True, capture_output=True, text=True)
    with open(os.path.join(site, "zz_test_dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")  # a path line only: that directory's .pth files
        # (among them the editable install of the repository) are not processed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    config = work / "demo.yaml"
    config.write_text((REPO / "config/demo.yaml").read_text())
    proc = subprocess.run([python, "-m", "cce", "check-config", str(config)], cwd=work, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{config}: valid"
    where = subprocess.run([python, "-c", "import cce, cce.pipeline.config; print(cce.__file__); print(cce.pipeline.config.SCHEMA_PATH)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(path.startswith(site) for path in where), where  # the installed copy, not the repository's src/
    bad = work / "bad.yaml"
    bad.write_text((REPO / "config/demo.yaml").read_text().replace("seeds: 3", "seeds: -3", 1))
    proc = subprocess.run([python, "-m", "cce", "check-config", str(bad)], cwd=work, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "'clustering.seeds': -3 is less than the minimum of 1" in proc.stderr
