"""Fixed-feature extractors and the feature file format.

A feature file ``results/features/{dataset}/{extractor}.npz`` holds ``X``
(N, D) float32, ``y`` (N,) int64 and ``meta``, a JSON string saying which
extractor, weights and preprocessing made ``X``, the library versions, and a
SHA-256 of ``X`` so a run record can name the exact features it used.

``resnet50``: the paper's "pretrained Resnet-50" features, the 2048-d output
of the global average pool (``fc`` replaced by the identity). Weights default
to ``ResNet50_Weights.IMAGENET1K_V1``, torchvision's original ImageNet weights
(76.1% top-1), which is what ``pretrained=True`` meant when the paper was
written and still maps to; ``IMAGENET1K_V2`` (newer training recipe, 80.9%)
gives different features and is available as an option. Preprocessing:
uint8 / 255, grey repeated to 3 channels, bilinear resize (antialiased) of the
whole image to 224x224, the weights' crop size, then ImageNet mean/std. The
weights' own resize-256-then-center-crop is meant for large photos; on 28-96
pixel images whose object fills the frame the crop would cut 12.5% of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from . import fetch
from .. import data
from ..device import resolve_device
from ..io import write_npz_atomic
from ..provenance import library_versions

EXTRACTORS = ("pixels", "resnet50")
RESNET50_WEIGHTS = "IMAGENET1K_V1"
FEATURE_DIM = {"resnet50": 2048}
# Options that change how fast features are computed, not what they are.
RUNTIME_OPTIONS = ("batch_size", "num_workers", "device", "progress")


class WeightsUnavailableError(data.DataUnavailableError):
    """Pretrained weights are neither cached nor downloadable; the message names the file and where to put it."""


def array_checksum(X: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    h = hashlib.sha256()
    h.update(str(X.dtype).encode())
    h.update(str(X.shape).encode())
    h.update(np.ascontiguousarray(X).tobytes())
    return h.hexdigest()


def pixels(images: np.ndarray, pixel_max: float = 255.0) -> np.ndarray:
    """Raw pixels: (N, ...) -> (N, prod(...)) float32 scaled to [0, 1]."""
    images = np.asarray(images)
    return (images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(pixel_max))


# ---------------------------------------------------------------------------
# ResNet-50


def _weights_enum(weights):
    from torchvision.models import ResNet50_Weights

    if weights is None or isinstance(weights, ResNet50_Weights):
        return weights
    name = str(weights).removeprefix("ResNet50_Weights.")
    if name.lower() in ("none", "random"):
        return None
    try:
        return ResNet50_Weights[name]
    except KeyError:
        known = ", ".join(w.name for w in ResNet50_Weights)
        raise ValueError(f"unknown ResNet-50 weights {weights!r}; known: {known}, or None for random weights") from None


def weights_path(weights) -> Path:
    """Where torchvision's cache keeps ``weights``: ``$TORCH_HOME/hub/checkpoints/<file name of its URL>``."""
    import torch.hub

    return Path(torch.hub.get_dir()).resolve() / "checkpoints" / os.path.basename(_weights_enum(weights).url)


def _check_prefix(path: Path, sha256_prefix: str | None, name: str) -> None:
    if sha256_prefix is not None and not fetch.sha256(path).startswith(sha256_prefix):
        raise fetch.DataVerificationError(f"{name}: SHA-256 does not start with {sha256_prefix} as its file name promises")


def load_checkpoint(path: Path | str, sha256_prefix: str | None = None) -> dict:
    """State dict of a checkpoint file, after checking torchvision's hash prefix; tensors only (weights_only)."""
    import torch

    path = Path(path)
    try:
        _check_prefix(path, sha256_prefix, str(path))
    except fetch.DataVerificationError as err:
        raise fetch.DataVerificationError(f"{err}; delete it and run again") from None
    return torch.load(path, map_location="cpu", weights_only=True)


def resnet50_model(weights=RESNET50_WEIGHTS, download: bool = True, seed: int = 0):
    """torchvision's ResNet-50 in eval mode with ``fc`` = identity (2048-d pooled features).

    ``weights=None`` gives random weights drawn from ``seed`` (global RNG untouched).
    """
    import torch
    import torchvision

    w = _weights_enum(weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.resnet50(weights=None)
    if w is not None:
        import torch.hub

        path = weights_path(w)
        match = torch.hub.HASH_REGEX.search(path.name)  # torchvision names files <arch>-<sha256 prefix>.pth
        prefix = match.group(1) if match else None
        checked = False  # a download is checked before it lands; a cached file when loaded
        if not path.is_file():
            reason = "download disabled"
            if download:
                try:
                    fetch.download_file(w.url, path, verify=lambda tmp: _check_prefix(tmp, prefix, path.name))
                    checked = True
                except Exception as err:  # any failure ends in the one message below
                    reason = f"{type(err).__name__}: {err}"
            if not path.is_file():
                raise WeightsUnavailableError(
                    f"ResNet-50 weights {w} are not cached and could not be downloaded ({reason}).\n"
                    f"Download {w.url}\nand put the file {path.name} in {path.parent} "
                    f"(that is $TORCH_HOME/hub/checkpoints; set TORCH_HOME to use another cache)."
                )
        model.load_state_dict(load_checkpoint(path, None if checked else prefix))
    model.fc = torch.nn.Identity()
    return model.eval()


def preprocess(
    batch: np.ndarray, size: int = 224, pixel_max: float = 255.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
):
    """uint8 (B, H, W) or (B, H, W, 3) -> float32 (B, 3, size, size), normalized, channels_last."""
    import torch
    import torch.nn.functional as F

    batch = np.asarray(batch)
    # torch warns on read-only arrays (np.frombuffer in read_idx); a uint8 copy is cheap.
    x = torch.from_numpy(batch if batch.flags.writeable else batch.copy())
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    x = x.permute(0, 3, 1, 2).float().div_(pixel_max)
    if x.shape[2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if x.shape[1] == 1:  # resize one plane, then repeat it
        x = x.expand(-1, 3, -1, -1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean_t) / std_t).contiguous(memory_format=torch.channels_last)


class _Batches:
    """Map-style dataset whose item i is preprocessed batch i (workers preprocess whole batches)."""

    def __init__(self, images: np.ndarray, batch_size: int, size: int, pixel_max: float):
        self.images, self.batch_size, self.size, self.pixel_max = images, batch_size, size, pixel_max

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, i: int):
        return preprocess(self.images[i * self.batch_size : (i + 1) * self.batch_size], self.size, self.pixel_max)


def default_workers() -> int:
    # One core stays with the forward pass; preprocessing is light.
    return min(4, max(1, (os.cpu_count() or 1) - 1))


@contextlib.contextmanager
def _deterministic_cuda():
    import torch

    b = torch.backends
    saved = (b.cudnn.deterministic, b.cudnn.benchmark, b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)
    # Full float32 (no TF32) and fixed algorithms: the same features on every run of one machine.
    b.cudnn.deterministic, b.cudnn.benchmark, b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = True, False, False, False
    try:
        yield
    finally:
        b.cudnn.deterministic, b.cudnn.benchmark, b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = saved


def _fold_batchnorm(model):
    """The eval-mode model with each BatchNorm folded into the convolution before it.

    The same function up to float rounding (relative difference ~1e-6 on the 2048-d
    features); one pass over each activation less, about 10% faster on a CPU.
    """
    from torch.fx.experimental.optimization import fuse

    return fuse(model.eval())


def resnet50(
    images: np.ndarray,
    *,
    weights=RESNET50_WEIGHTS,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str = "auto",
    image_size: int | None = None,
    progress: bool = True,
    download: bool = True,
    seed: int = 0,
    pixel_max: float = 255.0,
) -> tuple[np.ndarray, dict]:
    """ResNet-50 pooled features (N, 2048) float32 of uint8 images (N, H, W) or (N, H, W, 3)."""
    import torch
    from tqdm import tqdm

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"expected uint8 images (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    w = _weights_enum(weights)
    size = int(image_size or (w.transforms().crop_size[0] if w is not None else 224))
    dev = resolve_device(device)
    workers = default_workers() if num_workers is None else int(num_workers)

    model = _fold_batchnorm(resnet50_model(w, download=download, seed=seed)).to(dev, memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(
        _Batches(images, batch_size, size, pixel_max),
        batch_size=None,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        # Its own generator: iterating a DataLoader otherwise draws a seed from the global RNG.
        generator=torch.Generator().manual_seed(seed),
    )
    out = np.empty((len(images), FEATURE_DIM["resnet50"]), dtype=np.float32)
    start = 0
    bar = tqdm(total=len(images), desc="resnet50 features", unit="img", file=sys.stderr, disable=not progress)
    with _deterministic_cuda(), torch.inference_mode(), bar:
        for x in loader:
            f = model(x.to(dev, non_blocking=True, memory_format=torch.channels_last))
            out[start : start + len(f)] = f.float().cpu().numpy()
            start += len(f)
            bar.update(len(f))
    how = {
        "extractor": "resnet50",
        "weights": f"ResNet50_Weights.{w.name}" if w is not None else None,
        "weights_file": os.path.basename(w.url) if w is not None else None,
        "random_seed": None if w is not None else seed,
        "layer": "global average pool (fc = identity), 2048-d; BatchNorm folded into the convolutions",
        "preprocessing": (
            f"x / {pixel_max:g}; grey repeated to 3 channels; bilinear resize (antialias) to {size}x{size}; "
            "normalize with ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)"
        ),
        "image_size": size,
        "device": str(dev),
        "batch_size": batch_size,
    }
    return out, how


def extract(images: np.ndarray, extractor: str, *, pixel_max: float = 255.0, **options) -> tuple[np.ndarray, dict]:
    """Features (N, D) float32 of uint8 images and a dict describing how they were made.

    ``options`` go to the extractor (``resnet50``: weights, batch_size, num_workers,
    device, image_size, progress, download, seed); ``pixels`` ignores the runtime ones.
    """
    if extractor == "pixels":
        unknown = set(options) - set(RUNTIME_OPTIONS)
        if unknown:
            raise TypeError(f"pixels extractor takes no options {sorted(unknown)}")
        return pixels(images, pixel_max), {"extractor": "pixels", "preprocessing": f"x / {pixel_max:g}"}
    if extractor == "resnet50":
        return resnet50(images, pixel_max=pixel_max, **options)
    raise KeyError(f"unknown extractor {extractor!r}; known extractors: {', '.join(EXTRACTORS)}")


def extract_dataset(dataset: str, root: Path | str, extractor: str, **options) -> tuple[np.ndarray, np.ndarray, dict]:
    """Load a prepared dataset (all splits) and extract its features; returns X, y, meta."""
    spec = data.get_spec(dataset)
    images, labels = data.load(dataset, root, split="all")
    X, how = extract(images, extractor, pixel_max=spec.pixel_max, **options)
    meta = {
        "dataset": dataset,
        **how,
        "n_examples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "n_classes": spec.n_classes,
        "X_sha256": array_checksum(X),
        "versions": library_versions(),
    }
    return X, labels, meta


class FeatureFileError(ValueError):
    """A feature file is missing, damaged or stale; the message names it and the command that rebuilds it."""


def rebuild_hint(path: Path | str) -> str:
    """How to rebuild a feature file; the dataset and extractor are read from its path
    ``.../{dataset}/{extractor}.npz``, the layout the workflow's ``features`` rule writes."""
    path = Path(path)
    dataset, extractor = path.parent.name or "DATASET", path.stem
    return (f"rebuild it with `snakemake --cores all --force {path}` "
            f"or `python -m cce features {dataset} {extractor} --out {path}`")


def save_features(path: Path | str, X: np.ndarray, y: np.ndarray, meta: dict[str, Any]) -> None:
    """Write X (N, D) as float32, y (N,) as int64 and meta (JSON) to ``path`` atomically.

    ``meta["X_sha256"]`` is set to the checksum of the float32 X written when absent; a
    given one that does not match that X is refused (it would make the file unloadable).
    """
    X = np.asarray(X, dtype=np.float32)
    checksum = array_checksum(X)
    if meta.get("X_sha256", checksum) != checksum:
        raise ValueError(f"meta['X_sha256'] {meta['X_sha256']!r} is not the SHA-256 of X ({checksum})")
    write_npz_atomic(path, X=X, y=np.asarray(y, dtype=np.int64),
                     meta=np.array(json.dumps({**meta, "X_sha256": checksum})))


def load_features(path: Path | str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """X (N, D) float32, y (N,) int64 and meta of a feature file, after checking X against
    ``meta["X_sha256"]``.

    A missing, unreadable or truncated file, or one whose X no longer matches its recorded
    checksum (stale: X rewritten without its metadata, or damaged), raises
    :class:`FeatureFileError` naming the file and the command that rebuilds it; a run
    record's ``X_sha256`` thus always describes the X it was computed from.
    """
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: no such feature file; {rebuild_hint(path)}")
    try:
        with np.load(path, allow_pickle=False) as f:
            X, y, meta = f["X"], f["y"], json.loads(str(f["meta"]))
    # np.load and zipfile report damage as any of these (truncated archive, bad CRC, bad
    # header, missing member, not JSON); all mean the same to the user.
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise FeatureFileError(f"{path}: damaged feature file ({type(err).__name__}: {err}); "
                               f"{rebuild_hint(path)}") from err
    expected = meta.get("X_sha256") if isinstance(meta, dict) else None
    if expected is None:
        raise FeatureFileError(f"{path}: no X_sha256 in its metadata, so X cannot be verified; {rebuild_hint(path)}")
    if array_checksum(X) != expected:
        raise FeatureFileError(f"{path}: X does not match the X_sha256 in its metadata (stale or damaged "
                               f"features); {rebuild_hint(path)}")
    return X, y, meta
