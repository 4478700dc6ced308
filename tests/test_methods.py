"""Every registered method on separable data, and reproducible run records."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from cce.experiments import parse_variant, run_options, variant_name
from cce.features import save_features
from cce.methods import METHODS, get_method
from cce.metrics import hungarian_accuracy
from cce.runs import run_clustering
from cce.train import effective_lam


def blobs(seed):
    X, y = make_blobs(300, centers=4, n_features=8, cluster_std=1.0, random_state=seed)
    return X.astype(np.float32), y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_recovers_a_separable_mixture(method, seed):
    X, y = blobs(seed)
    options = {} if method == "kmeans" else {"epochs": 30, "device": "cpu"}
    labels, info = get_method(method).fit(X, 4, seed, options, progress=False)
    assert labels.shape == (300,)
    assert hungarian_accuracy(y, labels) > 0.95, (method, seed)
    assert np.isfinite(info["losses"]["objective"])


@pytest.mark.parametrize("method", ["kmeans", "cce_plus"])
def test_same_seed_same_record(tmp_path, method):
    X, y = blobs(0)
    path = tmp_path / "features.npz"
    save_features(path, X, y, {"dataset": "blobs", "extractor": "raw", "n_classes": 4, "X_sha256": "x"})
    options = {} if method == "kmeans" else {"epochs": 5, "device": "cpu"}
    a, b = (run_clustering(path, method, seed=3, options=options) for _ in range(2))
    volatile = {"wall_time_s", "created"}

    def stable(record):
        info = {k: v for k, v in record["info"].items() if k != "train_time_s"}
        return {**{k: v for k, v in record.items() if k not in volatile}, "info": info}

    assert stable(a) == stable(b)
    if method == "cce_plus":  # another seed, another initialization
        c = run_clustering(path, method, seed=4, options=options)
        assert a["info"]["curves"]["loss"] != c["info"]["curves"]["loss"]
    assert a["options"] == get_method(method).options(options)
    if method == "cce_plus":  # the record holds the options passed, over the method's defaults
        assert (a["options"]["epochs"], a["options"]["device"], a["options"]["lam"]) == (5, "cpu", 100.0)
    else:
        assert (a["options"]["n_init"], a["options"]["max_iter"]) == (1, 300)


def test_unknown_options_and_methods_are_refused():
    with pytest.raises(ValueError, match="no option"):
        get_method("cce_plus").options({"lamda": 1})
    with pytest.raises(KeyError, match="known methods"):
        get_method("kmedoids")


def test_run_options_layering():
    config = {"lam_study": {
        "datasets": ["digits", "mnist"], "training": {"epochs": {"digits": 30, "default": 3}, "weight_decay": 0.02},
        "method_options": {"cce_plus": {"max_iter": 7}}}}
    opts = run_options(config, "lam_study", "digits", "cce_plus-lam0.1-batch")
    assert (opts["epochs"], opts["weight_decay"], opts["max_iter"], opts["lam"], opts["lam_scale"]) == (
        30, 0.02, 7, 0.1, "batch")
    assert run_options(config, "lam_study", "mnist", "cce_plus")["epochs"] == 3
    assert run_options(config, "lam_study", "mnist", "kmeans") == get_method("kmeans").defaults
    assert parse_variant(variant_name("cce_plus", 1000.0, "mean")) == ("cce_plus", {"lam": 1000.0, "lam_scale": "mean"})
    with pytest.raises(ValueError, match="no value for dataset"):
        run_options({"clustering": {"training": {"epochs": {"digits": 3}}}}, "clustering", "mnist", "cce_plus")


def test_lam_scales():
    assert effective_lam(100, "mean", 250) == 100
    assert effective_lam(100, "batch", 250) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        effective_lam(100, "sum", 250)
