"""Every registered method on separable data, and reproducible run records."""

import inspect

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs

from cce.data.features import save_features
from cce.methods import METHODS, effective_lam, get_method
from cce.metrics import hungarian_accuracy
from cce.pipeline.experiments import eta_variant, fraction_variant, parse_variant, run_options, variant_name
from cce.pipeline.runs import run_clustering
from cce.training import ConvergenceWarning, fit, predict_logits, train_head


def blobs(seed):
    X, y = make_blobs(300, centers=4, n_features=8, cluster_std=1.0, random_state=seed)
    return X.astype(np.float32), y


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_recovers_a_separable_mixture(method, seed):
    X, y = blobs(seed)
    options = {} if method == "kmeans" else {"epochs": 30, "device": "cpu"}
    labels, info = fit(get_method(method), X, 4, seed, options, progress=False)
    assert labels.shape == (300,)
    assert hungarian_accuracy(y, labels) > 0.95, (method, seed)
    assert np.isfinite(info["losses"]["objective"])


@pytest.mark.parametrize("method", ["kmeans", "cce_plus"])
def test_same_seed_same_record(tmp_path, method):
    X, y = blobs(0)
    path = tmp_path / "features.npz"
    save_features(path, X, y, {"dataset": "blobs", "extractor": "raw", "n_classes": 4})
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


def test_variants_of_the_network_experiments_and_their_options():
    assert parse_variant(fraction_variant("mi_d", 0.05)) == ("mi_d", {"fraction": 0.05})
    assert parse_variant(eta_variant("collision", 0.0)) == ("collision", {"eta": 0.0})
    assert parse_variant("sela") == ("sela", {})
    with pytest.raises(ValueError, match="not a run variant"):
        parse_variant("mi_d-frac")
    config = {
        "deep": {"training": {"batch_size": {"stl10": 160, "default": 250}, "epochs": 3},
                 "method_options": {"cce_plus": {"max_iter": 7}}},
        "weak": {"training": {"epochs": 2, "network": "grey28"}, "method_options": {"cce_plus": {"lam": 10}}},
        "noisy": {"training": {"epochs": 4}},
    }
    assert run_options(config, "deep", "stl10", "cce_plus")["batch_size"] == 160
    deep = run_options(config, "deep", "mnist", "cce_plus")
    assert (deep["batch_size"], deep["epochs"], deep["max_iter"], deep["lr"]) == (250, 3, 7, 1e-4)
    weak = run_options(config, "weak", "mnist", "cce_plus-frac0.1")
    assert (weak["epochs"], weak["network"], weak["lam"]) == (2, "grey28", 10) and "fraction" not in weak
    noisy = run_options(config, "noisy", "cifar10", "shannon-eta0.3")
    assert (noisy["epochs"], noisy["network"], noisy["n_views"]) == (4, "resnet18", 1) and "eta" not in noisy


def test_lam_scales():
    assert effective_lam(100, "mean", 250) == 100
    assert effective_lam(100, "batch", 250) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        effective_lam(100, "sum", 250)


# ----------------------------------------------------------------------------
# wiring: the lam, fairness direction and prior each method's solver receives
# ----------------------------------------------------------------------------
# The fairness term each method's objective names (cce.methods' table): eq. (5) and (10) use
# KL(ybar || u) ("kl"), eq. (11) KL(u || ybar) ("reverse_kl").
FAIRNESS = {"mi_adm": "kl", "cce": "kl", "cce_plus": "reverse_kl"}
# Solvers whose problem fixes the fairness direction, so they take no `fairness` argument.
IMPLIED_FAIRNESS = {"em": "reverse_kl", "em_map": "reverse_kl", "mi_adm": "kl"}


def spy_on_solvers(monkeypatch):
    """Record (name, arguments) of every call to a public function of cce.pseudolabels
    (cce.methods looks them up in the package at call time)."""
    import cce.pseudolabels as pl

    calls = []

    def spy_for(name, original):
        signature = inspect.signature(original)

        def spy(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            calls.append((name, dict(bound.arguments)))
            return original(*args, **kwargs)

        return spy

    for name in pl.__all__:
        original = getattr(pl, name)
        if callable(original):
            monkeypatch.setattr(pl, name, spy_for(name, original))
    return calls


@pytest.mark.parametrize("lam_scale", ["mean", "batch"])
@pytest.mark.parametrize(("method", "solver"), [("mi_adm", None), ("cce", "interior_point"), ("cce", "pgd"),
                                                ("cce_plus", "interior_point"), ("cce_plus", "em")])
def test_solvers_receive_the_configured_lam_fairness_and_prior(monkeypatch, method, solver, lam_scale):
    X, _ = blobs(0)  # 300 points: batches of 100, 100, 100
    calls = spy_on_solvers(monkeypatch)
    options = {"epochs": 2, "batch_size": 100, "lam": 3.0, "lam_scale": lam_scale, "device": "cpu"}
    if solver is not None:
        options["solver"] = solver
    _, info = fit(get_method(method), X, 4, 0, options, progress=False)
    # the solver the option names, and no other, solved every y-problem
    expected = {"interior_point": "interior_point", "pgd": "pgd", "em": "em", None: "mi_adm"}[solver]
    assert {name for name, args in calls if "lam" in args and name != "dual_bound"} == {expected}
    # eq. (10)/(11) as written pass lam; eq. (15) read literally is lam / M for a batch of M = 100
    lam = 3.0 if lam_scale == "mean" else 3.0 / 100
    assert info["lam_effective"] == pytest.approx(lam, rel=1e-12)
    solves = [(name, args) for name, args in calls if "lam" in args]
    assert len(solves) >= 2 * 3 + 1, calls  # every batch of every epoch, and the final objective
    for name, args in solves:
        assert args["lam"] == pytest.approx(lam, rel=1e-12), (name, args["lam"])
        assert args.get("fairness", IMPLIED_FAIRNESS.get(name)) == FAIRNESS[method], name
        prior = args.get("prior")
        assert prior is None or torch.allclose(torch.as_tensor(prior, dtype=torch.float64),
                                               torch.full((4,), 0.25, dtype=torch.float64)), name


def test_sela_solver_receives_its_options(monkeypatch):
    X, _ = blobs(0)
    calls = spy_on_solvers(monkeypatch)
    fit(get_method("sela"), X, 4, 0, {"epochs": 2, "device": "cpu", "epsilon": 0.2, "n_iter": 77}, progress=False)
    sinkhorn = [args for name, args in calls if name == "sinkhorn"]
    assert len(sinkhorn) >= 2 + 1  # once per epoch (on all points), and the final objective
    for args in sinkhorn:
        assert (args["epsilon"], args["n_iter"], args["prior"]) == (0.2, 77, None)
        assert args["sigma"].shape == (300, 4)


# ----------------------------------------------------------------------------
# wiring: the objective a method reports is its objective at its final predictions
# ----------------------------------------------------------------------------
def imbalanced(seed, sizes=(240, 60), dim=8, distance=4.0):
    """Two Gaussian clusters (unit variance) of the given sizes, their means `distance` apart."""
    rng = np.random.default_rng(seed)
    means = np.zeros((2, dim))
    means[1, 0] = distance
    y = np.repeat([0, 1], sizes)
    return (means[y] + rng.normal(size=(y.size, dim))).astype(np.float32), y


def test_mi_gd_reports_eq_1_at_its_final_predictions():
    X, _ = imbalanced(0)
    spec = get_method("mi_gd")
    head, pre, info = train_head(X, 2, spec, 0, spec.options({"epochs": 3, "device": "cpu"}), progress=False)
    sigma = torch.softmax(predict_logits(head, torch.from_numpy(pre.transform(X))).double(), -1).numpy()
    mean_entropy = -(sigma * np.log(sigma)).sum(1).mean()
    sbar = sigma.mean(0)
    assert info["losses"]["objective"] == pytest.approx(mean_entropy + (sbar * np.log(sbar)).sum(), rel=1e-5)


def test_lam_scale_batch_and_mean_give_different_lam_and_records(tmp_path):
    X, y = blobs(0)
    path = tmp_path / "features.npz"
    save_features(path, X, y, {"dataset": "blobs", "extractor": "raw", "n_classes": 4})
    records = {scale: run_clustering(path, "cce_plus", seed=0, options={"epochs": 2, "device": "cpu",
                                                                         "lam_scale": scale})
               for scale in ("mean", "batch")}
    # the default batch of 250 points: lam = 100 as written, or 100 / 250 = 0.4 (eq. 15 literally)
    assert records["mean"]["info"]["lam_effective"] == 100.0
    assert records["batch"]["info"]["lam_effective"] == pytest.approx(0.4)
    assert records["mean"]["options"]["lam_scale"] == "mean" and records["batch"]["options"]["lam_scale"] == "batch"
    assert records["mean"]["info"]["curves"]["loss"] != records["batch"]["info"]["curves"]["loss"]
    assert records["mean"]["info"]["losses"]["objective"] != records["batch"]["info"]["losses"]["objective"]


# ----------------------------------------------------------------------------
# discriminating data: each method's y-step, through its registry entry, against an
# independent minimizer of the objective as the paper writes it
# ----------------------------------------------------------------------------
def imbalanced_posteriors(n=100, seed=0):
    """Soft, overlapping predictions (n, 3) whose mean leans away from uniform (about 0.58 / 0.35 /
    0.08; argmax shares 0.64 / 0.32 / 0.04): the fairness term decides how far each method moves
    y from them, and the two readings of lam, or lam / M, move it by different amounts."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(n, 3)) + np.array([1.5, 0.5, -1.5])
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def objective_as_written(y, sigma, lam, fairness, cross_entropy):
    """mean_i CE(y_i, sigma_i) + lam * fairness(ybar), uniform prior: eq. (5), (10) and (11).
    y, sigma: float64 tensors or arrays (n, K); a tensor for tensors, a float for arrays."""
    if isinstance(y, np.ndarray):
        return float(objective_as_written(torch.from_numpy(y), torch.from_numpy(sigma), lam, fairness,
                                          cross_entropy))
    ce = -torch.log((y * sigma).sum(1)) if cross_entropy == "collision" else -(y * torch.log(sigma)).sum(1)
    ybar = y.mean(0)
    u = torch.full_like(ybar, 1 / ybar.numel())
    kl = (ybar * torch.log(ybar / u)).sum() if fairness == "kl" else (u * torch.log(u / ybar)).sum()
    return ce.mean() + lam * kl


def minimize_as_written(sigma, lam, fairness, cross_entropy):
    """min over y in the simplex rows of :func:`objective_as_written`, by L-BFGS on y = softmax(z)
    with autograd gradients (float64): no code of cce.pseudolabels or cce.pseudolabels."""
    from scipy.optimize import minimize

    s = torch.from_numpy(sigma)

    def f(z):
        zt = torch.from_numpy(z.reshape(sigma.shape)).requires_grad_()
        value = objective_as_written(torch.softmax(zt, 1), s, lam, fairness, cross_entropy)
        value.backward()
        return value.item(), zt.grad.numpy().ravel().copy()

    res = minimize(f, np.log(sigma).ravel(), jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-11})
    return torch.softmax(torch.from_numpy(res.x.reshape(sigma.shape)), 1).numpy()


CROSS_ENTROPY = {"mi_adm": "shannon", "cce": "collision", "cce_plus": "collision"}


@pytest.mark.parametrize("lam_scale", ["mean", "batch"])
@pytest.mark.parametrize("method", ["mi_adm", "cce", "cce_plus"])
def test_label_step_minimizes_the_objective_the_config_names(method, lam_scale):
    """The method's y-step (make_state + label_step, as training calls them) reaches the
    minimum of its objective at the lam its lam_scale implies; the minimizers of the objective
    with the other fairness direction or the other reading of lam are measurably worse on it,
    so a solver wired to either would fail here."""
    sigma = imbalanced_posteriors()
    n = sigma.shape[0]
    lam_config = 100.0  # the paper's lam: 100 as written (mean), 100 / M = 1 for eq. (15) (batch)
    lam = lam_config if lam_scale == "mean" else lam_config / n  # eq. (10)/(11) as written, or eq. (15)
    spec = get_method(method)
    state = spec.make_state(spec.options({"lam": lam_config, "lam_scale": lam_scale, "tol": 1e-12,
                                          "max_iter": 100000}), batch_size=n)
    y, _ = spec.label_step(torch.from_numpy(sigma), state)
    y = y.double().numpy()

    fairness, ce = FAIRNESS[method], CROSS_ENTROPY[method]
    best = minimize_as_written(sigma, lam, fairness, ce)
    f_best = objective_as_written(best, sigma, lam, fairness, ce)
    f_method = objective_as_written(y, sigma, lam, fairness, ce)
    assert f_method <= f_best + 1e-6, (f_method, f_best)
    np.testing.assert_allclose(y.mean(0), best.mean(0), atol=2e-3)

    # The wrong wirings: the other reading of lam, lam / M (as if M-step weights were used for
    # lam), and, where ybar stays away from u (lam = 1, the batch reading), the other KL direction.
    # At lam = 100 both directions hold ybar within 1e-3 of u and cannot be told apart by y.
    wrongs = {"other reading": (lam_config / n if lam_scale == "mean" else lam_config, fairness),
              "lam / M": (lam / n, fairness)}
    if lam_scale == "batch":
        wrongs["other direction"] = (lam, "reverse_kl" if fairness == "kl" else "kl")
    for name, (wrong_lam, wrong_fairness) in wrongs.items():
        wrong = minimize_as_written(sigma, wrong_lam, wrong_fairness, ce)
        # worse on the right objective by far more than the solvers' error, and with cluster
        # proportions further away than the tolerance above
        assert objective_as_written(wrong, sigma, lam, fairness, ce) > f_best + 1e-3, name
        assert np.abs(wrong.mean(0) - best.mean(0)).max() > 1e-2, name


@pytest.mark.parametrize("method", ["mi_adm", "cce", "cce_plus", "sela"])
def test_the_record_counts_y_steps_stopped_at_max_iter_and_warns(tmp_path, method):
    X, y = blobs(0)
    path = tmp_path / "features.npz"
    save_features(path, X, y, {"dataset": "blobs", "extractor": "raw", "n_classes": 4})
    cap = {"n_iter": 1} if method == "sela" else {"max_iter": 1}
    # batches of 100: 3 y-steps per epoch (SeLa: one per epoch, on all points)
    base = {"epochs": 2, "batch_size": 100, "device": "cpu"}
    steps = 2 if method == "sela" else 6
    stopped = rf"{method}: {steps} of {steps} pseudo-label steps stopped at max_iter=1"
    with pytest.warns(ConvergenceWarning, match=stopped):
        capped = run_clustering(path, method, seed=0, options={**base, **cap, "tol": 1e-14})
    assert capped["info"]["label_steps"] == steps
    assert capped["info"]["label_steps_at_max_iter"] == steps
    assert capped["info"]["curves"]["label_steps_at_max_iter"] == [steps // 2] * 2

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged run warns nothing
        free = run_clustering(path, method, seed=0, options={**base, **{k: 100000 for k in cap}})
    assert free["info"]["label_steps"] == steps and free["info"]["label_steps_at_max_iter"] == 0


def test_solver_choices_are_checked():
    with pytest.raises(ValueError, match=r"option 'solver' must be one of \['interior_point', 'em'\], got 'newton'"):
        get_method("cce_plus").options({"solver": "newton"})
    with pytest.raises(ValueError, match=r"option 'solver' must be one of \['interior_point', 'pgd'\]"):
        get_method("cce").options({"solver": "em"})
    from cce.training.deep import DeepRunError, get_deep_method

    with pytest.raises(DeepRunError, match="option 'solver' must be one of"):
        get_deep_method("cce_plus").options({"solver": "pgd"})
    assert get_method("cce_plus").options({"solver": "em"})["solver"] == "em"
