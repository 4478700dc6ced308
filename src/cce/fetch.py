"""Verified, atomic transfer of dataset files: checksums, downloads, local copies, archives.

Every file gets its final name only after its checksum matched (temporary file +
rename, :func:`cce.io.atomic_path`), so an interrupted or corrupt transfer never
looks complete and the next run retries it. :class:`Fetcher` tries, for each
file of a :class:`cce.data.DatasetSpec`: the file already there, local
directories, then the mirrors; offline it fails at the first connection error
with a message that names the files expected and where to put them.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .io import atomic_path

MIRROR_ENV = "CCE_DATA_MIRROR"
# Per socket operation (connect, each read), not for the whole transfer: a dead
# network fails within this, a slow but live one keeps going.
DEFAULT_TIMEOUT = 20.0


class DataUnavailableError(RuntimeError):
    """The data is neither on disk nor downloadable; the message says how to get it."""


class DataVerificationError(RuntimeError):
    """A file's content does not match its pinned checksum."""


@dataclass(frozen=True)
class SourceFile:
    """One file of a dataset as published.

    ``md5`` is the checksum of the file as served (torchvision's list);
    ``content_sha256`` is that of its decompressed content, for sources that
    recompress (Debian's Fashion-MNIST .gz files differ in MD5, not in content).
    A file passes verification when either checksum matches. ``url`` overrides
    the URL built from the dataset's mirrors. An archive lists in ``members``
    the files extracted from it (paths under ``raw/``, with their own MD5s).
    """

    name: str
    url: str | None = None
    md5: str | None = None
    content_sha256: str | None = None
    members: tuple["SourceFile", ...] = ()



def _digest(path: Path, algorithm: str, decompress: bool = False) -> str:
    h = hashlib.new(algorithm)
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256(path: Path) -> str:
    return _digest(path, "sha256")


def md5(path: Path) -> str:
    return _digest(path, "md5")


def verify_file(path: Path, source: SourceFile) -> None:
    """Raise :class:`DataVerificationError` unless ``path`` holds ``source``'s content.

    Whether to decompress for ``content_sha256`` follows ``source.name``, so a
    temporary file can be verified before it gets its final name.
    """
    if source.md5 is None and source.content_sha256 is None:
        return
    got = md5(path)
    if got == source.md5:
        return
    if source.content_sha256 is not None:
        try:
            content = _digest(path, "sha256", decompress=source.name.endswith(".gz"))
        except (OSError, EOFError, zlib.error) as err:
            raise DataVerificationError(f"{source.name}: cannot be decompressed ({err})") from err
        if content == source.content_sha256:
            return
    expected = " or ".join(
        s for s in (source.md5 and f"md5 {source.md5}", source.content_sha256 and f"content sha256 {source.content_sha256}") if s
    )
    raise DataVerificationError(
        f"{source.name}: checksum does not match the published file (expected {expected}; got md5 {got})"
    )


def _copy_verified(src: Path, dest: Path, source: SourceFile) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
        verify_file(tmp, source)


def _progress(total: int | None, desc: str):
    from tqdm import tqdm

    # Small files finish before a bar would say anything useful.
    quiet = total is not None and total < (8 << 20)
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr, mininterval=5, disable=quiet)


def download_file(
    url: str, dest: Path, timeout: float = DEFAULT_TIMEOUT, verify: Callable[[Path], None] | None = None
) -> None:
    """Fetch ``url`` into ``dest`` through a temporary file; ``dest`` appears only complete.

    ``verify(tmp)`` runs on the temporary file before the rename; if it raises, ``dest`` never appears.
    """
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            expected = resp.headers.get("Content-Length")
            total = int(expected) if expected is not None else None
            with _progress(total, dest.name) as bar:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
            written = out.tell()
        if total is not None and written != total:
            raise DataUnavailableError(f"transfer stopped after {written} of {total} bytes")
        if verify is not None:
            verify(tmp)


def _expected_files(spec) -> str:
    names = []
    for f in spec.files:
        if f.members:
            names.append(f"{f.name} (or its extracted files {', '.join(m.name for m in f.members)})")
        else:
            names.append(f.name)
    return ", ".join(names)


def _missing_message(spec, raw: Path, tried: list[str], why: str = "could not be downloaded") -> str:
    lines = [
        f"dataset {spec.name!r} is not available: its files are not on disk and {why}.",
        "Files expected: " + _expected_files(spec),
        f"Put them in {raw.resolve()} (or pass a local directory holding them: "
        f"`python -m cce data {spec.name} --local-dir DIR`, config datasets.{spec.name}.local_dir)"
        + (f"; {spec.how_to_get}" if spec.how_to_get else "")
        + ".",
    ]
    if tried:
        lines.append("Tried:\n  " + "\n  ".join(tried))
    return "\n".join(lines)


def _mirror_urls(spec, mirrors: Iterable[str] | None) -> tuple[list[str], bool]:
    """Base URLs (with a trailing slash) and whether they are an override."""
    if mirrors is not None:
        return [m.rstrip("/") + "/" for m in mirrors], True
    env = os.environ.get(MIRROR_ENV, "").split()
    if env:
        return [m.rstrip("/") + f"/{spec.name}/" for m in env], True
    return list(spec.mirrors), False



class Fetcher:
    """Brings each source file into ``raw/``, verified, from the first place that has it."""

    def __init__(self, spec, raw, local_dir, download, mirrors, timeout):
        self.spec, self.raw, self.download, self.timeout = spec, raw, download, timeout
        self.dirs: list[Path] = []
        for base in ([local_dir] if local_dir is not None else []) + [Path(d) for d in spec.system_dirs]:
            self.dirs += [base] + [base / sub for sub in spec.local_subdirs]
        self.bases, self.overridden = _mirror_urls(spec, mirrors)
        self.dead_hosts: set[str] = set()
        self.tried: list[str] = []
        self.bad_checksum = False

    def _existing(self, source: SourceFile) -> bool:
        dest = self.raw / source.name
        if not dest.is_file():
            return False
        try:
            verify_file(dest, source)
            return True
        except DataVerificationError as err:
            self.tried.append(f"removed {dest}: {err}")
            dest.unlink()
            return False

    def _from_dirs(self, source: SourceFile) -> str | None:
        dest = self.raw / source.name
        for d in self.dirs:
            src = d / source.name
            if not src.is_file():
                continue
            try:
                _copy_verified(src, dest, source)
                return str(src)
            except PermissionError as err:
                raise DataUnavailableError(
                    f"dataset {self.spec.name!r}: cannot read {src} ({err.strerror}); fix its permissions"
                ) from err
            except DataVerificationError as err:
                self.bad_checksum = True
                self.tried.append(f"{src}: {err}")
        return None

    def _urls(self, source: SourceFile) -> list[str]:
        if source.url is not None and not self.overridden:
            return [source.url]
        return [base + source.name for base in self.bases]

    def _from_network(self, source: SourceFile) -> str | None:
        if not self.download:
            self.tried.append(f"download of {source.name}: disabled (download=False / --no-download)")
            return None
        for url in self._urls(source):
            host = urllib.parse.urlsplit(url).netloc
            if host in self.dead_hosts:
                self.tried.append(f"{url}: skipped, {host} was unreachable")
                continue
            try:
                download_file(url, self.raw / source.name, self.timeout, lambda tmp: verify_file(tmp, source))
                return url
            except DataVerificationError as err:
                self.bad_checksum = True
                self.tried.append(f"{url}: {err}")
            except urllib.error.HTTPError as err:
                self.tried.append(f"{url}: HTTP {err.code} {err.reason}")
            except urllib.error.URLError as err:
                # No response at all (DNS, refused, connect timeout): offline, do not ask this host again.
                self.dead_hosts.add(host)
                self.tried.append(f"{url}: {err.reason}")
            except DataUnavailableError as err:
                self.tried.append(f"{url}: {err}")
            except (OSError, http.client.HTTPException) as err:
                self.tried.append(f"{url}: {type(err).__name__}: {err}")
        return None

    def _fail(self):
        if self.bad_checksum:
            raise DataVerificationError(_missing_message(self.spec, self.raw, self.tried, "no copy found passed verification"))
        raise DataUnavailableError(_missing_message(self.spec, self.raw, self.tried))

    def file(self, source: SourceFile) -> dict:
        dest = self.raw / source.name
        origin = "raw" if self._existing(source) else (self._from_dirs(source) or self._from_network(source))
        if origin is None:
            self._fail()
        return {"name": source.name, "sha256": sha256(dest), "bytes": dest.stat().st_size, "origin": origin}

    def archive(self, source: SourceFile) -> list[dict]:
        members = source.members
        done = {m.name: "raw" for m in members if self._existing(m)}
        for m in members:
            if m.name not in done:
                origin = self._from_dirs(m)
                if origin is not None:
                    done[m.name] = origin
        if len(done) < len(members):
            record = self.file(source)
            self._extract(source, [m for m in members if m.name not in done])
            done.update({m.name: source.name for m in members if m.name not in done})
            records = [record]
        else:
            records = []
        for m in members:
            path = self.raw / m.name
            records.append({"name": m.name, "sha256": sha256(path), "bytes": path.stat().st_size, "origin": done[m.name]})
        return records

    def _extract(self, source: SourceFile, wanted: list[SourceFile]) -> None:
        """Stream the wanted members out of the archive; each gets its name only once verified."""
        archive = self.raw / source.name
        todo = {m.name: m for m in wanted}
        try:
            with tarfile.open(archive, "r:*") as tar:
                for info in tar:
                    m = todo.get(info.name.removeprefix("./"))
                    if m is None or not info.isfile():
                        continue
                    with atomic_path(self.raw / m.name) as tmp:
                        with tar.extractfile(info) as src, open(tmp, "wb") as out:
                            shutil.copyfileobj(src, out, 1 << 20)
                        verify_file(tmp, m)
                    del todo[m.name]
                    if not todo:
                        break  # the rest of the archive (STL-10's unlabeled split) is not needed
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, DataVerificationError) as err:
            archive.unlink(missing_ok=True)
            raise DataVerificationError(
                f"dataset {self.spec.name!r}: archive {archive} cannot be extracted ({type(err).__name__}: {err}); "
                "it was removed, run again to fetch it anew"
            ) from err
        if todo:
            archive.unlink(missing_ok=True)
            raise DataVerificationError(
                f"dataset {self.spec.name!r}: archive {archive} lacks {', '.join(todo)}; "
                "it was removed, run again to fetch it anew"
            )
