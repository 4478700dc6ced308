"""What made a result: library versions, the git commit of the code, the machine and the time."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import socket
import subprocess
from pathlib import Path

import numpy as np

from .lock import lock_provenance


def library_versions(*extra: str) -> dict[str, str]:
    """Versions of Python, numpy, scipy, scikit-learn, torch, torchvision, this library and the ``extra`` packages."""
    import scipy
    import sklearn
    import torch
    import torchvision

    from . import __version__

    return {
        "cce": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        **{name: importlib.metadata.version(name) for name in extra},
    }


# The layout of a run record (clustering, deep, weak and noisy runs alike); raise on a change
# that old records do not follow.
RECORD_VERSION = 1


def run_record(*, experiment: str, dataset: str | None, method: str, seed: int, metrics: dict, n_clusters: int,
               options: dict, info: dict, wall_time_s: float, config: str | None, packages: tuple[str, ...] = (),
               **fields) -> dict[str, object]:
    """A run record: what ran (experiment, dataset, method, seed, options), what it scored, its
    ``info`` (curves, timings) and ``fields`` (the data it read, ...), the config it came from, and
    :func:`run_provenance` with the versions of ``packages`` beside the usual ones."""
    return {
        "record_version": RECORD_VERSION,
        "experiment": experiment,
        "dataset": dataset,
        "method": method,
        "seed": int(seed),
        "metrics": metrics,
        "n_clusters": int(n_clusters),
        "options": options,
        "info": info,
        "wall_time_s": wall_time_s,
        "device": info.get("device", "cpu"),
        **fields,
        "config": config,
        **run_provenance(*packages),
    }


def run_provenance(*extra: str) -> dict[str, object]:
    """A run record's fields that say what made it: versions (with ``extra`` packages), the environment
    lock it ran under (:func:`cce.lock.lock_provenance`: its SHA-256, and whether the installed versions
    match it), git commit, host, platform and the time (UTC)."""
    return {
        "versions": library_versions(*extra),
        "lock": lock_provenance(),
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def git_commit(path: Path | str | None = None) -> str | None:
    """The commit of the code that made a record, with ``-dirty`` for uncommitted changes."""
    cwd = Path(path or __file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")
