"""Registry of the clustering methods compared in Table 2 (name -> objective, y-step, network loss).

Every method except K-means trains the same linear softmax head on fixed
features (:func:`cce.training.train_head`) and differs in three pieces:

==========  =============================================  =====================  ==================
method      self-labeling objective                        pseudo-label step      network loss
==========  =============================================  =====================  ==================
mi_gd       eq. (1): mean H(sigma) - H(mean sigma)         none                   the objective
mi_adm      eq. (5): mean H(y, sigma) + KL(ybar||u)        ``mi_adm``, batch      mean H(y, sigma)
sela        eq. (4): mean H(y, sigma), ybar = u            ``sinkhorn``, epoch    mean H(y, sigma)
cce         eq. (10): mean H2(y, sigma) + lam KL(ybar||u)  interior point or PGD  mean H2(y, sigma)
cce_plus    eq. (11): mean H2(y, sigma) + lam KL(u||ybar)  interior point or EM   mean H2(y, sigma)
==========  =============================================  =====================  ==================

"batch": y is re-estimated on every batch from a warm start at the current
predictions (Algorithm 1). "epoch": on the whole data set once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

# torch and the solvers are imported where they are called: the workflow reads this registry
# (method names and defaults) when it parses the Snakefile, and every dry run would otherwise pay
# for importing torch.

# Options of every method that trains a linear head (Appendix F); the workflow
# fills epochs, batch size, lr and weight decay from the config's `training:`.
TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 50,
    "batch_size": 250,
    "lr": 0.1,
    "momentum": 0.0,
    "weight_decay": 0.001,
    "preprocess": "center",
    "device": "auto",
}


# The two readings of the paper's lam (effective_lam): the objective as written, or eq. (15) literally.
LAM_SCALES = ("mean", "batch")


def effective_lam(lam: float, lam_scale: str, batch_size: int) -> float:
    """The lam passed to the solvers.

    EM's Jensen bound on KL(u || ybar) gives point i the M-step weights
    lam * u_k * M * S_ik for the objective as written; eq. (15) writes them
    without the factor M, which is the same algorithm with lam / M.

    ``"mean"``: the objective as written, mean_i CE + lam * KL (eq. 10/11).
    ``"batch"``: eq. (15) read literally, weights lam * u_k * S_ik, which is the
    mean-form objective with lam / M for a batch of M points.
    """
    if lam_scale == "mean":
        return float(lam)
    if lam_scale == "batch":
        return float(lam) / batch_size
    raise ValueError(f"lam_scale must be 'mean' or 'batch', got {lam_scale!r}")


@dataclass(frozen=True)
class Method:
    """One clustering method; :func:`cce.training.fit` trains it: (method, X, n_clusters, seed, options) -> (labels, info)."""

    name: str
    title: str  # the row label in the paper's tables
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    label_scope: str | None = None  # "batch", "epoch" or None (no pseudo-labels)
    label_solver: Callable | None = None  # (sigma, state) -> (y, info)
    loss: Callable | None = None  # (logits, y, state) -> scalar network loss
    objective: Callable | None = None  # (sigma_all, state) -> float, lower is better
    fit_fn: Callable | None = None  # overrides the linear-head training (K-means)
    choices: dict[str, tuple] = field(default_factory=dict)  # option -> its allowed values

    @property
    def trains_head(self) -> bool:
        return self.fit_fn is None

    def make_state(self, options: dict[str, Any], batch_size: int) -> dict[str, Any]:
        state = dict(options)
        if "lam" in options:
            state["lam"] = effective_lam(options["lam"], options.get("lam_scale", "mean"), batch_size)
        return state

    def label_step(self, sigma: torch.Tensor, state: dict[str, Any]):
        # Solvers run in float64: optima near the simplex boundary (large lam) need its range.
        y, info = self.label_solver(sigma.double(), state)
        return y.to(sigma.dtype), info

    def network_loss(self, logits: torch.Tensor, y: torch.Tensor | None, state: dict[str, Any]) -> torch.Tensor:
        return self.loss(logits, y, state)

    def objective_value(self, sigma: torch.Tensor, state: dict[str, Any]) -> float:
        """The method's objective at predictions sigma (N, K), minimized over y by its own solver."""
        return float(self.objective(sigma.double(), state))

    def options(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The method's defaults updated by ``options``; unknown names are an error."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(f"method {self.name!r} has no option(s) {unknown}; allowed: {sorted(self.defaults)}")
        bad = invalid_choice(self.choices, options)
        if bad:
            raise ValueError(f"method {self.name!r}: {bad}")
        return {**self.defaults, **options}


def invalid_choice(choices: dict[str, tuple], options: dict[str, Any]) -> str | None:
    """What is wrong with the first option whose value is not among its ``choices``, or None."""
    for name, allowed in choices.items():
        if name in options and options[name] not in allowed:
            return f"option {name!r} must be one of {list(allowed)}, got {options[name]!r}"
    return None


# ----------------------------------------------------------------------------
# K-means
# ----------------------------------------------------------------------------
def fit_kmeans(X: np.ndarray, n_clusters: int, seed: int, n_init: int = 1, max_iter: int = 300
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """scikit-learn's KMeans (k-means++ init), as the paper's Section 5.1 uses it."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n_clusters, n_init=n_init, max_iter=max_iter, random_state=seed)
    labels = km.fit_predict(X)
    return labels, {"losses": {"inertia": float(km.inertia_), "objective": float(km.inertia_) / X.shape[0]},
                    "iterations": int(km.n_iter_), "device": "cpu"}


# ----------------------------------------------------------------------------
# Pseudo-label steps, network losses and objectives
# ----------------------------------------------------------------------------
def _mean_shannon(logits, y, state):
    from . import losses

    return losses.shannon_cross_entropy_with_logits(y, logits).mean()


def _mean_collision(logits, y, state):
    from . import losses

    return losses.collision_cross_entropy_with_logits(y, logits).mean()


def _mi_objective(sigma, state):
    """Eq. (1) with a weight on the fairness term: mean H(sigma) - w * H(mean sigma)."""
    from . import losses

    return losses.entropy(sigma).mean() - state["fairness_weight"] * losses.entropy(sigma.mean(0))


def _mi_loss(logits, y, state):
    import torch

    return _mi_objective(torch.softmax(logits, -1), state)


def _labels_mi_adm(sigma, state):
    from . import pseudolabels

    return pseudolabels.mi_adm(sigma, lam=state["lam"], tol=state["tol"], max_iter=state["max_iter"])


# The objectives of the methods with a solver of cce.pseudolabels (mi_adm, pgd, em) take F(y)
# from the solver: info["objective"][-1] is the objective at the returned y, for the same sigma,
# lam (state["lam"]), prior and terms as the method's objective.
def _objective_mi_adm(sigma, state):
    return _labels_mi_adm(sigma, state)[1]["objective"][-1]


def _labels_sinkhorn(sigma, state):
    from . import pseudolabels

    return pseudolabels.sinkhorn(sigma, n_iter=state["n_iter"], epsilon=state["epsilon"], tol=state["tol"])


def _objective_sela(sigma, state):
    from . import losses

    y, _ = _labels_sinkhorn(sigma, state)
    return losses.shannon_cross_entropy(y, sigma).mean()


def _labels_cce(sigma, state):
    if state["solver"] == "interior_point":
        from .pseudolabels import interior_point

        return interior_point(sigma, state["lam"], fairness="kl", tol=state["tol"], max_iter=state["max_iter"])
    from . import pseudolabels

    return pseudolabels.pgd(sigma, state["lam"], fairness="kl", step=state["step"], tol=state["tol"],
                            max_iter=state["max_iter"])


def _objective_cce(sigma, state):
    return _labels_cce(sigma, state)[1]["objective"][-1]


def _labels_cce_plus(sigma, state):
    if state["solver"] == "interior_point":
        from .pseudolabels import interior_point

        return interior_point(sigma, state["lam"], fairness="reverse_kl", tol=state["tol"],
                              max_iter=state["max_iter"])
    from . import pseudolabels

    return pseudolabels.em(sigma, state["lam"], tol=state["tol"], max_iter=state["max_iter"],
                           acceleration=state["acceleration"])


def _objective_cce_plus(sigma, state):
    return _labels_cce_plus(sigma, state)[1]["objective"][-1]


# ----------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------
METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


register(Method(
    "kmeans", "Kmeans", "scikit-learn KMeans on the fixed features (k-means++ init)",
    defaults={"n_init": 1, "max_iter": 300}, fit_fn=fit_kmeans,
))
register(Method(
    "mi_gd", "MI-GD",
    "Bridle et al. [3] / Krause et al. [21]: the MI loss of eq. (1) minimized by SGD on the head. "
    "fairness_weight = 1 is eq. (1) as written.",
    defaults={**TRAINING_DEFAULTS, "fairness_weight": 1.0},
    loss=_mi_loss, objective=_mi_objective,
))
register(Method(
    "mi_adm", "MI-ADM",
    "Jabi et al. [15]: L_ce+kl (eq. 5); y re-estimated on every batch by cce.pseudolabels.mi_adm "
    "(lam = 1 is eq. 5 as written), the head trained by Shannon cross-entropy to y.",
    defaults={**TRAINING_DEFAULTS, "lam": 1.0, "lam_scale": "mean", "tol": 1e-6, "max_iter": 200},
    choices={"lam_scale": LAM_SCALES},
    label_scope="batch", label_solver=_labels_mi_adm, loss=_mean_shannon, objective=_objective_mi_adm,
))
register(Method(
    "sela", "SeLa",
    "Asano et al. [1]: equal-partition hard labels (eq. 4) by log-domain Sinkhorn. As in SeLa, the "
    "labels are computed on the whole data set (cheap for a linear head on fixed features) once per "
    "epoch, not per batch; epsilon is the entropic regularization of the transport plan, tol the "
    "L2 error of its class marginals at which POT's Sinkhorn stops.",
    defaults={**TRAINING_DEFAULTS, "epsilon": 0.05, "n_iter": 1000, "tol": 1e-4},
    label_scope="epoch", label_solver=_labels_sinkhorn, loss=_mean_shannon, objective=_objective_sela,
))
register(Method(
    "cce", "CCE (L_CCE)",
    "L_CCE (eq. 10, KL(ybar || u)): y on every batch from the predictions; head trained by collision "
    "CE. EM does not apply to this fairness term. solver='interior_point' (default) solves the "
    "y-problem to a certified relative gap of tol with the interior-point method of cce.pseudolabels; "
    "solver='pgd' is projected gradient descent with a backtracking step (step='armijo'; a fixed "
    "step that suits one lam diverges at another), which needs thousands of iterations per batch "
    "at lam = 100 and leaves clusters empty when capped (max_iter counts PGD iterations then).",
    defaults={**TRAINING_DEFAULTS, "lam": 100.0, "lam_scale": "mean", "solver": "interior_point",
              "step": "armijo", "tol": 1e-6, "max_iter": 200},
    choices={"solver": ("interior_point", "pgd"), "lam_scale": LAM_SCALES},
    label_scope="batch", label_solver=_labels_cce, loss=_mean_collision, objective=_objective_cce,
))
register(Method(
    "cce_plus", "Our",
    "L_CCE+ (eq. 11, KL(u || ybar)), the paper's method: y on every batch from a warm start at the "
    "predictions (Algorithm 1); head trained by collision cross-entropy. Algorithm 1 solves the "
    "y-problem by the EM of Section 4 (solver='em'; acceleration='squarem' extrapolates it and "
    "minimizes the same objective). With lam = 100 in the objective as written, EM converges "
    "sublinearly: the optimum lies on the simplex boundary, and at tol 1e-6 (relative change) EM "
    "stops with a gap of 1e-4 to 6e-4 on digits batches after 110 to 170 SQUAREM iterations. The "
    "default, solver='interior_point', solves the same problem by the interior-point method of "
    "cce.pseudolabels to a certified relative gap of tol (a primal-dual method, 9 to 17 "
    "iterations per batch, median, on digits and Fashion-MNIST; compiled on the CPU, about 1 ms "
    "per digits batch against some 200 ms for EM). "
    "tol and max_iter apply to the solver chosen (EM: "
    "relative change of the objective and EM iterations; interior point: relative gap and "
    "iterations).",
    defaults={**TRAINING_DEFAULTS, "lam": 100.0, "lam_scale": "mean", "solver": "interior_point",
              "tol": 1e-6, "max_iter": 200, "acceleration": "squarem"},
    choices={"solver": ("interior_point", "em"), "acceleration": ("squarem", None, "none"), "lam_scale": LAM_SCALES},
    label_scope="batch", label_solver=_labels_cce_plus, loss=_mean_collision, objective=_objective_cce_plus,
))


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}") from None
