"""Dataset registry: where each dataset comes from, how it is verified and loaded.

A dataset is prepared once into ``{root}/{name}/`` (``resources/data/{name}``
in the workflow): its source files under ``raw/`` and, written last, a
``manifest.json`` that lists every file with its SHA-256. The manifest is the
only proof of completeness: an interrupted copy, download or extraction never
leaves one, and every file under ``raw/`` gets its final name only after its
checksum matched (temporary file + rename), so a rerun simply retries.

Sources are tried in this order for each file: the file already in ``raw/``
(verified again), an explicit ``local_dir``, the spec's system directories
(Debian's ``dataset-fashion-mnist`` package), then the network. A
``local_dir`` may hold the published files themselves or be a torchvision
``root`` (``MNIST/raw/*.gz``, ``cifar-10-batches-py/...``, ``stl10_binary/...``).

Download URLs are the spec's ``mirrors`` (base URLs, tried in order). They are
overridden by ``prepare(..., mirrors=[base, ...])`` (URL = base + "/" + file
name) or, for every dataset at once, by the environment variable
``CCE_DATA_MIRROR`` (whitespace-separated base URLs; URL =
base + "/{dataset}/{file name}"). Offline, a download fails at the first
connection error and a host that refused once is not asked again; the error
message names the dataset, the files expected and the directory to put them in.

Clustering uses the union of train and test (paper Table 8), ``split="all"``;
``"train"``/``"test"`` give the weakly-supervised splits.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import pickle
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

import numpy as np

from .io import atomic_path, write_json_atomic

MANIFEST = "manifest.json"
SPLITS = ("all", "train", "test")
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
    mirrors: tuple[str, ...] = ()
    # Subdirectories of a local_dir also searched (torchvision's root layout).
    local_subdirs: tuple[str, ...] = ()
    # Where the URLs and checksums were taken from.
    source: str = ""

    @property
    def size(self) -> int:
        return sum(self.split_sizes.values())


# ---------------------------------------------------------------------------
# Readers


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzip-compressed or not, as a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataVerificationError(f"{path}: cannot be decompressed ({err})") from err
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


def _parts(split: str) -> list[str]:
    return ["train", "test"] if split == "all" else [split]


def _load_idx_pair(raw: Path, split: str, prefix: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for part in _parts(split):
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


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR's batches: dicts, lists, strings and numpy arrays, nothing callable."""

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numpy_reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol-2 pickles written by Python 3
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a data file")


def read_cifar_batch(path: Path) -> dict:
    """One CIFAR python batch (a pickled dict; Python 2 strings decoded as latin-1, as torchvision does)."""
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise DataVerificationError(f"{path}: not a CIFAR python batch ({err})") from err


def _load_cifar(raw: Path, split: str, folder: str, batches: dict[str, list[str]], label_key: str):
    images, labels = [], []
    for part in _parts(split):
        for batch in batches[part]:
            entry = read_cifar_batch(raw / folder / batch)
            # Stored as rows of 3072 = 3 planes of 32x32 (R, G, B).
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(entry[label_key], dtype=np.int64))
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _load_cifar10(raw: Path, split: str):
    batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    return _load_cifar(raw, split, "cifar-10-batches-py", batches, "labels")


def _load_cifar100_20(raw: Path, split: str):
    return _load_cifar(raw, split, "cifar-100-python", {"train": ["train"], "test": ["test"]}, "coarse_labels")


def _load_stl10(raw: Path, split: str):
    images, labels = [], []
    for part in _parts(split):
        x = np.fromfile(raw / "stl10_binary" / f"{part}_X.bin", dtype=np.uint8)
        y = np.fromfile(raw / "stl10_binary" / f"{part}_y.bin", dtype=np.uint8)
        if x.size % (3 * 96 * 96) or x.size // (3 * 96 * 96) != y.size:
            raise DataVerificationError(f"{raw / 'stl10_binary'}: {part}_X.bin and {part}_y.bin do not match")
        # Column-major planes: (N, C, W, H) in C order; transpose to (N, H, W, C).
        images.append(x.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1))
        labels.append(y.astype(np.int64) - 1)  # labels are 1..10 on disk
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


# ---------------------------------------------------------------------------
# Registry

DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    DATASETS[spec.name] = spec
    return spec


def _mnist_files(md5: dict[str, str], sha: dict[str, str] | None = None):
    sha = sha or {}
    return tuple(
        SourceFile(name, md5=md5[name], content_sha256=sha.get(name))
        for name in (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        )
    )


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
        name="mnist",
        description="MNIST, 28x28 grey handwritten digits (train 60000 + test 10000)",
        n_classes=10,
        image_shape=(28, 28),
        split_sizes={"train": 60000, "test": 10000},
        loader=_load_mnist_like,
        files=_mnist_files(
            md5={
                "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
            }
        ),
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        local_subdirs=("MNIST/raw",),
        source="torchvision.datasets.MNIST.mirrors and .resources (torchvision 0.29)",
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
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        local_subdirs=("FashionMNIST/raw",),
        how_to_get="apt-get install dataset-fashion-mnist (Debian/Ubuntu) puts them in "
        "/usr/share/datasets/fashion-mnist",
        source="torchvision.datasets.FashionMNIST.mirrors and .resources (torchvision 0.29); "
        "content SHA-256 of the decompressed IDX files",
    )
)


def _members(folder: str, md5: dict[str, str]) -> tuple[SourceFile, ...]:
    return tuple(SourceFile(f"{folder}/{name}", md5=checksum) for name, checksum in md5.items())


register(
    DatasetSpec(
        name="cifar10",
        description="CIFAR-10, 32x32 RGB images of 10 classes (train 50000 + test 10000)",
        n_classes=10,
        image_shape=(32, 32, 3),
        split_sizes={"train": 50000, "test": 10000},
        loader=_load_cifar10,
        files=(
            SourceFile(
                "cifar-10-python.tar.gz",
                md5="c58f30108f718f92721af3b95e74349a",
                members=_members(
                    "cifar-10-batches-py",
                    {
                        "data_batch_1": "c99cafc152244af753f735de768cd75f",
                        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
                        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
                        "data_batch_4": "634d18415352ddfa80567beed471001a",
                        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
                        "test_batch": "40351d587109b95175f43aff81a1287e",
                        "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
                    },
                ),
            ),
        ),
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        source="torchvision.datasets.CIFAR10.url, .tgz_md5, .train_list, .test_list, .meta (torchvision 0.29)",
    )
)

register(
    DatasetSpec(
        name="cifar100_20",
        description="CIFAR-100 with its 20 coarse (superclass) labels from the pickles' coarse_labels "
        "(train 50000 + test 10000)",
        n_classes=20,
        image_shape=(32, 32, 3),
        split_sizes={"train": 50000, "test": 10000},
        loader=_load_cifar100_20,
        files=(
            SourceFile(
                "cifar-100-python.tar.gz",
                md5="eb9058c3a382ffc7106e4002c42a8d85",
                members=_members(
                    "cifar-100-python",
                    {
                        "train": "16019d7e3df5f24257cddd939b257f8d",
                        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
                        "meta": "7973b15100ade9c7d40fb424638fde48",
                    },
                ),
            ),
        ),
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        source="torchvision.datasets.CIFAR100.url, .tgz_md5, .train_list, .test_list, .meta (torchvision 0.29)",
    )
)

register(
    DatasetSpec(
        name="stl10",
        description="STL-10, 96x96 RGB images of 10 classes, labelled train 5000 + test 8000 "
        "(the unlabeled split is not extracted)",
        n_classes=10,
        image_shape=(96, 96, 3),
        split_sizes={"train": 5000, "test": 8000},
        loader=_load_stl10,
        files=(
            SourceFile(
                "stl10_binary.tar.gz",
                md5="91f7769df0f17e558f3565bffb0c7dfb",
                members=_members(
                    "stl10_binary",
                    {
                        "train_X.bin": "918c2871b30a85fa023e0c44e0bee87f",
                        "train_y.bin": "5a34089d4802c674881badbb80307741",
                        "test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
                        "test_y.bin": "36f9794fa4beb8a2c72628de14fa638e",
                    },
                ),
            ),
        ),
        mirrors=("http://ai.stanford.edu/~acoates/stl10/",),
        source="torchvision.datasets.STL10.url, .tgz_md5, .train_list, .test_list (torchvision 0.29)",
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


def dataset_dir(root: Path | str, name: str) -> Path:
    return Path(root) / name


def is_prepared(root: Path | str, name: str) -> bool:
    return (dataset_dir(root, name) / MANIFEST).is_file()


def _expected_files(spec: DatasetSpec) -> str:
    names = []
    for f in spec.files:
        if f.members:
            names.append(f"{f.name} (or its extracted files {', '.join(m.name for m in f.members)})")
        else:
            names.append(f.name)
    return ", ".join(names)


def _missing_message(spec: DatasetSpec, raw: Path, tried: list[str], why: str = "could not be downloaded") -> str:
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


def _check_local_dir(local_dir: Path | str | None, name: str) -> Path | None:
    if local_dir is None:
        return None
    local_dir = Path(local_dir)
    if not local_dir.exists():
        raise DataUnavailableError(f"local_dir {local_dir} for dataset {name!r} does not exist")
    if not local_dir.is_dir():
        raise DataUnavailableError(f"local_dir {local_dir} for dataset {name!r} is not a directory")
    if not os.access(local_dir, os.R_OK | os.X_OK):
        raise DataUnavailableError(f"local_dir {local_dir} for dataset {name!r} is not readable (permission denied)")
    return local_dir


def _mirror_urls(spec: DatasetSpec, mirrors: Iterable[str] | None) -> tuple[list[str], bool]:
    """Base URLs (with a trailing slash) and whether they are an override."""
    if mirrors is not None:
        return [m.rstrip("/") + "/" for m in mirrors], True
    env = os.environ.get(MIRROR_ENV, "").split()
    if env:
        return [m.rstrip("/") + f"/{spec.name}/" for m in env], True
    return list(spec.mirrors), False


class _Fetcher:
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


def prepare(
    name: str,
    root: Path | str,
    local_dir: Path | str | None = None,
    download: bool = True,
    *,
    mirrors: Iterable[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Make dataset ``name`` available and verified under ``{root}/{name}``; return the manifest path.

    ``mirrors``: base URLs replacing the registry's (and ``$CCE_DATA_MIRROR``);
    ``timeout``: seconds per connect/read before a download attempt gives up.
    """
    spec = get_spec(name)
    ddir = dataset_dir(root, name)
    raw = ddir / "raw"
    manifest_path = ddir / MANIFEST
    manifest_path.unlink(missing_ok=True)
    fetcher = _Fetcher(spec, raw, _check_local_dir(local_dir, name), download, mirrors, timeout)

    files: list[dict] = []
    for source in spec.files:
        files += fetcher.archive(source) if source.members else [fetcher.file(source)]

    images, labels = spec.loader(raw, "all")
    if images.shape[0] != spec.size or labels.shape[0] != spec.size:
        raise DataVerificationError(
            f"dataset {name!r}: expected {spec.size} examples, loaded {images.shape[0]} images "
            f"and {labels.shape[0]} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= spec.n_classes):
        raise DataVerificationError(f"dataset {name!r}: labels outside 0..{spec.n_classes - 1}")
    manifest = {
        "dataset": name,
        "description": spec.description,
        "n_examples": int(images.shape[0]),
        "split_sizes": dict(spec.split_sizes),
        "n_classes": spec.n_classes,
        "image_shape": list(images.shape[1:]),
        "source": spec.source,
        "files": files,
    }
    ddir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(manifest_path, manifest)
    return manifest_path


def load(name: str, root: Path | str, split: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W) or (N, H, W, 3) as uint8 and labels (N,) as int64 of a prepared dataset.

    ``split="all"`` is train followed by test (clustering, paper Table 8).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    spec = get_spec(name)
    if spec.files and not is_prepared(root, name):
        raise DataUnavailableError(
            f"dataset {name!r} is not prepared under {dataset_dir(root, name)}; "
            f"run `python -m cce data {name}` (or the workflow's data rule) first"
        )
    if split != "all" and split not in spec.split_sizes:
        raise ValueError(f"dataset {name!r} has no {split!r} split; splits: {', '.join(spec.split_sizes)}")
    return spec.loader(dataset_dir(root, name) / "raw", split)
