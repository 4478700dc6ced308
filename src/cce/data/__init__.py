"""Dataset registry: where each dataset comes from, how it is verified and loaded.

The transfer machinery is :mod:`cce.data.fetch`, the file formats :mod:`cce.data.formats`.
Beside them, :mod:`cce.data.features` (fixed features of the prepared images) and
:mod:`cce.data.augment` (random views for the deep loop); this module imports neither.

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

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from . import formats
from .fetch import (
    DEFAULT_TIMEOUT,
    MIRROR_ENV,
    DataUnavailableError,
    DataVerificationError,
    Fetcher,
    SourceFile,
    verify_file,
)
from .formats import read_idx
from ..io import write_json_atomic

__all__ = [
    "DATASETS", "MANIFEST", "MIRROR_ENV", "SPLITS", "DataUnavailableError", "DataVerificationError",
    "DatasetSpec", "SourceFile", "dataset_dir", "get_spec", "is_prepared", "load", "prepare", "read_idx",
    "register", "verify_file",
]

MANIFEST = "manifest.json"
SPLITS = ("all", "train", "test")


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
        loader=formats.load_digits,
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
        loader=formats.load_mnist_like,
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
        loader=formats.load_mnist_like,
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
        loader=formats.load_cifar10,
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
        loader=formats.load_cifar100_20,
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
        loader=formats.load_stl10,
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


# A workflow config's `datasets.{name}: {kind: image_folder, path: DIR}` is a folder of one's own
# images (cce.data.image_folder), not a registry entry: read where it lies, never prepared or downloaded.
IMAGE_FOLDER_KIND = "image_folder"


def image_folders(datasets_config: dict | None) -> dict[str, str]:
    """The config's datasets of kind image_folder: name -> folder (None where the entry lacks one)."""
    return {name: opts.get("path") for name, opts in (datasets_config or {}).items()
            if (opts or {}).get("kind") == IMAGE_FOLDER_KIND}


def dataset_dir(root: Path | str, name: str) -> Path:
    return Path(root) / name


def is_prepared(root: Path | str, name: str) -> bool:
    return (dataset_dir(root, name) / MANIFEST).is_file()


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
    fetcher = Fetcher(spec, raw, _check_local_dir(local_dir, name), download, mirrors, timeout)

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
