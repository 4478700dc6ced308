"""The environment lock (requirements.lock): what the repository's commands install, and the check that
the environment running the tests is the locked one."""

import hashlib
import os
import tomllib

import pytest
from packaging.requirements import Requirement

from cce import lock
from cce.provenance import run_provenance
from conftest import REPO

LOCK = REPO / "requirements.lock"


def test_the_installed_versions_are_the_locked_ones():
    differs = lock.lock_mismatches(LOCK)
    assert not differs, (
        "this environment is not the one requirements.lock describes "
        f"(package: locked, installed): {differs}. Refresh the venv: rm .venv/.installed && make test "
        "(make reinstalls from the lock); after a deliberate upgrade, make a new lock: make lock")


def test_the_lock_satisfies_every_range_of_pyproject():
    """A lock and pyproject.toml that disagree mean a lock made before a dependency change: make lock."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    locked = lock.read_lock(LOCK)
    for text in wanted:
        req = Requirement(text)
        name = lock._normal(req.name)
        assert name in locked, f"{req.name} (pyproject.toml) is not in requirements.lock: run make lock"
        assert req.specifier.contains(locked[name][0], prereleases=True), (text, locked[name])


def test_the_lock_pins_everything_and_marks_the_cuda_runtime():
    text = LOCK.read_text()
    assert "make lock" in text.splitlines()[1]
    entries = lock.read_lock(LOCK)
    assert {"torch", "numpy", "snakemake", "pytest", "timm"} <= set(entries)
    assert "cce" not in entries and "pip" not in entries
    for name, (_, marker) in entries.items():
        cuda = name.startswith(("nvidia-", "cuda-")) or name == "triton"
        assert (marker is not None) == cuda, name


def test_a_different_version_is_reported(tmp_path):
    installed = lock.installed_versions()
    path = tmp_path / "requirements.lock"
    path.write_text(lock.format_lock({"numpy": "0.0.1", "scipy": installed["scipy"],
                                      "not-a-package-here": "1.0", "nvidia-fake": "1.0"}, "test"))
    assert lock.lock_mismatches(path) == {"numpy": ("0.0.1", installed["numpy"]),
                                          "not-a-package-here": ("1.0", None),
                                          **({"nvidia-fake": ("1.0", None)}
                                             if lock._applies(lock._LINUX_X86) else {})}


def test_a_local_build_label_matches_the_release(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "installed_versions", lambda: {"torch": "2.14.1+cu126"})
    path = tmp_path / "requirements.lock"
    path.write_text("torch==2.14.1\n")
    assert lock.lock_mismatches(path) == {}
    path.write_text("torch==2.14.0\n")
    assert lock.lock_mismatches(path) == {"torch": ("2.14.0", "2.14.1+cu126")}


def test_an_unreadable_line_is_named(tmp_path):
    path = tmp_path / "requirements.lock"
    path.write_text("numpy==2.0\nscipy>=1.0\n")
    with pytest.raises(ValueError, match=r"requirements.lock:2: not a 'name==version' line"):
        lock.read_lock(path)


def test_a_run_record_names_the_lock():
    record = run_provenance()
    assert record["lock"]["sha256"] == hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert record["lock"]["matches"] is True and record["lock"]["differs"] == {}


def test_an_atomic_output_gets_the_usual_file_mode(tmp_path):
    """Outputs written through io.atomic_path (the lock, records, tables) are not left private (0600)."""
    from cce.io import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644
