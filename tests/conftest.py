import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(*args, cwd, check=False, timeout=1200, snakefile=REPO / "Snakefile", env=None, kill_after=None):
    """Run the project's Snakefile (or ``snakefile``) from ``cwd`` with the test interpreter's environment.

    With ``kill_after`` (seconds) the call runs under ``timeout -k``: SIGTERM after ``timeout``,
    SIGKILL ``kill_after`` later, for executors that ignore SIGTERM while jobs run (SLURM's).
    """
    env = {**os.environ, **(env or {}), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [str(BIN / "snakemake"), "-s", str(snakefile), *map(str, args)]
    if kill_after is not None:
        cmd = ["timeout", "-k", str(kill_after), str(timeout), *cmd]
        timeout += kill_after + 30
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def comparable_record(record: dict, *extra: str) -> dict:
    """What a resumed run must reproduce: metrics, options, info without timing, data, and ``extra`` fields."""
    info = {k: v for k, v in record["info"].items() if k not in ("timing", "train_time_s", "resumed_at_epochs")}
    return {"metrics": record["metrics"], "options": record["options"], "info": info, "data": record["data"],
            **{key: record[key] for key in extra}}


def copy_working_tree(dest: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and untracked, not ignored)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="session")
def tiny_clone(tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the repository that ran the tiny config end to end, in place, once per session.

    The workflow, rerun and report tests all read this one run: every job of it is a process that
    imports torch, the most expensive thing the suite does. Tests that change the clone undo it.
    """
    clone = copy_working_tree(tmp_path_factory.mktemp("clone") / "repo")
    config = clone / "tests/configs/tiny.yaml"
    # The limit is for a hang, not for a busy machine: this run took over 20 min on a 2-core machine
    # whose CPU pressure was above 50 %.
    proc = snakemake("--cores", "2", "--configfile", config, cwd=clone, snakefile=clone / "Snakefile",
                     timeout=3000)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return clone, config


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The tests run many ops on small tensors, where torch's thread pool only adds overhead
    # (and long stalls on a loaded 2-core machine). Session scope: module-scoped fixtures
    # then compute with the same thread count as the tests that compare against them.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(config, items):
    # Tests marked `cuda` need a CUDA device: skipped (with the reason) elsewhere, run by make gpu-check.
    if torch.cuda.is_available():
        return
    reason = pytest.mark.skip(reason=f"needs a CUDA device; none here (torch {torch.__version__}, "
                                     f"built with CUDA {torch.version.cuda}); make gpu-check runs it on a GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(reason)
