"""What made a result: library versions and the git commit of the code."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import numpy as np


def library_versions() -> dict[str, str]:
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
