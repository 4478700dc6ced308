"""A run's predictions beside its record (cce.predictions): the file, its checksum in the record, the
confidences, and that the clustering, deep, weak and noisy commands save what their records score."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from cce import data
from cce.data import features
from cce.metrics import clustering_scores
from cce.pipeline.cli import main
from cce.predictions import (
    PredictionsError,
    kmeans_confidence,
    load_predictions,
    make_predictions,
    predictions_path,
    save_predictions,
)
from data_fixtures import prepared_fake_mnist

NET_OPTS = {"epochs": 1, "batch_size": 8, "device": "cpu"}


def test_round_trip_and_the_checksum_depends_on_the_content_only(tmp_path, monkeypatch):
    import time

    p = make_predictions([2, 0, 1], [0.9, 0.5, 0.7], source="all", labels=[1, 0, 1], index=[4, 7, 9])
    a = save_predictions(tmp_path / "a.npz", p)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3600)  # an hour later (zip stamps members with the time)
    b = save_predictions(tmp_path / "b.npz", p)  # same bytes
    assert a["sha256"] == b["sha256"] and a["path"] == str(tmp_path / "a.npz")
    q = load_predictions(a["path"], a["sha256"])
    np.testing.assert_array_equal(q.cluster, [2, 0, 1])
    np.testing.assert_array_equal(q.index, [4, 7, 9])
    np.testing.assert_allclose(q.confidence, [0.9, 0.5, 0.7], rtol=1e-6)
    assert q.source == "all" and q.labels.tolist() == [1, 0, 1]
    assert save_predictions(tmp_path / "c.npz", make_predictions([2, 0, 0], [0.9, 0.5, 0.7], source="all"))[
        "sha256"] != a["sha256"]
    # unknown labels (-1) are no labels, and the index defaults to the rows in order
    r = make_predictions([0, 1], [1.0, 1.0], source="features")
    assert r.labels is None and r.index.tolist() == [0, 1]


def test_missing_damaged_or_other_files_are_refused_with_the_rerun_command(tmp_path):
    saved = save_predictions(tmp_path / "p.npz", make_predictions([0, 1], [1.0, 0.5], source="test"))
    with pytest.raises(PredictionsError, match="no such predictions file.*snakemake --cores all --force"):
        load_predictions(tmp_path / "none.npz")
    with pytest.raises(PredictionsError, match="SHA-256 differs"):
        load_predictions(saved["path"], "0" * 64)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(PredictionsError, match="damaged predictions file"):
        load_predictions(tmp_path / "bad.npz")
    with pytest.raises(PredictionsError, match=r"confidence must have shape \(2,\)"):
        make_predictions([0, 1], [1.0], source="test")
    with pytest.raises(PredictionsError, match="source must be one of"):
        make_predictions([0, 1], [1.0, 1.0], source="train+test")


def test_kmeans_confidence_is_one_at_a_mean_and_zero_half_way():
    X = np.array([[0.0], [2.0], [4.0], [10.0], [12.0], [14.0], [7.0]])
    clusters = np.array([0, 0, 0, 1, 1, 1, 0])
    conf = kmeans_confidence(X, clusters, 2)
    # cluster 0's mean is 13 / 4 = 3.25; cluster 1's 12
    assert conf[3] == pytest.approx(1 - 2 / (10 - 3.25)) and conf[4] == 1.0
    assert conf[6] == pytest.approx(1 - 3.75 / 5)
    assert ((0 <= conf) & (conf <= 1)).all()


def test_fit_predict_gives_the_clusters_of_fit_with_their_softmax_confidence():
    import torch
    from scipy.spatial.distance import cdist

    from cce.methods import get_method
    from cce.pipeline.runs import seed_everything
    from cce.training import fit, fit_predict, predict_logits, train_head

    X = (load_digits().data / 16).astype(np.float32)[:400]
    opts = {"epochs": 2, "device": "cpu"}
    for method in ("cce_plus", "kmeans"):
        spec = get_method(method)
        options = spec.options(opts if method != "kmeans" else {})
        seed_everything(3)
        clusters, confidence, _ = fit_predict(spec, X, 10, 3, options, progress=False)
        seed_everything(3)
        labels, _ = fit(spec, X, 10, 3, options, progress=False)
        np.testing.assert_array_equal(clusters, labels)
        assert ((0 <= confidence) & (confidence <= 1)).all()
        if method == "cce_plus":  # max_k sigma_ik of the same head trained again
            seed_everything(3)
            head, pre, _ = train_head(X, 10, spec, 3, options, progress=False)
            sigma = torch.softmax(predict_logits(head, torch.from_numpy(pre.transform(X))), -1).numpy()
            np.testing.assert_allclose(confidence, sigma.max(1), rtol=1e-6)
            assert (confidence >= 0.1 - 1e-6).all() and confidence.max() < 1
        else:  # 1 - d1 / d2 from all distances to the clusters' means at once (no chunks)
            d = np.sort(cdist(X, np.stack([X[clusters == k].mean(0) for k in range(10)])), axis=1)
            np.testing.assert_allclose(confidence, 1 - d[:, 0] / d[:, 1], atol=1e-5)  # float32 distances


@pytest.fixture
def digits_features(tmp_path):
    d = load_digits()
    X, y = (d.data / 16).astype(np.float32)[:300], d.target[:300]
    path = tmp_path / "features.npz"
    features.save_features(path, X, y, {"dataset": "digits", "extractor": "pixels", "n_classes": 10})
    return path, y


@pytest.mark.parametrize("method", ["cce_plus", "kmeans"])
def test_cluster_command_saves_the_predictions_its_record_scores(tmp_path, digits_features, method):
    path, y = digits_features
    out = tmp_path / "runs" / "seed0.json"
    assert main(["cluster", "--features", str(path), "--method", method, "--seed", "0",
                 "--options", json.dumps({"epochs": 3, "device": "cpu"} if method != "kmeans" else {}),
                 "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["predictions"]["path"] == str(predictions_path(out)) == str(tmp_path / "runs/seed0.predictions.npz")
    p = load_predictions(record["predictions"]["path"], record["predictions"]["sha256"])
    assert p.source == "features" and p.index.tolist() == list(range(300))
    np.testing.assert_array_equal(p.label, y)
    assert clustering_scores(p.label, p.cluster) == record["metrics"]


@pytest.fixture
def mnist_root(tmp_path, monkeypatch):
    return prepared_fake_mnist(tmp_path, monkeypatch, n_train=24, n_test=16, seed=7)


def test_deep_command_saves_the_predictions_of_every_image_it_trained_on(tmp_path, mnist_root):
    out = tmp_path / "deep.json"
    assert main(["deep", "--dataset", "mnist", "--root", str(mnist_root), "--method", "cce_plus", "--seed", "1",
                 "--options", json.dumps({**NET_OPTS, "max_images": 30}), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    p = load_predictions(record["predictions"]["path"], record["predictions"]["sha256"])
    images, labels = data.load("mnist", mnist_root, "all")
    # 30 of the 40 images: which ones, in order, and their labels
    from cce.training.deep import fixed_subset

    subset, subset_labels = fixed_subset(images, labels, 30)
    assert p.source == "all" and p.index.size == 30 and np.all(np.diff(p.index) > 0)
    np.testing.assert_array_equal(images[p.index], subset)
    np.testing.assert_array_equal(p.label, subset_labels)
    assert clustering_scores(p.label, p.cluster) == record["metrics"]
    assert ((p.confidence >= 0.1 - 1e-6) & (p.confidence <= 1)).all()


@pytest.mark.parametrize("command", [["weak", "--method", "cce_plus", "--fraction", "0.5"],
                                     ["noisy", "--loss", "collision", "--eta", "0.4"]])
def test_weak_and_noisy_commands_save_the_predictions_of_the_test_images(tmp_path, mnist_root, command):
    out = tmp_path / "run.json"
    options = {**NET_OPTS, "max_eval_images": 12}
    assert main([command[0], "--dataset", "mnist", "--root", str(mnist_root), "--seed", "0", *command[1:],
                 "--options", json.dumps(options), "--out", str(out),
                 "--predictions", str(tmp_path / "elsewhere.npz")]) == 0
    record = json.loads(out.read_text())
    assert record["predictions"]["path"] == str(tmp_path / "elsewhere.npz")
    p = load_predictions(tmp_path / "elsewhere.npz", record["predictions"]["sha256"])
    images, labels = data.load("mnist", mnist_root, "test")
    assert p.source == "test" and p.index.size == 12
    np.testing.assert_array_equal(p.label, labels[p.index])
    assert float(np.mean(p.cluster == p.label)) == pytest.approx(record["metrics"]["accuracy"])
