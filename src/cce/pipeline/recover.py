"""Recovering a workflow directory after an interrupted run (``make demo`` calls this first).

A Snakemake that is stopped by SIGTERM or Ctrl-C finishes its jobs and removes its lock. One whose
terminal is closed (SIGHUP) or that is killed leaves ``.snakemake/locks/`` behind, and its running
jobs go on as orphans; the next run then stops at once with ``LockException`` and a pointer to
``--unlock``, a flag of a command the user never typed. When no Snakemake process runs in the
directory any more, the lock is stale: :func:`recover` stops the orphaned jobs of the dead run
(their results are recomputed anyway) and removes the lock, and the next Snakemake run
(``rerun-incomplete`` in the workflow profile) reruns the jobs the interruption left incomplete.
Where a Snakemake process still runs in the directory, nothing is touched.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Recovery", "AnotherRunActive", "recover", "processes_in"]

# A job's command line holds one of these (shell rules call `python -m cce ...`, notebooks papermill).
_JOB_MARKERS = ("-m cce", "cce.pipeline", "papermill")


class AnotherRunActive(RuntimeError):
    """A Snakemake process still runs in the directory: its lock is not stale."""


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` did: the lock files it removed and the orphaned jobs it stopped (PIDs)."""

    removed_locks: tuple[str, ...]
    stopped_jobs: tuple[int, ...]

    def message(self) -> str:
        if not self.removed_locks and not self.stopped_jobs:
            return ""
        parts = ["An earlier run in this directory was interrupted (no Snakemake process runs here now):"]
        if self.stopped_jobs:
            parts.append(f"stopped {len(self.stopped_jobs)} job(s) it left running (PID "
                         f"{', '.join(map(str, self.stopped_jobs))});")
        if self.removed_locks:
            parts.append("removed its stale lock (.snakemake/locks);")
        parts.append("the jobs it left incomplete run again now.")
        return " ".join(parts)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).resolve()
    except OSError:
        return None


def processes_in(workdir: Path | str) -> dict[int, str]:
    """{pid: command line} of the processes (other than this one) whose working directory is ``workdir``.

    Reads /proc; where there is none (not Linux) it raises OSError, and the caller leaves the lock alone.
    """
    if not Path("/proc/self/cmdline").exists():
        raise OSError("no /proc on this system: cannot tell whether another Snakemake runs here")
    workdir = Path(workdir).resolve()
    me = {os.getpid(), os.getppid()}
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in me:
            continue
        pid = int(entry.name)
        if _cwd(pid) == workdir:
            cmd = _cmdline(pid)
            if cmd:
                out[pid] = cmd
    return out


def _is_snakemake(cmd: str) -> bool:
    first = cmd.split()
    return any(Path(w).name == "snakemake" for w in first[:3]) or "-m snakemake" in cmd


def _stop(pids: list[int], grace_s: float = 10.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and _state(p) != "Z"]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def recover(workdir: Path | str = ".") -> Recovery:
    """Clear what an interrupted Snakemake run left in ``workdir``; raise :class:`AnotherRunActive` where
    a Snakemake process still runs there. Nothing to clear: an empty :class:`Recovery`."""
    workdir = Path(workdir).resolve()
    locks = sorted(p for p in (workdir / ".snakemake" / "locks").glob("*") if p.is_file())
    if not locks:
        return Recovery((), ())
    procs = processes_in(workdir)
    active = {pid: cmd for pid, cmd in procs.items() if _is_snakemake(cmd)}
    if active:
        pid, cmd = next(iter(active.items()))
        raise AnotherRunActive(
            f"another Snakemake run is active in {workdir} (PID {pid}: {cmd[:120]}). Wait for it to finish, "
            f"or stop it (kill -TERM {pid}: it finishes its running jobs and removes its lock), then run again.")
    orphans = sorted(pid for pid, cmd in procs.items() if any(m in cmd for m in _JOB_MARKERS))
    _stop(orphans)
    for lock in locks:
        lock.unlink(missing_ok=True)
    return Recovery(tuple(str(p.relative_to(workdir)) for p in locks), tuple(orphans))
