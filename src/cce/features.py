"""Fixed-feature extractors and the feature file format.

A feature file ``results/features/{dataset}/{extractor}.npz`` holds ``X``
(N, D) float32, ``y`` (N,) int64 and ``meta``, a JSON string saying which
extractor, weights and preprocessing made ``X``, the library versions, and a
SHA-256 of ``X`` so a run record can name the exact features it used.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from . import data
from .io import write_npz_atomic

EXTRACTORS = ("pixels",)


def array_checksum(X: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    h = hashlib.sha256()
    h.update(str(X.dtype).encode())
    h.update(str(X.shape).encode())
    h.update(np.ascontiguousarray(X).tobytes())
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    import scipy
    import sklearn
    import torch

    from . import __version__

    return {
        "cce": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "torch": torch.__version__,
    }


def pixels(images: np.ndarray, pixel_max: float = 255.0) -> np.ndarray:
    """Raw pixels: (N, ...) -> (N, prod(...)) float32 scaled to [0, 1]."""
    images = np.asarray(images)
    return (images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(pixel_max))


def extract(images: np.ndarray, extractor: str, *, pixel_max: float = 255.0, **options) -> tuple[np.ndarray, dict]:
    """Features (N, D) float32 of uint8 images and a dict describing how they were made."""
    if extractor == "pixels":
        return pixels(images, pixel_max), {"extractor": "pixels", "preprocessing": f"x / {pixel_max:g}"}
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


def save_features(path: Path | str, X: np.ndarray, y: np.ndarray, meta: dict[str, Any]) -> None:
    write_npz_atomic(path, X=np.asarray(X, dtype=np.float32), y=np.asarray(y, dtype=np.int64),
                     meta=np.array(json.dumps(meta)))


def load_features(path: Path | str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    with np.load(path, allow_pickle=False) as f:
        return f["X"], f["y"], json.loads(str(f["meta"]))
