"""Atomic writes: an output file appears complete or not at all."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part" + suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp's file is private (0600); the output gets the mode any new file of this user gets
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_json_atomic(path: Path | str, obj) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")


def write_npz_atomic(path: Path | str, **arrays) -> None:
    # np.savez appends ".npz" to names without it, so the temporary name ends in .npz.
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def file_digests(path: Path | str, algorithms: tuple[str, ...], decompress: bool = False) -> list[str]:
    """Hex digests of the file at ``path`` (gunzipped with ``decompress``) for each algorithm, in one read."""
    hashes = [hashlib.new(a) for a in algorithms]
    with (gzip.open if decompress else open)(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            for h in hashes:
                h.update(chunk)
    return [h.hexdigest() for h in hashes]


def file_sha256(path: Path | str) -> str:
    return file_digests(path, ("sha256",))[0]
