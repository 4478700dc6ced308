import itertools

import numpy as np
import pytest

from cce.metrics import clustering_scores, cluster_to_class_map, hungarian_accuracy


def brute_force_accuracy(y_true, y_pred):
    """Best accuracy over every injective map from clusters to classes (small K only)."""
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    best = 0
    for perm in itertools.permutations(classes, len(clusters)) if len(clusters) <= len(classes) else []:
        mapping = dict(zip(clusters, perm))
        best = max(best, np.mean([mapping[p] == t for t, p in zip(y_true, y_pred)]))
    return best


def test_permuted_labels_score_one():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)
    perm = rng.permutation(5)
    scores = clustering_scores(y, perm[y] + 10)
    assert scores["accuracy"] == 1.0
    assert scores["nmi"] == pytest.approx(1.0)
    assert scores["ari"] == pytest.approx(1.0)
    assert scores["n_clusters_nonempty"] == 5


@pytest.mark.parametrize("seed", range(20))
def test_hungarian_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = rng.integers(2, 6)
    y_true = rng.integers(0, k, 60)
    y_pred = rng.integers(0, rng.integers(1, k + 1), 60)
    assert hungarian_accuracy(y_true, y_pred) == pytest.approx(brute_force_accuracy(y_true, y_pred))


def test_known_confusion():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [1, 1, 0, 0, 0, 0]
    # best map: 1->0 (2 right), 0->1 (2 right); class 2 unmatched
    assert hungarian_accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert cluster_to_class_map(y_true, y_pred) == {0: 1, 1: 0}


def test_more_clusters_than_classes_count_as_errors():
    assert hungarian_accuracy([0, 0, 1, 1], [0, 1, 2, 3]) == pytest.approx(0.5)


@pytest.mark.parametrize("y_true,y_pred", [([0, 1], [0]), ([[0, 1]], [[0, 1]]), ([], [])])
def test_bad_labels(y_true, y_pred):
    with pytest.raises(ValueError):
        hungarian_accuracy(y_true, y_pred)
