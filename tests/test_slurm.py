"""The workflow on a real one-node SLURM cluster, brought up on this machine by .ci/slurm-cluster.sh.

The tiny config's Table 2 runs through workflow/profiles/slurm-single-node: every job goes through
sbatch (the SLURM job ids Snakemake prints are jobs the controller ran to COMPLETED), the run records
equal those of a local run of the same config and seeds, and a failing job fails the run with its
SLURM state named. The test does not install packages: `.ci/slurm-cluster.sh install` (which .ci/run
calls) installs Debian's slurm-wlm and munge. Skipped, with the reason, where they are missing or the
cluster cannot start (not root and no passwordless sudo); CCE_REQUIRE_SLURM=1 (set by .ci/run) turns
that skip into a failure, CCE_TEST_SLURM=0 skips the test.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time

import pandas as pd
import pytest

from conftest import REPO, snakemake
from test_workflow import job_counts

pytestmark = pytest.mark.slow

SCRIPT = REPO / ".ci/slurm-cluster.sh"
PROFILE = REPO / "workflow/profiles/slurm-single-node"
CONFIG = REPO / "tests/configs/tiny.yaml"
TARGET = "results/table2.csv"
# One Snakemake call's bound in seconds (SIGTERM, then SIGKILL 30 s later: the SLURM executor
# ignores SIGTERM while its jobs run), generous for a loaded machine: the tiny Table 2 takes a few minutes.
LIMIT = 900
# Record fields that describe the execution, not the result: everything else must match.
EXECUTION_FIELDS = ("wall_time_s", "host", "created")
EXECUTION_INFO_FIELDS = ("train_time_s",)
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")


def free_port_pair() -> int:
    """A port p with p and p + 1 free (slurmctld and slurmd), so a running cluster keeps its own."""
    for port in range(16817, 18817, 2):
        socks = []
        try:
            for p in (port, port + 1):
                s = socket.socket()
                socks.append(s)
                s.bind(("", p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no two free ports in 16817-18817")


def cluster_script(command, state, **env):
    return subprocess.run(["bash", str(SCRIPT), command, str(state)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running one-node cluster (its state directory); the SLURM commands on PATH talk to it."""
    if os.environ.get("CCE_TEST_SLURM") == "0":
        pytest.skip("CCE_TEST_SLURM=0: the SLURM end-to-end test is switched off")
    search = os.pathsep.join([os.environ["PATH"], "/usr/sbin", "/sbin"])
    missing = [exe for exe in ("munged", "slurmctld", "slurmd", "sbatch", "squeue")
               if shutil.which(exe, path=search) is None]
    if missing:
        reason = f"SLURM is not installed ({', '.join(missing)} not found): run `.ci/slurm-cluster.sh install`"
        if os.environ.get("CCE_REQUIRE_SLURM") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    start = time.monotonic()
    up = cluster_script("up", state, SLURM_CLUSTER_PORT=str(free_port_pair()))
    print(f"\n{up.stdout}.ci/slurm-cluster.sh up: {time.monotonic() - start:.1f} s")
    try:
        if up.returncode != 0:
            reason = (f"no SLURM cluster: `.ci/slurm-cluster.sh up` exited {up.returncode}: "
                      f"{up.stderr.strip()[-2000:]}")
            if os.environ.get("CCE_REQUIRE_SLURM") == "1":
                pytest.fail(reason)
            pytest.skip(reason)
        with pytest.MonkeyPatch.context() as mp:
            # bin/ holds client commands bound to this cluster: the SLURM executor's job steps
            # drop SLURM_CONF from the environment of their inner `srun`.
            mp.setenv("SLURM_CONF", str(state / "slurm.conf"))
            mp.setenv("PATH", f"{state / 'bin'}{os.pathsep}{os.environ['PATH']}")
            yield state
    finally:
        down = cluster_script("down", state)
        print(down.stdout + down.stderr)


def slurm_state(job_id: str) -> dict[str, str]:
    """``scontrol show job``'s fields of a job the controller still holds (MinJobAge)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def finished_jobs(state) -> dict[str, str]:
    """SLURM job id -> final state, from the controller's job completion log (jobcomp/filetxt)."""
    text = (state / "log/jobcomp.txt").read_text()
    return dict(re.findall(r"JobId=(\d+) .*?JobState=(\S+)", text))


def submissions(out: str) -> list[tuple[str, str, str, str]]:
    """(rule, Snakemake job id, SLURM job id, SLURM log) of every job Snakemake submitted."""
    rules = dict((jobid, rule) for rule, jobid in
                 re.findall(r"^\S*rule (\w+):\n(?:\s+.*\n)*?\s+jobid: (\d+)", out, re.M))
    return [(rules.get(job), job, slurm_id, log) for job, slurm_id, log in SUBMITTED.findall(out)]


def run_on_slurm(workdir):
    start = time.monotonic()
    proc = snakemake(TARGET, "--workflow-profile", PROFILE, "--configfile", CONFIG, cwd=workdir,
                     timeout=LIMIT, kill_after=30)
    return proc, proc.stdout + proc.stderr, time.monotonic() - start


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("local")
    start = time.monotonic()
    proc = snakemake(TARGET, "--cores", "2", "--configfile", CONFIG, cwd=workdir, timeout=LIMIT, kill_after=30)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    print(f"\nlocal run of {TARGET}: {time.monotonic() - start:.1f} s")
    return workdir


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("on_slurm")
    proc, out, wall = run_on_slurm(workdir)
    assert proc.returncode == 0, out[-8000:]
    print(f"\nSLURM run of {TARGET}: {wall:.1f} s")
    return workdir, out


def test_every_job_went_through_sbatch(cluster, slurm_run):
    workdir, out = slurm_run
    jobs = submissions(out)
    counts = job_counts(out)
    # data, features, 3 methods x 2 seeds, table2: nothing ran on the submitting machine
    assert counts == {"clustering_run": 6, "data": 1, "features": 1, "table2": 1, "total": 9}
    assert sorted(rule for rule, *_ in jobs) == sorted(r for r, n in counts.items() if r != "total" for _ in range(n))
    finished = finished_jobs(cluster)
    print(f"\n{'rule':15} {'snakemake job':>13} {'SLURM job':>9}  state (scontrol / jobcomp)")
    for rule, job, slurm_id, log in jobs:
        fields = slurm_state(slurm_id)
        print(f"{rule:15} {job:>13} {slurm_id:>9}  {fields['JobState']} / {finished.get(slurm_id)}")
        assert fields["JobState"] == "COMPLETED" and finished.get(slurm_id) == "COMPLETED"
        assert fields["WorkDir"] == str(workdir) and fields["NodeList"] == "localhost"
        # The SLURM log holds the job's own Snakemake, which ran exactly this rule.
        assert f"rule {rule}:" in (workdir / log).read_text()
    assert len({slurm_id for *_, slurm_id, _ in jobs}) == len(jobs)


def test_records_equal_those_of_a_local_run(local_run, slurm_run):
    workdir, _ = slurm_run
    paths = sorted(p.relative_to(local_run) for p in (local_run / "results/runs").rglob("*.json"))
    assert paths == sorted(p.relative_to(workdir) for p in (workdir / "results/runs").rglob("*.json"))
    assert len(paths) == 6
    print(f"\n{'record':48} {'accuracy':>8} {'nmi':>6}  wall time local / SLURM")
    for path in paths:
        local, remote = (json.loads((root / path).read_text()) for root in (local_run, workdir))
        walls = [r["wall_time_s"] for r in (local, remote)]
        for record in (local, remote):
            for field in EXECUTION_FIELDS:
                del record[field]
            for field in EXECUTION_INFO_FIELDS:
                record["info"].pop(field, None)
        # Same metrics, curves, options, features checksum, versions, config and commit.
        assert remote == local, path
        print(f"{str(path.relative_to('results/runs')):48} {local['metrics']['accuracy']:8.4f}"
              f" {local['metrics']['nmi']:6.4f}  {walls[0]:.2f} s / {walls[1]:.2f} s")
    pd.testing.assert_frame_equal(pd.read_csv(workdir / TARGET), pd.read_csv(local_run / TARGET))


def test_a_failing_job_fails_the_run_with_its_slurm_state(cluster, slurm_run, tmp_path):
    source, _ = slurm_run
    workdir = tmp_path / "damaged"
    shutil.copytree(source, workdir)  # keeps mtimes: only what the damage touches is out of date
    features = workdir / "results/features/digits/pixels.npz"
    data = features.read_bytes()
    features.write_bytes(data[: len(data) // 2])
    now = time.time()
    os.utime(features, (now, now))
    proc, out, wall = run_on_slurm(workdir)
    print(f"\nSLURM run with a truncated {features.relative_to(workdir)}: exit {proc.returncode}, {wall:.1f} s")
    assert proc.returncode == 1, out[-8000:]
    # The newer features file reruns the clustering runs and Table 2 only.
    assert job_counts(out) == {"clustering_run": 6, "table2": 1, "total": 7}
    jobs = submissions(out)
    assert jobs and {rule for rule, *_ in jobs} == {"clustering_run"}
    finished = finished_jobs(cluster)
    failed = []
    for rule, job, slurm_id, log in jobs:
        state = finished.get(slurm_id) or slurm_state(slurm_id)["JobState"]
        print(f"{rule:15} {job:>13} {slurm_id:>9}  {state}")
        if state == "FAILED":
            failed.append(slurm_id)
            assert f"SLURM-job '{slurm_id}' failed, SLURM status is: 'FAILED'" in out
    assert failed, out[-8000:]
    assert (workdir / TARGET).stat().st_mtime < now  # Table 2 was not rebuilt from what is left
