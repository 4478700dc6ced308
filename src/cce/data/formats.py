"""Readers of the published dataset formats: IDX (MNIST), CIFAR python pickles, STL-10 binary.

Each ``load_*`` takes the dataset's ``raw/`` directory and a split (``"all"`` is
train followed by test) and returns images (N, H, W) or (N, H, W, 3) as uint8 and
labels (N,) as int64. Malformed files raise :class:`cce.data.fetch.DataVerificationError`.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np

from .fetch import DataVerificationError


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


def load_mnist_like(raw: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    return _load_idx_pair(raw, split, {"train": "train", "test": "t10k"})


def load_digits(raw: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_digits

    if split != "all":
        raise ValueError("digits has no train/test split; use split='all'")
    digits = sklearn_digits()
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


def load_cifar10(raw: Path, split: str):
    batches = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    return _load_cifar(raw, split, "cifar-10-batches-py", batches, "labels")


def load_cifar100_20(raw: Path, split: str):
    return _load_cifar(raw, split, "cifar-100-python", {"train": ["train"], "test": ["test"]}, "coarse_labels")


def load_stl10(raw: Path, split: str):
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
