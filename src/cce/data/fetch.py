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

from ..io import atomic_path, file_digests, file_sha256

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
    A file passes verification when either checksum matches. An archive lists in ``members``
    the files extracted from it (paths under ``raw/``, with their own MD5s).
    """

    name: str
    md5: str | None = None
    content_sha256: str | None = None
    members: tuple["SourceFile", ...] = ()



def sha256(path: Path) -> str:
    return file_sha256(path)


def verify_file(path: Path, source: SourceFile) -> str:
    """Return the SHA-256 of ``path``; raise :class:`DataVerificationError` unless it holds ``source``'s content.

    MD5 and SHA-256 come from one read. Whether to decompress for ``content_sha256``
    follows ``source.name``, so a temporary file can be verified before it gets its
    final name.
    """
    got, digest = file_digests(path, ("md5", "sha256"))
    if (source.md5 is None and source.content_sha256 is None) or got == source.md5:
        return digest
    if source.content_sha256 is not None:
        try:
            content = file_digests(path, ("sha256",), decompress=source.name.endswith(".gz"))[0]
        except (OSError, EOFError, zlib.error) as err:
            raise DataVerificationError(f"{source.name}: cannot be decompressed ({err})") from err
        if content == source.content_sha256:
            return digest
    expected = " or ".join(
        s for s in (source.md5 and f"md5 {source.md5}", source.content_sha256 and f"content sha256 {source.content_sha256}") if s
    )
    raise DataVerificationError(
        f"{source.name}: checksum does not match the published file (expected {expected}; got md5 {got})"
    )


def _copy_verified(src: Path, dest: Path, source: SourceFile) -> str:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
        return verify_file(tmp, source)


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


def _mirror_urls(spec, mirrors: Iterable[str] | None) -> list[str]:
    """Base URLs, each ending in a slash: ``mirrors``, else ``$CCE_DATA_MIRROR``, else the spec's."""
    if mirrors is not None:
        return [m.rstrip("/") + "/" for m in mirrors]
    env = os.environ.get(MIRROR_ENV, "").split()
    if env:
        return [m.rstrip("/") + f"/{spec.name}/" for m in env]
    return list(spec.mirrors)



class Fetcher:
    """Brings each source file into ``raw/``, verified, from the first place that has it."""

    def __init__(self, spec, raw, local_dir, download, mirrors, timeout):
        self.spec, self.raw, self.download, self.timeout = spec, raw, download, timeout
        self.dirs: list[Path] = []
        # CCE_IGNORE_SYSTEM_DATA=1: only local_dir and the network, as on a machine without the package.
        system = [] if os.environ.get("CCE_IGNORE_SYSTEM_DATA") == "1" else [Path(d) for d in spec.system_dirs]
        for base in ([local_dir] if local_dir is not None else []) + system:
            self.dirs += [base] + [base / sub for sub in spec.local_subdirs]
        self.bases = _mirror_urls(spec, mirrors)
        self.sha256: dict[str, str] = {}  # name under raw/ -> SHA-256, from its verification
        self.dead_hosts: set[str] = set()
        self.tried: list[str] = []
        self.bad_checksum = False

    def _existing(self, source: SourceFile) -> bool:
        dest = self.raw / source.name
        if not dest.is_file():
            return False
        try:
            self.sha256[source.name] = verify_file(dest, source)
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
                self.sha256[source.name] = _copy_verified(src, dest, source)
                return str(src)
            except PermissionError as err:
                raise DataUnavailableError(
                    f"dataset {self.spec.name!r}: cannot read {src} ({err.strerror}); fix its permissions"
                ) from err
            except DataVerificationError as err:
                self.bad_checksum = True
                self.tried.append(f"{src}: {err}")
        return None

    def _from_network(self, source: SourceFile) -> str | None:
        if not self.download:
            self.tried.append(f"download of {source.name}: disabled (download=False / --no-download)")
            return None
        for url in [base + source.name for base in self.bases]:
            host = urllib.parse.urlsplit(url).netloc
            if host in self.dead_hosts:
                self.tried.append(f"{url}: skipped, {host} was unreachable")
                continue
            try:
                download_file(url, self.raw / source.name, self.timeout, lambda tmp: self._verified(tmp, source))
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

    def _verified(self, path: Path, source: SourceFile) -> None:
        self.sha256[source.name] = verify_file(path, source)

    def _record(self, source: SourceFile, origin: str) -> dict:
        path = self.raw / source.name
        return {"name": source.name, "sha256": self.sha256[source.name], "bytes": path.stat().st_size, "origin": origin}

    def file(self, source: SourceFile) -> dict:
        origin = "raw" if self._existing(source) else (self._from_dirs(source) or self._from_network(source))
        if origin is None:
            self._fail()
        return self._record(source, origin)

    def archive(self, source: SourceFile) -> list[dict]:
        """Records of the archive (when in raw/) and of its members, extracting those missing."""
        members = source.members
        done = {m.name: "raw" for m in members if self._existing(m)}
        for m in members:
            if m.name not in done:
                origin = self._from_dirs(m)
                if origin is not None:
                    done[m.name] = origin
        missing = [m for m in members if m.name not in done]
        if missing:
            records = [self.file(source)]
            self._extract(source, missing)
            done.update(dict.fromkeys((m.name for m in missing), source.name))
        elif self._existing(source):  # kept from an earlier run: listed as on that run
            records = [self._record(source, "raw")]
        else:
            records = []
        return records + [self._record(m, done[m.name]) for m in members]

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
                        self._verified(tmp, m)
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
