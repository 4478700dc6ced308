"""Clustering metrics: Hungarian-matched accuracy, NMI, ARI (paper Section 5, [22])."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def _check_labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 1 or y_pred.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shapes {y_true.shape} and {y_pred.shape}")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape[0]} != {y_pred.shape[0]}")
    if y_true.size == 0:
        raise ValueError("labels are empty")
    return y_true, y_pred


def confusion_matrix(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts C[i, j] of points with cluster ``clusters[i]`` and class ``classes[j]``."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    classes, t = np.unique(y_true, return_inverse=True)
    clusters, p = np.unique(y_pred, return_inverse=True)
    counts = np.zeros((clusters.size, classes.size), dtype=np.int64)
    np.add.at(counts, (p, t), 1)
    return counts, clusters, classes


def hungarian_accuracy(y_true, y_pred) -> float:
    """Accuracy under the best one-to-one map from clusters to classes.

    Clusters left without a class (more clusters than classes) count as errors.
    """
    counts, _, _ = confusion_matrix(y_true, y_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / counts.sum())


def cluster_to_class_map(y_true, y_pred) -> dict:
    """The Hungarian map used by :func:`hungarian_accuracy` (cluster id -> class label)."""
    counts, clusters, classes = confusion_matrix(y_true, y_pred)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return {clusters[r].item(): classes[c].item() for r, c in zip(rows, cols)}


def clustering_scores(y_true, y_pred) -> dict[str, float]:
    """Accuracy (Hungarian), NMI, ARI and the number of non-empty clusters."""
    y_true, y_pred = _check_labels(y_true, y_pred)
    return {
        "accuracy": hungarian_accuracy(y_true, y_pred),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
        "n_clusters_nonempty": int(np.unique(y_pred).size),
    }
