"""Dataset registry: where each dataset comes from, how it is verified and loaded.

A dataset is prepared once into ``{root}/{name}/`` (``resources/data/{name}``
in the workflow): its source files under ``raw/`` and, written last, a
``manifest.json`` that lists every file with its SHA-256. The manifest is the
only proof of completeness: an interrupted copy or download never leaves one.

Sources are tried in this order: files already in ``raw/`` (verified again),
an explicit ``local_dir``, the spec's system directories (Debian's
``dataset-fashion-mnist`` package), then the network. Without any of them the
step stops with a message that says which files to put where.

Clustering uses the union of train and test (paper Table 8), ``split="all"``.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .io import atomic_path, write_json_atomic

MANIFEST = "manifest.json"
SPLITS = ("all", "train", "test")


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
    A file passes verification when either checksum matches.
    """

    name: str
    url: str | None = None
    md5: str | None = None
    content_sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    n_classes: int
    image_shape: tuple[int, ...]
    split_sizes: dict[str, int]
    loader: Callable[[Path, str], tuple[np.ndarray, np.ndarray]]
    files: tuple[SourceFile, ...] = ()
    system_dirs: tuple[str, ...] = ()
    pixel_max: float = 255.0
    how_to_get: str = ""

    @property
    def size(self) -> int:
        return sum(self.split_sizes.values())


# ---------------------------------------------------------------------------
# Readers


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzip-compressed or not, as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataVerificationError(f"{path}: not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise DataVerificationError(f"{path}: unknown IDX type code {data[2]:#x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise DataVerificationError(
            f"{path}: IDX header promises {expected} bytes of data, file holds {len(data) - offset}"
        )
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def _load_idx_pair(raw: Path, split: str, prefix: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    parts = ["train", "test"] if split == "all" else [split]
    images, labels = [], []
    for part in parts:
        images.append(read_idx(raw / f"{prefix[part]}-images-idx3-ubyte.gz"))
        labels.append(read_idx(raw / f"{prefix[part]}-labels-idx1-ubyte.gz"))
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def _load_mnist_like(raw: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    return _load_idx_pair(raw, split, {"train": "train", "test": "t10k"})


def _load_digits(raw: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    if split != "all":
        raise ValueError("digits has no train/test split; use split='all'")
    digits = load_digits()
    return digits.images.astype(np.uint8), digits.target.astype(np.int64)


def _mnist_files(base_url: str, md5: dict[str, str], sha: dict[str, str] | None = None):
    sha = sha or {}
    return tuple(
        SourceFile(name, base_url + name, md5[name], sha.get(name))
        for name in (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        )
    )


# ---------------------------------------------------------------------------
# Registry

DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    DATASETS[spec.name] = spec
    return spec


register(
    DatasetSpec(
        name="digits",
        description="scikit-learn's 8x8 handwritten digits (ships with scikit-learn)",
        n_classes=10,
        image_shape=(8, 8),
        split_sizes={"all": 1797},
        loader=_load_digits,
        pixel_max=16.0,
    )
)

register(
    DatasetSpec(
        name="fashion_mnist",
        description="Fashion-MNIST, 28x28 grey clothing images (train 60000 + test 10000)",
        n_classes=10,
        image_shape=(28, 28),
        split_sizes={"train": 60000, "test": 10000},
        loader=_load_mnist_like,
        files=_mnist_files(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            md5={
                "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
            },
            # Debian's dataset-fashion-mnist recompresses the files: pin the content.
            sha={
                "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            },
        ),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        how_to_get="apt-get install dataset-fashion-mnist (Debian/Ubuntu) puts them in "
        "/usr/share/datasets/fashion-mnist",
    )
)


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise KeyError(f"unknown dataset {name!r}; known datasets: {known}") from None


# ---------------------------------------------------------------------------
# Verification and transfer


def _digest(path: Path, algorithm: str, decompress: bool = False) -> str:
    h = hashlib.new(algorithm)
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256(path: Path) -> str:
    return _digest(path, "sha256")


def verify_file(path: Path, source: SourceFile) -> None:
    """Raise :class:`DataVerificationError` unless ``path`` holds ``source``'s content."""
    if source.md5 is None and source.content_sha256 is None:
        return
    if source.md5 is not None and _digest(path, "md5") == source.md5:
        return
    if source.content_sha256 is not None:
        try:
            content = _digest(path, "sha256", decompress=path.suffix == ".gz")
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise DataVerificationError(f"{path}: cannot be decompressed ({err})") from err
        if content == source.content_sha256:
            return
    raise DataVerificationError(
        f"{path}: checksum does not match the published {source.name} "
        f"(expected md5 {source.md5} or content sha256 {source.content_sha256})"
    )


def _atomic_copy(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def download_file(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Fetch ``url`` into ``dest`` through a temporary file; ``dest`` appears only when complete."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            expected = resp.headers.get("Content-Length")
            shutil.copyfileobj(resp, out)
            written = out.tell()
        if expected is not None and written != int(expected):
            raise DataUnavailableError(f"{url}: transfer stopped after {written} of {expected} bytes")


def dataset_dir(root: Path | str, name: str) -> Path:
    return Path(root) / name


def is_prepared(root: Path | str, name: str) -> bool:
    return (dataset_dir(root, name) / MANIFEST).is_file()


def _missing_message(spec: DatasetSpec, raw: Path, tried: list[str]) -> str:
    lines = [
        f"dataset {spec.name!r} is not available: its files are not on disk and could not be downloaded.",
        "Files expected: " + ", ".join(f.name for f in spec.files),
        f"Put them in {raw} (or set datasets.{spec.name}.local_dir in the config to a directory holding them)"
        + (f"; {spec.how_to_get}" if spec.how_to_get else "")
        + ".",
    ]
    if tried:
        lines.append("Tried: " + "; ".join(tried))
    return "\n".join(lines)


def prepare(
    name: str,
    root: Path | str,
    local_dir: Path | str | None = None,
    download: bool = True,
) -> Path:
    """Make dataset ``name`` available and verified under ``{root}/{name}``; return the manifest path."""
    spec = get_spec(name)
    ddir = dataset_dir(root, name)
    raw = ddir / "raw"
    manifest_path = ddir / MANIFEST
    manifest_path.unlink(missing_ok=True)

    if local_dir is not None:
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise DataUnavailableError(f"local_dir {local_dir} for dataset {name!r} is not a directory")
    candidates = ([local_dir] if local_dir is not None else []) + [Path(d) for d in spec.system_dirs]

    files = []
    for source in spec.files:
        dest = raw / source.name
        tried: list[str] = []
        if dest.exists():
            try:
                verify_file(dest, source)
            except DataVerificationError as err:
                tried.append(f"removed {dest}: {err}")
                dest.unlink()
        for cand in candidates:
            if dest.exists():
                break
            src = cand / source.name
            if src.is_file():
                _atomic_copy(src, dest)
                try:
                    verify_file(dest, source)
                except DataVerificationError:
                    dest.unlink()
                    raise
            else:
                tried.append(f"{src}: not found")
        if not dest.exists() and download and source.url:
            try:
                download_file(source.url, dest)
                verify_file(dest, source)
            except DataVerificationError:
                dest.unlink(missing_ok=True)
                raise
            except (urllib.error.URLError, OSError, DataUnavailableError) as err:
                tried.append(f"download {source.url}: {err}")
        if not dest.exists():
            raise DataUnavailableError(_missing_message(spec, raw, tried))
        files.append({"name": source.name, "sha256": sha256(dest), "bytes": dest.stat().st_size})

    images, labels = spec.loader(raw, "all")
    if images.shape[0] != spec.size or labels.shape[0] != spec.size:
        raise DataVerificationError(
            f"dataset {name!r}: expected {spec.size} examples, loaded {images.shape[0]} images "
            f"and {labels.shape[0]} labels"
        )
    manifest = {
        "dataset": name,
        "description": spec.description,
        "n_examples": int(images.shape[0]),
        "n_classes": spec.n_classes,
        "image_shape": list(images.shape[1:]),
        "files": files,
    }
    ddir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(manifest_path, manifest)
    return manifest_path


def load(name: str, root: Path | str, split: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) or (N, H, W, 3) as uint8 and labels (N,) as int64 of a prepared dataset."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    spec = get_spec(name)
    if spec.files and not is_prepared(root, name):
        raise DataUnavailableError(
            f"dataset {name!r} is not prepared under {dataset_dir(root, name)}; "
            f"run `python -m cce data {name}` (or the workflow's data rule) first"
        )
    return spec.loader(dataset_dir(root, name) / "raw", split)
