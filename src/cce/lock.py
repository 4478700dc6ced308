"""The environment lock: the exact version of every package the repository's own commands install.

``pyproject.toml`` keeps ranges, for people who install the library into an environment of their
own. The repository's commands (``make demo``, ``make test``, ``.ci/run``, ``environment.yml``)
install ``requirements.lock`` instead, so that a clone resolves the same versions on any day: with
ranges alone, a fresh clone once met newer numpy, pandas, scipy and torch releases than the
commit was tested with. ``make lock`` writes a new lock from a fresh resolution of the ranges
(:func:`write_lock`); every run record names the lock it ran under (:func:`lock_provenance`).

Lock format: pip's requirements format, one ``name==version`` per line, and for the CUDA
packages that PyPI's Linux x86_64 torch wheel pulls in (``nvidia-*``, ``cuda-*``, ``triton``) an
environment marker, so the same lock installs on other platforms (where torch comes without them).
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import importlib.metadata
import platform
import re
from pathlib import Path

from .io import file_sha256

__all__ = ["LOCK_NAME", "lock_path", "read_lock", "installed_versions", "lock_mismatches", "lock_provenance",
           "format_lock", "write_lock"]

LOCK_NAME = "requirements.lock"
# Packages never pinned: the installer itself, and this library (installed from the checkout).
_UNPINNED = {"pip", "cce"}
# What PyPI's torch wheel needs on Linux x86_64 only (the CUDA runtime): marked so the lock installs elsewhere.
_LINUX_X86_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
_LINUX_X86 = 'platform_system == "Linux" and platform_machine == "x86_64"'
_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)\s*(?:;\s*(.+))?$")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_path() -> Path:
    """``requirements.lock`` at the top of the checkout this library was imported from (it may not exist:
    a library installed with ``pip install .`` has no lock)."""
    return Path(__file__).resolve().parents[2] / LOCK_NAME


def read_lock(path: Path | str | None = None) -> dict[str, tuple[str, str | None]]:
    """{normalized name: (version, marker or None)} of a lock file; ValueError names a line it cannot read."""
    path = Path(path or lock_path())
    out = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ValueError(f"{path}:{n}: not a 'name==version' line: {raw!r}")
        out[_normal(m.group(1))] = (m.group(2), m.group(3))
    return out


def installed_versions() -> dict[str, str]:
    """{normalized name: version} of every distribution importable in this environment."""
    out = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(_normal(name), dist.version)
    return out


def _applies(marker: str | None) -> bool:
    if not marker:
        return True
    from packaging.markers import Marker

    return Marker(marker).evaluate()


def lock_mismatches(path: Path | str | None = None) -> dict[str, tuple[str, str | None]]:
    """{name: (locked version, installed version or None)} for every locked package that applies to this
    platform and is missing or at another version. A local version label (torch's ``+cu126``) is not a
    difference: a CUDA build of the locked release satisfies the lock."""
    installed = installed_versions()
    out = {}
    for name, (version, marker) in read_lock(path).items():
        if not _applies(marker):
            continue
        have = installed.get(name)
        if have is None or have.split("+", 1)[0] != version.split("+", 1)[0]:
            out[name] = (version, have)
    return out


def lock_provenance() -> dict[str, object] | None:
    """What a run record says of the lock: its file's SHA-256 and whether this environment matches it
    (with the packages that differ). None where the library runs outside a checkout with a lock.
    Computed once per process (it reads every installed package's metadata); callers get a copy."""
    return copy.deepcopy(_lock_provenance())


@functools.lru_cache(maxsize=1)
def _lock_provenance() -> dict[str, object] | None:
    path = lock_path()
    if not path.is_file():
        return None
    try:
        differs = lock_mismatches(path)
    except ValueError as err:
        return {"file": LOCK_NAME, "sha256": file_sha256(path), "matches": False, "error": str(err)}
    return {"file": LOCK_NAME, "sha256": file_sha256(path), "matches": not differs,
            "differs": {k: {"locked": v, "installed": h} for k, (v, h) in sorted(differs.items())}}


def format_lock(versions: dict[str, str], extras: str, python: str | None = None, machine: str | None = None) -> str:
    """The text of a lock for ``versions`` ({name: version}), with a header that says how it was made."""
    python = python or platform.python_version()
    machine = machine or f"{platform.system()} {platform.machine()}"
    today = _dt.date.today().isoformat()
    lines = [
        "# The exact versions that make demo, make test, .ci/run and environment.yml install.",
        f"# Written by `make lock` on {today}: pyproject.toml's ranges with the extras [{extras}],",
        f"# resolved by pip in a fresh venv on Python {python} ({machine}).",
        "# Do not edit by hand: run `make lock`, then `make test` in a fresh clone, and commit both together.",
        "# On a GPU machine with another CUDA build of torch, install that build of the same release first",
        "# (pip's index for it), then this file: torch==X matches X+cuNNN.",
    ]
    for name in sorted(versions, key=_normal):
        if _normal(name) in _UNPINNED:
            continue
        marker = f" ; {_LINUX_X86}" if _LINUX_X86_ONLY.match(_normal(name)) else ""
        lines.append(f"{_normal(name)}=={versions[name]}{marker}")
    return "\n".join(lines) + "\n"


def write_lock(path: Path | str, extras: str = "workflow,test,images") -> Path:
    """Freeze this environment into a lock at ``path`` (atomically); returns the path."""
    from .io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(format_lock(installed_versions(), extras))
    return path
