"""A run's predictions, kept beside its record: the cluster and confidence of every image it scored.

A record (``seed0.json``) holds a run's metrics; ``seed0.predictions.npz`` beside it holds what they
were computed from, so that a cluster gallery, a confusion matrix or a new metric needs no second
training. The record names the file and its SHA-256; :func:`load_predictions` checks both.

Confidence of an image in its cluster, in [0, 1]: for a method that trains a softmax output (a
linear head or a network), its largest predicted probability max_k sigma_ik; for K-means, which has
none, 1 - d1 / d2 with d1 and d2 the distances to the nearest and second-nearest cluster mean (1 at a
mean, 0 half-way between two).

The file (``numpy.savez``): ``cluster`` (N,) int64, ``confidence`` (N,) float32, ``label`` (N,) int64
(the true class, -1 where unknown; never used to train), ``index`` (N,) int64 (the row of each image
in ``source``), ``source`` (a string: ``features`` for the rows of the run's feature file, or the
split of the dataset the images came from: ``all``, ``train`` or ``test``).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_path, file_sha256

SOURCES = ("features", "all", "train", "test")
SUFFIX = ".predictions.npz"


class PredictionsError(ValueError):
    """A predictions file is missing, damaged or not the one its record names; the message says how to redo it."""


@dataclass(frozen=True)
class Predictions:
    """The predictions of one run on N images; see the module docstring for the fields."""

    cluster: np.ndarray
    confidence: np.ndarray
    label: np.ndarray
    index: np.ndarray
    source: str

    def __post_init__(self):
        n = self.cluster.shape[0]
        for name in ("cluster", "confidence", "label", "index"):
            a = getattr(self, name)
            if a.ndim != 1 or a.shape[0] != n:
                raise PredictionsError(f"predictions: {name} must have shape ({n},), got {a.shape}")
        if self.source not in SOURCES:
            raise PredictionsError(f"predictions: source must be one of {SOURCES}, got {self.source!r}")

    @property
    def labels(self) -> np.ndarray | None:
        """The true classes (N,), or None unless every image has one."""
        return self.label if self.label.size and (self.label >= 0).all() else None


def predictions_path(record_path: Path | str) -> Path:
    """``.../seed0.json`` -> ``.../seed0.predictions.npz``."""
    return Path(record_path).with_suffix(SUFFIX)


def head_confidence(probs: np.ndarray) -> np.ndarray:
    """max_k sigma_ik of predictions (N, K) -> (N,)."""
    return np.asarray(probs).max(axis=1)


def kmeans_confidence(X: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """1 - d_own / d_other of every point (N,): distances to its cluster's mean and to the nearest other
    mean (K-means' centres at convergence); clipped to [0, 1]."""
    X = np.asarray(X, dtype=np.float32)
    clusters = np.asarray(clusters)
    centres = np.stack([X[clusters == k].mean(0) if (clusters == k).any() else np.full(X.shape[1], np.nan)
                        for k in range(n_clusters)])
    conf = np.empty(len(X))
    for s in range(0, len(X), 4096):  # (4096, K) distances at a time: no (N, K, D) array
        Xc, own = X[s:s + 4096], clusters[s:s + 4096]
        d = np.sqrt(np.maximum((Xc ** 2).sum(1)[:, None] - 2 * Xc @ centres.T + (centres ** 2).sum(1)[None], 0))
        d = np.where(np.isnan(d), np.inf, d)
        rows = np.arange(len(Xc))
        d_own = d[rows, own].copy()
        d[rows, own] = np.inf
        d_other = d.min(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            conf[s:s + 4096] = np.where(d_other > 0, 1.0 - d_own / d_other, 0.0)
    return np.clip(np.nan_to_num(conf, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)


def make_predictions(cluster, confidence, *, source: str, labels=None, index=None) -> Predictions:
    """Predictions of N images from clusters (N,) and confidences (N,); ``labels`` (N,) or None (unknown),
    ``index`` (N,) rows in ``source`` (default 0..N-1)."""
    cluster = np.asarray(cluster, dtype=np.int64)
    n = cluster.shape[0]
    return Predictions(
        cluster=cluster,
        confidence=np.asarray(confidence, dtype=np.float32),
        label=np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64),
        index=np.arange(n, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64),
        source=source,
    )


def save_predictions(path: Path | str, p: Predictions) -> dict[str, str]:
    """Write ``p`` to ``path`` (atomically); return what the run's record says of it: path and SHA-256.

    The file's bytes depend on the predictions only (``numpy.savez`` stamps each member with the time),
    so that the same run gives the same checksum.
    """
    arrays = {"cluster": p.cluster, "confidence": p.confidence, "label": p.label, "index": p.index,
              "source": np.array(p.source)}
    with atomic_path(path, suffix=".npz") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, array in arrays.items():
                member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED
                with z.open(member, "w") as f:
                    np.lib.format.write_array(f, array, allow_pickle=False)
    return {"path": str(path), "sha256": file_sha256(Path(path))}


def load_predictions(path: Path | str, sha256: str | None = None) -> Predictions:
    """The predictions at ``path``; with ``sha256`` (from the run's record) the file must have that checksum."""
    path = Path(path)
    redo = f"rerun the run that made it (`snakemake --cores all --force {path}`)"
    if not path.is_file():
        raise PredictionsError(f"{path}: no such predictions file; {redo}")
    if sha256 is not None and file_sha256(path) != sha256:
        raise PredictionsError(f"{path}: not the predictions file its run record names (SHA-256 differs); {redo}")
    try:
        with np.load(path, allow_pickle=False) as f:
            return Predictions(cluster=f["cluster"], confidence=f["confidence"], label=f["label"], index=f["index"],
                               source=str(f["source"]))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        if isinstance(err, PredictionsError):
            raise
        raise PredictionsError(f"{path}: damaged predictions file ({type(err).__name__}: {err}); {redo}") from err
