"""Fixed-feature extractors and the feature file format.

A feature file ``results/features/{dataset}/{extractor}.npz`` holds ``X``
(N, D) float32, ``y`` (N,) int64 and ``meta``, a JSON string saying which
extractor, weights and preprocessing made ``X``, the library versions, and a
SHA-256 of ``X`` so a run record can name the exact features it used.

``resnet50``: the paper's "pretrained Resnet-50" features, the 2048-d output
of the global average pool (``fc`` replaced by the identity), with the weights
of :mod:`cce.data.backbones` (``IMAGENET1K_V1`` unless told; it says why). Preprocessing:
uint8 / 255, grey repeated to 3 channels, bilinear resize (antialiased) of the
whole image to 224x224, the weights' crop size, then ImageNet mean/std. The
weights' own resize-256-then-center-crop is meant for large photos; on 28-96
pixel images whose object fills the frame the crop would cut 12.5% of it.

``dinov2`` and ``clip``: the image encoders people cluster with today, timm's
models (:mod:`cce.data.backbones` names them and finds their weights): the 384-d
class token after the last norm of DINOv2, CLIP's 512-d image embedding.
The preprocessing is timm's evaluation transform from the model's
``pretrained_cfg`` (input size, interpolation, crop_pct, mean and std): 518
bicubic, no crop, ImageNet mean/std for DINOv2; 224 bicubic after a resize to
248 and a centre crop, CLIP's mean/std for CLIP.

Images from a folder (and timm's extractors on any images) are streamed:
:func:`extract_stream` decodes them one at a time in DataLoader workers, runs the
model on batches on the GPU when present, writes every chunk of finished images
atomically to a parts folder so that an interrupted extraction resumes, and skips
(and reports by path) an image that cannot be decoded.
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

from . import backbones
from .. import data
from ..device import resolve_device
from ..io import write_npz_atomic
from ..provenance import library_versions

EXTRACTORS = ("pixels", "resnet50", "dinov2", "clip")
FEATURE_DIM = {"resnet50": 2048, "dinov2": 384, "clip": 512}
# Options that change how fast features are computed, not what they are.
RUNTIME_OPTIONS = ("batch_size", "num_workers", "device", "progress")


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


def _resnet50_identity(w, seed: int) -> dict:
    """What a ResNet-50 feature file records of the network: weights (or the seed of a random one) and layer."""
    return {
        "extractor": "resnet50",
        "weights": f"ResNet50_Weights.{w.name}" if w is not None else None,
        "weights_file": os.path.basename(w.url) if w is not None else None,
        "random_seed": None if w is not None else seed,
        "layer": "global average pool (fc = identity), 2048-d; BatchNorm folded into the convolutions",
    }


def resnet50(
    images: np.ndarray,
    *,
    weights=backbones.RESNET50_WEIGHTS,
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
    w = backbones._weights_enum(weights)
    size = int(image_size or (w.transforms().crop_size[0] if w is not None else 224))
    dev = resolve_device(device)
    workers = default_workers() if num_workers is None else int(num_workers)

    model = _fold_batchnorm(backbones.resnet50_model(w, download=download, seed=seed))
    model = model.to(dev, memory_format=torch.channels_last)
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
        **_resnet50_identity(w, seed),
        "preprocessing": (
            f"x / {pixel_max:g}; grey repeated to 3 channels; bilinear resize (antialias) to {size}x{size}; "
            "normalize with ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)"
        ),
        "image_size": size,
        "device": str(dev),
        "batch_size": batch_size,
    }
    return out, how


# ---------------------------------------------------------------------------
# Streaming extraction: images one at a time, batches on the device, resumable chunks


class _Encoder:
    """transform: PIL image -> tensor (a DataLoader worker runs it); forward: batch (B, ...) -> (B, D)."""

    def __init__(self, transform, forward, how: dict):
        self.transform, self.forward, self.how = transform, forward, how


_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _first_image(source):
    from .image_folder import ImageReadError

    for i in range(len(source)):
        try:
            return source.load(i)
        except ImageReadError:
            continue
    raise data.DataUnavailableError("no image could be read (every file is damaged or unreadable)")


def _pixels_encoder(source, *, image_size: int | None = None, mode: str | None = None, device=None):
    """Raw pixels of images that may differ in size: every image in one mode and size, then (N, H*W*C) / 255.

    By default the first readable image's mode (grey or RGB) and size, at most 64x64 (a larger first
    image sets 64x64): raw pixels are the baseline for small images (Fashion-MNIST's 28x28 as PNGs give
    exactly the registry's pixel features).
    """
    import torch
    from PIL import Image

    first = _first_image(source)
    mode = mode or ("L" if first.mode in _GREY_MODES else "RGB")
    if mode not in ("L", "RGB"):
        raise ValueError(f"pixels mode must be 'L' (grey) or 'RGB', got {mode!r}")
    w, h = first.size
    size = (int(image_size), int(image_size)) if image_size else ((w, h) if max(w, h) <= 64 else (64, 64))

    def transform(img):
        img = img.convert(mode)
        if img.size != size:
            img = img.resize(size, Image.BILINEAR)
        return torch.from_numpy(np.array(img, dtype=np.uint8))

    how = {"extractor": "pixels", "mode": mode, "image_size": [size[1], size[0]],
           "preprocessing": f"mode {mode}; bilinear resize to {size[0]}x{size[1]} where different; x / 255"}
    return _Encoder(transform, lambda x: x.reshape(x.shape[0], -1).float().div_(255.0), how)


def _resnet50_encoder(*, weights=backbones.RESNET50_WEIGHTS, image_size: int | None = None, download: bool = True,
                      seed: int = 0, device=None):
    """ResNet-50 on images of any size: RGB, shorter side resized to the crop size (bilinear), centre crop
    (nothing cut from a square image: as :func:`resnet50` does on arrays), ImageNet mean/std."""
    import torch
    from torchvision.transforms import v2 as T

    w = backbones._weights_enum(weights)
    size = int(image_size or (w.transforms().crop_size[0] if w is not None else 224))
    transform = T.Compose([T.PILToTensor(), T.Resize(size, antialias=True), T.CenterCrop(size),
                           T.ToDtype(torch.float32, scale=True),
                           T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    net = _fold_batchnorm(backbones.resnet50_model(w, download=download, seed=seed)).to(device)
    how = {
        **_resnet50_identity(w, seed),
        "preprocessing": (f"RGB (grey repeated); bilinear resize (antialias) of the shorter side to {size}, centre "
                          f"crop {size}x{size}; normalize with ImageNet mean (0.485, 0.456, 0.406) and std "
                          "(0.229, 0.224, 0.225)"),
        "image_size": size,
    }
    return _Encoder(lambda img: transform(img.convert("RGB")), net, how)


def _timm_encoder(extractor: str, *, model: str | None = None, pretrained: bool = True, download: bool = True,
                  image_size: int | None = None, seed: int = 0, weights_file=None, device=None):
    timm = backbones.import_timm()
    net, config, source = backbones.timm_model(extractor, model=model, pretrained=pretrained, download=download,
                                               image_size=image_size, seed=seed, weights_file=weights_file)
    transform = timm.data.create_transform(**config, is_training=False)
    size = config["input_size"][-1]
    name = backbones.timm_model_name(extractor, model)
    how = {
        "extractor": extractor,
        "model": name,
        "weights": f"timm {name} ({backbones._timm_hub_id(name)})" if pretrained else None,
        "weights_source": source,
        "random_seed": None if pretrained else seed,
        "layer": "the model's output: " + ("DINOv2's class token after the last norm" if extractor == "dinov2" else
                                           "CLIP's image embedding" if extractor == "clip" else "pooled features"),
        "preprocessing": (f"RGB (grey repeated); timm's eval transform of the model's pretrained_cfg: resize the "
                          f"shorter side to {int(size / config['crop_pct'])} ({config['interpolation']}), centre crop "
                          f"{size}x{size}, normalize with mean {tuple(round(m, 5) for m in config['mean'])} and std "
                          f"{tuple(round(s, 5) for s in config['std'])}"),
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
        "image_size": size,
    }
    return _Encoder(lambda img: transform(img.convert("RGB")), net.to(device), how)


def make_encoder(source, extractor: str, device, **options) -> _Encoder:
    """The encoder of ``extractor`` (options: pixels: image_size, mode; resnet50: weights, image_size,
    download, seed; dinov2/clip: model, pretrained, image_size, download, seed, weights_file)."""
    if extractor == "pixels":
        return _pixels_encoder(source, device=device, **options)
    if extractor == "resnet50":
        return _resnet50_encoder(device=device, **options)
    if extractor in backbones.TIMM_MODELS:
        return _timm_encoder(extractor, device=device, **options)
    raise KeyError(f"unknown extractor {extractor!r}; known extractors: {', '.join(EXTRACTORS)}")


class _Decoded:
    """Map-style dataset: item j is (index, transformed image or None, error or None)."""

    def __init__(self, source, indices, transform):
        self.source, self.indices, self.transform = source, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        from .image_folder import ImageReadError

        i = int(self.indices[j])
        try:
            return i, self.transform(self.source.load(i)), None
        except ImageReadError as err:
            return i, None, err.reason
        except Exception as err:  # decoded, but the transform refused it (an odd mode, ...): skip it too
            return i, None, f"{type(err).__name__}: {err}"


def _collate(items):
    import torch

    ok = [(i, x) for i, x, _ in items if x is not None]
    failed = [(i, err) for i, x, err in items if x is None]
    batch = torch.stack([x for _, x in ok]) if ok else None
    return [i for i, _ in ok], batch, failed


class _Parts:
    """The finished chunks of an extraction: ``{dir}/chunk_{c:06d}.npz`` (X, index, failures) written
    atomically, and ``identity.json`` (source, extractor, settings): chunks of another identity are
    deleted, never mixed in."""

    def __init__(self, directory: Path | str | None, identity: dict | None):
        self.dir = Path(directory) if directory is not None else None
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        ident = self.dir / "identity.json"
        try:
            same = json.loads(ident.read_text()) == identity
        except (OSError, ValueError):
            same = False
        if not same:
            for old in self.dir.glob("chunk_*.npz"):
                old.unlink()
            from ..io import write_json_atomic

            write_json_atomic(ident, identity)

    def _path(self, c: int) -> Path:
        return self.dir / f"chunk_{c:06d}.npz"

    def load(self, c: int):
        if self.dir is None or not self._path(c).is_file():
            return None
        try:
            with np.load(self._path(c), allow_pickle=False) as f:
                return f["X"], f["index"], [tuple(x) for x in json.loads(str(f["failures"]))]
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error):
            return None  # damaged (a disk that filled up): computed again

    def save(self, c: int, X: np.ndarray, index: np.ndarray, failures: list) -> None:
        if self.dir is not None:
            write_npz_atomic(self._path(c), X=X, index=index, failures=np.array(json.dumps(failures)))


def extract_stream(
    source,
    extractor: str,
    *,
    parts_dir: Path | str | None = None,
    chunk_size: int = 2048,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str = "auto",
    progress: bool = True,
    **options,
) -> tuple[np.ndarray, np.ndarray, list[dict], dict]:
    """Features of every readable image of ``source`` (:class:`cce.data.image_folder.FolderImages` or
    ``ArrayImages``), streamed: X (n, D) float32, the source indices (n,) of its rows, the skipped
    images ``[{"index", "path", "error"}]`` and how X was made.

    Only one chunk of ``chunk_size`` images is decoded at a time; with ``parts_dir`` every finished
    chunk is kept there and a rerun with the same source and settings starts after the last one.
    """
    import torch
    from tqdm import tqdm

    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}")
    dev = resolve_device(device)
    workers = default_workers() if num_workers is None else int(num_workers)
    encoder = make_encoder(source, extractor, dev, **options)
    # the source's fingerprint hashes every image of an array: only a resumable extraction needs it
    identity = None if parts_dir is None else {"source": source.fingerprint(), "n_images": len(source),
                                               "chunk_size": chunk_size, "how": encoder.how, "cce": _cce_version()}
    parts = _Parts(parts_dir, identity)
    chunks, indices, failures = [], [], []
    n_chunks = -(-len(source) // chunk_size)
    bar = tqdm(total=len(source), desc=f"{extractor} features", unit="img", file=sys.stderr, disable=not progress)
    with _deterministic_cuda(), torch.inference_mode(), bar:
        for c in range(n_chunks):
            done = parts.load(c)
            if done is None:
                todo = np.arange(c * chunk_size, min((c + 1) * chunk_size, len(source)))
                done = _extract_chunk(source, todo, encoder, dev, batch_size, workers, bar)
                parts.save(c, *done)
            else:
                bar.update(len(done[1]) + len(done[2]))
            chunks.append(done[0])
            indices.append(done[1])
            failures += done[2]
    X = np.concatenate(chunks) if chunks else np.empty((0, 0), np.float32)
    kept = np.concatenate(indices).astype(np.int64) if indices else np.empty(0, np.int64)
    skipped = [{"index": int(i), "path": source.name(int(i)), "error": err} for i, err in failures]
    how = {**encoder.how, "device": str(dev), "batch_size": batch_size}
    return X, kept, skipped, how


def _extract_chunk(source, todo, encoder, dev, batch_size, workers, bar):
    import torch

    loader = torch.utils.data.DataLoader(
        _Decoded(source, todo, encoder.transform), batch_size=batch_size, num_workers=workers,
        collate_fn=_collate, pin_memory=dev.type == "cuda")
    rows, index, failed = [], [], []
    for idx, x, bad in loader:
        for i, err in bad:
            bar.write(f"skipped {source.name(i)}: {err}", file=sys.stderr)
        failed += [(int(i), err) for i, err in bad]
        if x is not None:
            rows.append(encoder.forward(x.to(dev, non_blocking=True)).float().cpu().numpy())
            index += idx
        bar.update(len(idx) + len(bad))
    dim = rows[0].shape[1] if rows else 0
    X = np.concatenate(rows) if rows else np.empty((0, dim), np.float32)
    return X.astype(np.float32, copy=False), np.asarray(index, dtype=np.int64), failed


def discard_parts(parts_dir: Path | str) -> None:
    """Delete the chunks of a finished extraction (after its feature file is written)."""
    parts_dir = Path(parts_dir)
    for path in [*parts_dir.glob("chunk_*.npz"), parts_dir / "identity.json"]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        parts_dir.rmdir()


def _cce_version() -> str:
    from .. import __version__

    return __version__


def extract_folder(folder, extractor: str, *, name: str | None = None, parts_dir: Path | str | None = None,
                   **options) -> tuple[np.ndarray, np.ndarray, dict]:
    """Features of the images of an :class:`cce.data.image_folder.ImageFolder`: X, y (-1 without labels)
    and meta, as :func:`save_features` writes them; meta names every row's file (``paths``, relative to
    ``source.root``) and every skipped one (``skipped``, with the error)."""
    from .image_folder import FolderImages

    X, kept, skipped, how = extract_stream(FolderImages(folder), extractor, parts_dir=parts_dir, **options)
    if not len(kept):
        raise data.DataUnavailableError(f"{folder.root}: none of its {len(folder)} images could be read")
    labelled = folder.labelled
    meta = {
        "dataset": name or folder.root.name,
        **how,
        "source": {"kind": "image_folder", "root": str(folder.root), "n_files": len(folder),
                   "files_sha256": folder.fingerprint()},
        "classes": list(folder.classes) if labelled else [],
        "paths": [folder.paths[i] for i in kept],
        "skipped": skipped,
        "n_examples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "n_classes": len(folder.classes) if labelled else None,
        "X_sha256": array_checksum(X),
        "versions": library_versions(*(("timm",) if extractor in backbones.TIMM_MODELS else ())),
    }
    y = folder.labels[kept] if labelled else np.full(len(kept), -1, dtype=np.int64)
    return X, y, meta


def extract(images: np.ndarray, extractor: str, *, pixel_max: float = 255.0, **options) -> tuple[np.ndarray, dict]:
    """Features (N, D) float32 of uint8 images and a dict describing how they were made.

    ``options`` go to the extractor (``resnet50``: weights, batch_size, num_workers,
    device, image_size, progress, download, seed; ``dinov2``, ``clip``: model, pretrained,
    image_size, download, seed, weights_file and the runtime ones); ``pixels`` ignores the
    runtime ones.
    """
    if extractor == "pixels":
        unknown = set(options) - set(RUNTIME_OPTIONS)
        if unknown:
            raise TypeError(f"pixels extractor takes no options {sorted(unknown)}")
        return pixels(images, pixel_max), {"extractor": "pixels", "preprocessing": f"x / {pixel_max:g}"}
    if extractor == "resnet50":
        return resnet50(images, pixel_max=pixel_max, **options)
    if extractor in backbones.TIMM_MODELS:
        from .image_folder import ArrayImages

        X, _, skipped, how = extract_stream(ArrayImages(images, pixel_max), extractor, **options)
        if skipped:  # arrays always decode; a failure here is a bug, not a damaged file
            raise RuntimeError(f"{len(skipped)} images failed: {skipped[0]['error']}")
        return X, how
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
        "versions": library_versions(*(("timm",) if extractor in backbones.TIMM_MODELS else ())),
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


def _read_features(path: Path | str, arrays: tuple[str, ...]) -> tuple:
    """The members ``arrays`` of a feature file and its meta (unverified), or FeatureFileError."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: no such feature file; {rebuild_hint(path)}")
    try:
        with np.load(path, allow_pickle=False) as f:  # members are read on access: only those asked for
            return (*(f[name] for name in arrays), json.loads(str(f["meta"])))
    # np.load and zipfile report damage as any of these (truncated archive, bad CRC, bad
    # header, missing member, not JSON); all mean the same to the user.
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        raise FeatureFileError(f"{path}: damaged feature file ({type(err).__name__}: {err}); "
                               f"{rebuild_hint(path)}") from err


def load_features_meta(path: Path | str) -> dict[str, Any]:
    """The meta of a feature file (extractor, source, image paths), without reading or checking X."""
    return _read_features(path, ())[0]


def load_features(path: Path | str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """X (N, D) float32, y (N,) int64 and meta of a feature file, after checking X against
    ``meta["X_sha256"]``.

    A missing, unreadable or truncated file, or one whose X no longer matches its recorded
    checksum (stale: X rewritten without its metadata, or damaged), raises
    :class:`FeatureFileError` naming the file and the command that rebuilds it; a run
    record's ``X_sha256`` thus always describes the X it was computed from.
    """
    X, y, meta = _read_features(path, ("X", "y"))
    expected = meta.get("X_sha256") if isinstance(meta, dict) else None
    if expected is None:
        raise FeatureFileError(f"{path}: no X_sha256 in its metadata, so X cannot be verified; {rebuild_hint(path)}")
    if array_checksum(X) != expected:
        raise FeatureFileError(f"{path}: X does not match the X_sha256 in its metadata (stale or damaged "
                               f"features); {rebuild_hint(path)}")
    return X, y, meta
