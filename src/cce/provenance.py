"""What made a result: library versions, the git commit of the code, the machine and the time."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import socket
import subprocess
from pathlib import Path

import numpy as np


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


def run_provenance(*extra: str) -> dict[str, object]:
    """A run record's fields that say what made it: versions (with ``extra`` packages), git commit,
    host, platform and the time (UTC)."""
    return {
        "versions": library_versions(*extra),
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
