"""Tests of cce.SelfLabelingClassifier (src/cce/estimator.py)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.utils import check_random_state
from sklearn.utils.estimator_checks import parametrize_with_checks

import cce
from cce.estimator import EXPECTED_FAILED_CHECKS, SelfLabelingClassifier
from cce.methods import METHODS
from cce.metrics import hungarian_accuracy
from cce.training import train_head

HEAD_METHODS = ["mi_gd", "mi_adm", "sela", "cce", "cce_plus"]

# The check suite fits ~35 times per estimator on tiny data. With the defaults (50 epochs;
# cce_plus: SQUAREM-accelerated EM, up to 200 iterations per batch, tol 1e-6) one cce_plus
# fit costs seconds (torch dispatch overhead of the per-batch y-solvers, not the data),
# minutes for the suite; so the suite runs every method with a smaller budget. The
# defaults pass it too (same checks, same outcomes; measured once, see the report).
_QUICK = {
    "mi_gd": {},
    "mi_adm": {"max_iter": 10},
    "sela": {"n_iter": 100},
    "cce": {"max_iter": 10},
    "cce_plus": {"max_iter": 10},
}


def _quick(method):
    return SelfLabelingClassifier(method=method, epochs=10, method_options=_QUICK[method] or None)


@parametrize_with_checks([_quick(m) for m in HEAD_METHODS],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_check_estimator(estimator, check):
    check(estimator)


# ----------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(120, centers=3, n_features=4, random_state=0)
    return X, y


def _fast(**kw):
    # mi_gd has no y-solver: a fit costs ~50 ms, for the API tests below.
    return SelfLabelingClassifier(**{"n_clusters": 3, "method": "mi_gd", **kw})


# ----------------------------------------------------------------------------
# the checks of the suite that set n_clusters=1 (refused), redone with n_clusters=2
# ----------------------------------------------------------------------------
def test_one_sample_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="n_samples=1 should be >= n_clusters=2"):
        SelfLabelingClassifier(n_clusters=2).fit(np.ones((1, 3)))


@pytest.mark.parametrize("method", HEAD_METHODS)
def test_one_feature_fits(method):
    X = np.r_[np.random.RandomState(0).normal(-5, 1, 20), np.random.RandomState(1).normal(5, 1, 20)][:, None]
    clf = _quick(method).set_params(n_clusters=2, random_state=0).fit(X)
    assert clf.coef_.shape == (2, 1)
    assert hungarian_accuracy(np.repeat([0, 1], 20), clf.labels_) == 1.0, method


@pytest.mark.parametrize("method", HEAD_METHODS)
def test_predict_refuses_1d_input(blobs, method):
    X, _ = blobs
    clf = _quick(method).set_params(n_clusters=2, random_state=0).fit(X)
    for predict in (clf.predict, clf.predict_proba, clf.decision_function):
        with pytest.raises(ValueError, match="Expected 2D array"):
            predict(X[0])


@pytest.mark.parametrize("method", HEAD_METHODS)
@pytest.mark.parametrize("n_clusters", [2, 3])
def test_methods_invariant_to_subsets_and_order(blobs, n_clusters, method):
    X, _ = blobs
    clf = _quick(method).set_params(n_clusters=n_clusters, random_state=0).fit(X)
    perm = np.random.RandomState(0).permutation(len(X))
    for name in ("predict", "predict_proba", "decision_function"):
        full = getattr(clf, name)(X)
        np.testing.assert_allclose(getattr(clf, name)(X[perm]), full[perm], rtol=1e-12, atol=1e-12)
        for batch in np.array_split(np.arange(len(X)), 7):
            np.testing.assert_allclose(getattr(clf, name)(X[batch]), full[batch], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", HEAD_METHODS)
def test_fit_adds_only_trailing_underscore_attributes_and_keeps_params(blobs, method):
    X, _ = blobs
    opts = dict(_QUICK[method])
    clf = SelfLabelingClassifier(n_clusters=2, method=method, epochs=10, random_state=0, method_options=opts)
    params = clf.get_params()
    snapshot = dict(opts)
    before = set(vars(clf))
    clf.fit(X)
    added = set(vars(clf)) - before
    assert added and all(a.endswith("_") and not a.startswith("_") for a in added), added
    assert clf.get_params() == params
    assert clf.method_options is opts and opts == snapshot  # the user's dict is not changed


# ----------------------------------------------------------------------------
# fitted attributes, shapes, probabilities
# ----------------------------------------------------------------------------
def test_fitted_attributes_and_shapes(blobs):
    X, _ = blobs
    clf = _fast(n_init=2, epochs=7, random_state=0).fit(X)
    n, d = X.shape
    assert clf.coef_.shape == (3, d) and clf.intercept_.shape == (3,)
    np.testing.assert_allclose(clf.mean_, X.mean(0), rtol=1e-5)
    assert clf.labels_.shape == (n,) and clf.labels_.dtype == np.int64
    assert clf.n_features_in_ == d and clf.n_iter_ == 7
    assert clf.objectives_.shape == (2,) and clf.seeds_.shape == (2,)
    assert len(clf.history_["loss"]) == 7 and clf.history_["epoch"][-1] == 7
    assert clf.options_["epochs"] == 7 and clf.options_["device"] == "cpu"

    proba = clf.predict_proba(X)
    assert proba.shape == (n, 3) and proba.dtype == np.float64
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), proba.argmax(1))
    np.testing.assert_array_equal(clf.labels_, clf.predict(X))
    np.testing.assert_array_equal(clf.fit_predict(X), clf.labels_)
    # proba is the softmax of the linear head
    logits = (X - clf.mean_) @ clf.coef_.T + clf.intercept_
    np.testing.assert_allclose(proba, torch.softmax(torch.from_numpy(logits), -1).numpy(), rtol=1e-10)

    none = _fast(preprocess="none", epochs=2, random_state=0).fit(X)
    assert none.mean_ is None
    np.testing.assert_allclose(none.decision_function(X), X @ none.coef_.T + none.intercept_)


def test_predict_proba_is_stable_for_large_logits(blobs):
    X, _ = blobs
    clf = _fast(random_state=0, epochs=2).fit(X)
    proba = clf.predict_proba(X * 1e6)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-12)


def test_float32_and_float64_input_train_the_same_model(blobs):
    X, _ = blobs
    X32 = X.astype(np.float32)
    a = SelfLabelingClassifier(3, epochs=3, random_state=0).fit(X32)
    b = SelfLabelingClassifier(3, epochs=3, random_state=0).fit(X32.astype(np.float64))
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.predict_proba(X32).dtype == np.float64
    np.testing.assert_allclose(a.predict_proba(X32), a.predict_proba(X32.astype(np.float64)), rtol=1e-12)


def test_pickle_round_trip_is_plain_numpy(blobs):
    X, _ = blobs
    clf = _fast(random_state=0, epochs=3).fit(X)
    for v in vars(clf).values():
        assert not isinstance(v, (torch.Tensor, torch.nn.Module))
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.predict_proba(X), clf.predict_proba(X))


# ----------------------------------------------------------------------------
# random_state and n_init
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["mi_gd", "cce_plus"])
def test_random_state_reproducible(blobs, method):
    X, _ = blobs
    kw = {"n_clusters": 3, "method": method, "epochs": 5}
    a = SelfLabelingClassifier(random_state=3, **kw).fit(X)
    b = SelfLabelingClassifier(random_state=3, **kw).fit(X)
    c = SelfLabelingClassifier(random_state=np.random.RandomState(3), **kw).fit(X)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.coef_, c.coef_)
    assert a.objective_ == b.objective_
    d = SelfLabelingClassifier(random_state=4, **kw).fit(X)
    assert not np.allclose(a.coef_, d.coef_)


def test_fit_leaves_torch_global_state_alone(blobs, monkeypatch):
    import cce.training as train

    X, _ = blobs
    original = train.train_head
    seen = []

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "train_head", spy)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rng_state = torch.random.get_rng_state()
        _fast(random_state=0, epochs=2, n_init=2).fit(X)
        assert seen == [1, 1]  # a small head trains on one thread ...
        assert torch.get_num_threads() == 2  # ... and the setting is restored
        assert torch.equal(torch.random.get_rng_state(), rng_state)  # train_head's manual_seed is undone
        import cce.estimator as estimator

        monkeypatch.setattr(estimator, "_SINGLE_THREAD_WORK", 0)  # a "large" head keeps torch's setting
        _fast(random_state=0, epochs=2).fit(X)
        assert seen[-1] == 2 and torch.get_num_threads() == 2
        torch.set_num_threads(1)  # never raised above the current setting
        _fast(random_state=0, epochs=2).fit(X)
        assert seen[-1] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_n_init_keeps_the_run_with_the_lowest_objective(blobs):
    X, _ = blobs
    clf = SelfLabelingClassifier(3, method="mi_gd", n_init=4, epochs=3, random_state=0).fit(X)
    assert clf.objectives_.shape == (4,) and np.unique(clf.objectives_).size == 4
    best = int(np.argmin(clf.objectives_))
    assert clf.objective_ == clf.objectives_[best] == clf.objectives_.min()

    # The kept head is the run of the winning seed, retrained here directly ...
    method = METHODS["mi_gd"]
    opts = method.options({"epochs": 3, "device": "cpu"})
    for run, seed in enumerate(clf.seeds_):
        head, _, info = train_head(X.astype(np.float32), 3, method, int(seed), opts, progress=False)
        assert info["losses"]["objective"] == pytest.approx(clf.objectives_[run], rel=1e-6)
        if run == best:
            np.testing.assert_allclose(clf.coef_, head.linear.weight.detach().numpy(), rtol=1e-6)
    # ... and objective_ is the method's objective of the kept head on the training data.
    sigma = torch.from_numpy(clf.predict_proba(X))
    assert method.objective_value(sigma, method.make_state(opts, 120)) == pytest.approx(clf.objective_, rel=1e-4)


def test_n_init_selection_ignores_nan_objectives(blobs, monkeypatch):
    X, _ = blobs
    import cce.training as train

    original = train.train_head
    values = iter([float("nan"), 2.0, 1.0, 3.0])

    def fake(*args, **kwargs):
        head, pre, info = original(*args, **kwargs)
        info["losses"]["objective"] = next(values)
        return head, pre, info

    monkeypatch.setattr(train, "train_head", fake)
    clf = _fast(n_init=4, epochs=1, random_state=0).fit(X)
    assert clf.objective_ == 1.0
    np.testing.assert_array_equal(clf.objectives_, [np.nan, 2.0, 1.0, 3.0])


# ----------------------------------------------------------------------------
# parameters reach the method
# ----------------------------------------------------------------------------
def test_lam_and_options_reach_the_method(blobs):
    X, _ = blobs
    clf = SelfLabelingClassifier(3, lam=7.0, lam_scale="batch", epochs=1, random_state=0,
                                 method_options={"max_iter": 3}).fit(X)
    assert clf.options_["lam"] == 7.0 and clf.options_["lam_scale"] == "batch" and clf.options_["max_iter"] == 3
    assert max(clf.history_["label_iterations"]) <= 3
    default = SelfLabelingClassifier(3, epochs=1, random_state=0).fit(X)
    assert default.options_["lam"] == METHODS["cce_plus"].defaults["lam"] == 100.0
    assert default.options_["lam_scale"] == "mean"
    # methods without a fairness weight ignore lam / lam_scale
    mi = _fast(lam=7.0, lam_scale="batch", epochs=1, random_state=0).fit(X)
    assert "lam" not in mi.options_ and "lam_scale" not in mi.options_
    # lam changes the result
    other = SelfLabelingClassifier(3, lam=0.01, epochs=1, random_state=0).fit(X)
    assert not np.array_equal(other.coef_, default.coef_)


def test_verbose_reports_every_init(blobs, capsys):
    X, _ = blobs
    _fast(n_init=2, epochs=1, random_state=0, verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "init 1/2" in out and "init 2/2" in out and "objective" in out


def test_lazy_top_level_import():
    assert cce.SelfLabelingClassifier is SelfLabelingClassifier
    with pytest.raises(AttributeError):
        cce.NoSuchThing  # noqa: B018
    code = "import sys, cce; assert 'torch' not in sys.modules and 'sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.array([[0.0, 1.0], [np.nan, 1.0], [2.0, 0.0]]), "Input X contains NaN"),
        (np.array([[0.0, 1.0], [np.inf, 1.0], [2.0, 0.0]]), "Input X contains infinity"),
        (np.array([[0.0, 1.0], [-np.inf, 1.0], [2.0, 0.0]]), "Input X contains infinity"),
        (np.arange(6.0), "Expected 2D array, got 1D array"),
        (np.ones((2, 3)), "n_samples=2 should be >= n_clusters=3"),
        (np.ones((0, 3)), "0 sample"),
        (np.array([[0.0, 1.0], [1e300, 1.0], [2.0, 0.0]]), "too large for float32"),
    ],
)
def test_bad_input_raises(X, match):
    with pytest.raises(ValueError, match=match):
        SelfLabelingClassifier(3).fit(X)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_clusters": 1}, "n_clusters must be an integer >= 2, got 1"),
        ({"n_clusters": 0}, "n_clusters must be an integer >= 2"),
        ({"n_clusters": 2.5}, "n_clusters must be an integer >= 2"),
        ({"method": "nope"}, "unknown method 'nope'; known methods: .*cce_plus"),
        ({"method": "kmeans"}, "use sklearn.cluster.KMeans; this estimator trains a linear softmax head"),
        ({"n_init": 0}, "n_init must be an integer >= 1"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 1}, "batch_size must be an integer >= 2"),
        ({"lr": 0.0}, "lr must be a positive number"),
        ({"weight_decay": -1.0}, "weight_decay must be a non-negative number"),
        ({"preprocess": "scale"}, "preprocess must be 'center' or 'none'"),
        ({"lam": -1.0}, "lam must be a non-negative number"),
        ({"lam_scale": "sum"}, "lam_scale must be 'mean', 'batch' or None"),
        ({"method_options": {"bogus": 1}}, r"method 'cce_plus' has no option\(s\) \['bogus'\]"),
        ({"method_options": {"epochs": 3}}, r"method_options must not set \['epochs'\]"),
        ({"method_options": [("max_iter", 3)]}, "method_options must be a dict"),
    ],
)
def test_bad_params_raise(blobs, params, match):
    X, _ = blobs
    with pytest.raises(ValueError, match=match):
        SelfLabelingClassifier(**{"n_clusters": 3, **params}).fit(X)


def test_predict_before_fit_and_wrong_width(blobs):
    from sklearn.exceptions import NotFittedError

    X, _ = blobs
    with pytest.raises(NotFittedError):
        SelfLabelingClassifier(3).predict(X)
    clf = _fast(random_state=0, epochs=1).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but SelfLabelingClassifier is expecting 4"):
        clf.predict(X[:, :3])


# ----------------------------------------------------------------------------
# clustering quality with the defaults (the paper's budget: 50 epochs, batch 250, lr 0.1)
# ----------------------------------------------------------------------------
# One seed: tests/test_methods.py fits every method on three seeds of a separable mixture.
@pytest.mark.parametrize("seed", [0])
@pytest.mark.parametrize("method", ["mi_gd", "mi_adm", "sela", "cce", "cce_plus"])
def test_recovers_well_separated_blobs(method, seed):
    X, y = make_blobs(240, centers=3, n_features=5, random_state=seed)
    clf = SelfLabelingClassifier(3, method=method, random_state=seed).fit(X)
    assert hungarian_accuracy(y, clf.labels_) > 0.95


def test_docstring_example_runs():
    import doctest

    import cce.estimator

    result = doctest.testmod(cce.estimator)
    assert result.attempted >= 3 and result.failed == 0


# ----------------------------------------------------------------------------
# init: where the head starts
# ----------------------------------------------------------------------------
def test_kmeans_init_starts_at_the_kmeans_partition():
    from sklearn.cluster import KMeans

    X, _ = make_blobs(200, centers=4, n_features=5, random_state=3)
    clf = SelfLabelingClassifier(n_clusters=4, init="kmeans", random_state=0)
    seed = int(check_random_state(0).randint(np.iinfo(np.int32).max, size=1)[0])
    Xc = X - X.mean(0)
    weight, bias = clf._kmeans_head(Xc, seed)
    km = KMeans(4, n_init=1, random_state=seed).fit(Xc)
    # the head's argmax is exactly the k-means assignment (the linear classifier of the Voronoi cells)
    np.testing.assert_array_equal((Xc @ weight.T + bias).argmax(1), km.predict(Xc))


def test_init_both_keeps_the_lowest_objective_of_both_kinds():
    X, _ = make_blobs(150, centers=3, n_features=4, random_state=1)
    both = SelfLabelingClassifier(n_clusters=3, method="mi_gd", epochs=5, n_init=2, init="both",
                                  random_state=0).fit(X)
    random = SelfLabelingClassifier(n_clusters=3, method="mi_gd", epochs=5, n_init=2, random_state=0).fit(X)
    assert list(both.inits_) == ["random", "random", "kmeans", "kmeans"]
    assert len(both.objectives_) == 4 and both.objective_ == both.objectives_.min()
    np.testing.assert_allclose(both.objectives_[:2], random.objectives_, rtol=1e-6)  # same seeds, same runs
    assert both.objective_ <= random.objective_
    with pytest.raises(ValueError, match="init must be"):
        SelfLabelingClassifier(init="k-means++").fit(X)
