"""`make demo` after an interrupted run: a Snakemake whose terminal was closed (SIGHUP) leaves its lock
and its running jobs behind; the next `make demo` clears them itself, says so, and completes."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cce.pipeline.recover import AnotherRunActive, processes_in, recover
from conftest import BIN, REPO


def _lock(workdir: Path) -> Path:
    path = workdir / ".snakemake" / "locks" / "0.input.lock"
    path.parent.mkdir(parents=True)
    path.write_text("results/x\n")
    return path


def _sleeper(workdir: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([*argv], cwd=workdir)


def _wait_for(pid: int, workdir: Path) -> None:
    for _ in range(100):
        if pid in processes_in(workdir):
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never showed up in {workdir}")


def test_nothing_to_recover(tmp_path):
    assert recover(tmp_path).message() == ""


def test_a_running_snakemake_keeps_its_lock(tmp_path):
    lock = _lock(tmp_path)
    fake = tmp_path / "bin" / "snakemake"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    proc = _sleeper(tmp_path, str(fake), "--cores", "1")
    try:
        _wait_for(proc.pid, tmp_path)
        with pytest.raises(AnotherRunActive, match=f"PID {proc.pid}"):
            recover(tmp_path)
        assert lock.exists() and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_a_stale_lock_is_removed_and_orphaned_jobs_stopped(tmp_path):
    lock = _lock(tmp_path)
    # an orphaned job of the dead run (its command line names the library), and a bystander in the same
    # directory that must be left alone
    job = _sleeper(tmp_path, sys.executable, "-c", "import time; time.sleep(60)", "-m cce deep")
    bystander = _sleeper(tmp_path, sys.executable, "-c", "import time; time.sleep(60)")
    try:
        _wait_for(job.pid, tmp_path)
        _wait_for(bystander.pid, tmp_path)
        done = recover(tmp_path)
        assert not lock.exists()
        assert done.stopped_jobs == (job.pid,)
        assert job.wait(timeout=20) != 0 and bystander.poll() is None
        assert "interrupted" in done.message() and f"PID {job.pid}" in done.message()
    finally:
        for p in (job, bystander):
            p.kill()
            p.wait()


@pytest.mark.slow
def test_make_demo_completes_after_a_closed_terminal(tmp_path):
    config = {
        "data_root": "resources/data",
        "clustering": {"datasets": ["digits"], "extractor": "pixels", "methods": ["kmeans", "cce_plus"],
                       "seeds": 1, "training": {"epochs": 2, "device": "cpu"}},
        "resources": {"clustering": {"threads": 1}},
    }
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "CCE_IGNORE_SYSTEM_DATA": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    make = ["make", "-f", str(REPO / "Makefile"), "-o", str(REPO / ".venv/.installed"), "demo",
            f"DEMO_CONFIG={path}", "CORES=1", "DEMO_TARGETS=results/table2.csv"]
    first = subprocess.Popen(make, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    # wait until Snakemake holds its lock and runs a training job, then close its "terminal": SIGHUP to
    # the Snakemake process alone, as the issue saw it (its jobs go on as orphans)
    deadline = time.monotonic() + 300
    snakemake_pid = None
    while time.monotonic() < deadline and first.poll() is None:
        procs = processes_in(tmp_path)
        if list((tmp_path / ".snakemake/locks").glob("*")) and any("-m cce cluster" in c for c in procs.values()):
            snakemake_pid = next(p for p, c in procs.items() if "bin/snakemake" in c and "--report" not in c)
            break
        time.sleep(0.2)
    assert snakemake_pid is not None, first.communicate()[0][-3000:]
    os.kill(snakemake_pid, signal.SIGHUP)
    out = first.communicate(timeout=120)[0]
    assert first.returncode != 0, out[-3000:]
    assert list((tmp_path / ".snakemake/locks").glob("*")), "SIGHUP no longer leaves the lock: test needs a rethink"

    second = subprocess.run(make, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-5000:]
    assert "An earlier run in this directory was interrupted" in out
    assert "LockException" not in out
    assert (tmp_path / "results/table2.csv").exists() and (tmp_path / "results/report.html").exists()
    assert len(list((tmp_path / "results/runs/clustering/digits").rglob("seed*.json"))) == 2
