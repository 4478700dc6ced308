"""Projected gradient descent on L_CCE / L_CCE+ in y, and the simplex projections it uses."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..losses import self_labeling_objective
from ._common import _check_sigma, _objective, _solver_prior, converged


def proj_simplex_sort(v: Tensor) -> Tensor:
    """Exact Euclidean projection of each row of v (M, K) onto the simplex (sort-based).

    y = max(v - theta, 0) with theta = (sum_{j <= rho} u_j - 1) / rho, u = v sorted
    decreasingly and rho the largest j with u_j > (sum_{i <= j} u_i - 1) / j.
    """
    K = v.shape[-1]
    # The projection commutes with adding a constant to a row; shifting the row maximum to 0
    # keeps v - theta exact where v is huge (in float32, 3e7 - (3e7 - 1) rounds to 0).
    v = v - v.amax(-1, keepdim=True)
    u, _ = torch.sort(v, -1, descending=True)
    css = u.cumsum(-1) - 1.0
    j = torch.arange(1, K + 1, dtype=v.dtype, device=v.device)
    cond = u - css / j > 0
    rho = (cond * j).amax(-1, keepdim=True)  # cond holds for j = 1 (u_1 = 0 after the shift)
    theta = css.gather(-1, rho.long() - 1) / rho
    return (v - theta).clamp_min(0.0)


def proj_simplex(v: Tensor, method: str = "auto") -> Tensor:
    """Exact Euclidean projection of each row of v (M, K) onto the simplex.

    method="michelot" (Michelot 1986): theta <- (sum_{k: v_k > theta} v_k - 1) / #{k: v_k > theta}
    from theta = (sum v - 1) / K increases monotonically and stops at the exact threshold once
    the set stops changing (at most K rounds, a handful in practice); y = max(v - theta, 0).
    method="sort": :func:`proj_simplex_sort`. "auto" takes sort for K <= 32 (faster there on
    CPU) and Michelot above.
    """
    K = v.shape[-1]
    if method == "sort" or (method == "auto" and K <= 32):
        return proj_simplex_sort(v)
    if method not in ("auto", "michelot"):
        raise ValueError(f"method must be 'auto', 'sort' or 'michelot', got {method!r}")
    v = v - v.amax(-1, keepdim=True)  # as in proj_simplex_sort
    theta = (v.sum(-1, keepdim=True) - 1.0) / K
    count = torch.full_like(theta, float(K))
    for _ in range(K):
        act = v > theta
        n = act.sum(-1, keepdim=True).to(v.dtype)
        if bool((n == count).all()):
            break
        count = n
        theta = ((v * act).sum(-1, keepdim=True) - 1.0) / n
    return (v - theta).clamp_min(0.0)


def pgd(
    sigma: Tensor,
    lam: float,
    prior=None,
    fairness: str = "reverse_kl",
    step: float | str = 1.0,
    tol: float = 1e-7,
    max_iter: int = 1000,
    y0: Tensor | None = None,
) -> tuple[Tensor, dict]:
    """Projected gradient descent on mean_i H2(y_i, sigma_i) + lam * fairness, eq. (10) or (11).

    fairness="kl" is L_CCE (eq. 10/18, which EM cannot solve), "reverse_kl" is L_CCE+ (eq. 11/19).
    ``step`` multiplies the gradient of M times the objective, i.e. of
    sum_i H2(y_i, sigma_i) + lam * M * KL: per point the gradient is
    -sigma_i / (sigma_i . y_i) - lam * u / ybar ("reverse_kl") or lam * (ln(ybar / u) + 1)
    ("kl"), O(1) in M, so step sizes do not depend on the batch size (Table 1's 1, 10, 20 for
    K=2 and 0.1, 1, 5 for K=20, 200 are on this scale). Each row is projected exactly onto
    the simplex (:func:`proj_simplex`). y0 defaults to sigma; same stopping rule and info
    keys as :func:`em` ("iterations", "objective", "converged"). lam = 0 drops the fairness
    term, as the objective does, so the prior has no effect then.

    ``step="armijo"``: backtracking on the sufficient-decrease condition of projected gradient
    steps, M F(y+) <= M F(y) + <g, y+ - y> + |y+ - y|^2 / (2 t) (Beck & Teboulle 2009), halving t
    until it holds and doubling it after each accepted step. Every iteration then decreases
    the objective whatever the scale of lam, at the price of extra objective evaluations
    (info["evaluations"]); the fixed steps are for the comparison of Table 1.
    """
    sigma = _check_sigma(sigma, lam)
    M, K = sigma.shape
    prior = _solver_prior(prior, K, sigma, lam)
    if fairness not in ("reverse_kl", "kl"):
        raise ValueError(f"fairness must be 'reverse_kl' or 'kl', got {fairness!r}")
    tiny = torch.finfo(sigma.dtype).tiny
    y = sigma.clone() if y0 is None else y0.to(dtype=sigma.dtype, device=sigma.device).clone()
    # the checked objective on entry also validates y0's shape; the loop uses the unchecked one
    f0 = float(self_labeling_objective(y, sigma, lam, prior, fairness, "collision"))
    info = {"objective": [f0], "converged": False, "diverged": False}
    backtracking = step == "armijo"
    if not backtracking and not (isinstance(step, (int, float)) and step > 0):
        raise ValueError(f"step must be a positive number or 'armijo', got {step!r}")
    log_prior = torch.log(prior) if fairness == "kl" else None
    t = 1.0
    evaluations = 0
    it = 0
    while it < max_iter:
        it += 1
        s = (sigma * y).sum(-1, keepdim=True).clamp_min(tiny)
        ybar = y.mean(0).clamp_min(tiny)
        if fairness == "reverse_kl":
            gf = -prior / ybar
        else:
            gf = torch.log(ybar) - log_prior + 1.0
        g = -sigma / s + lam * gf
        if backtracking:
            f = info["objective"][-1]
            while True:
                y_new = proj_simplex(y - t * g)
                f_new = _objective(y_new, sigma, lam, prior, fairness)
                evaluations += 1
                d = y_new - y
                bound = M * f + float((g * d).sum()) + float((d * d).sum()) / (2 * t)
                # the slack only absorbs rounding in the bound; the objective may never increase
                if math.isfinite(f_new) and f_new <= f and M * f_new <= bound + 1e-12 * abs(M * f):
                    break
                t /= 2
                if t < 1e-30:  # no step decreases F within rounding: y is optimal
                    y_new, f_new = y, f
                    break
            t *= 2
        else:
            y_new = proj_simplex(y - step * g)
            f_new = _objective(y_new, sigma, lam, prior, fairness)
        # a NaN or inf in y_new makes its row's cross-entropy, hence f_new, non-finite
        if not math.isfinite(f_new):
            info["diverged"] = True  # too large a step: keep the last finite iterate
            it -= 1
            break
        y = y_new
        info["objective"].append(f_new)
        if converged(info["objective"][-2], info["objective"][-1], tol):
            info["converged"] = True
            break
    info["iterations"] = it
    if backtracking:
        info["evaluations"] = evaluations
        info["step"] = t / 2
    return y, info
