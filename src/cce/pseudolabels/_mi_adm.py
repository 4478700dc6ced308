"""MI-ADM: the y-step of L_ce+kl, eq. (5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..losses import _objective_unchecked, check_prior, safe_log, self_labeling_objective
from ._common import _check_sigma, _iterate


def mi_adm(
    sigma: Tensor,
    lam: float = 1.0,
    prior=None,
    y0: Tensor | None = None,
    tol: float = 1e-10,
    max_iter: int = 10000,
    acceleration: str | None = "squarem",
) -> tuple[Tensor, dict]:
    """Solve min_y mean_i H(y_i, sigma_i) + lam * KL(ybar || u), the y-step of L_ce+kl (eq. 5).

    sigma (M, K) -> y (M, K). The objective is linear in y plus lam * KL(ybar || u), which is
    lam-smooth relative to phi(y) = mean_i sum_k y_ik ln y_ik (joint convexity of KL:
    KL(ybar || ybar') <= mean_i KL(y_i || y'_i)). Mirror descent with step 1 / lam is thus a
    majorize-minimize scheme with a closed-form step,
        y_ik <- y_ik * sigma_ik^(1 / lam) * u_k / ybar_k   (rows renormalized, in log space),
    monotone with O(1/t) objective convergence (Bauschke-Bolte-Teboulle 2017); by default it is
    accelerated by the same safeguarded SQUAREM as :func:`em` (still monotone). We use it in
    place of the ADM of Jabi et al. [15] because it needs no inner solver or penalty
    parameter. Certificate: info["dual_gap"] = F(y) - D(p) >= F(y) - F*, p_k = lam ln(ybar_k / u_k),
    with the concave dual D(p) = mean_i min_k (p_k - ln sigma_ik) - lam ln sum_k u_k e^{p_k/lam}.
    lam = 0: y = argmax sigma (ties split uniformly). y0 defaults to sigma; same stopping
    rule as :func:`em` plus info keys "iterations", "objective", "converged".
    """
    sigma = _check_sigma(sigma, lam)
    M, K = sigma.shape
    prior = check_prior(prior, K, sigma)
    if acceleration not in (None, "none", "squarem"):
        raise ValueError(f"acceleration must be None or 'squarem', got {acceleration!r}")
    logs = safe_log(sigma)
    logu = safe_log(prior)

    def F(z):
        return float(_objective_unchecked(z, sigma, lam, prior, "kl", "shannon"))

    if lam == 0:
        # argmax of sigma, unit mass split uniformly over tied argmaxes (computed in sigma's dtype)
        t = (sigma == sigma.amax(-1, keepdim=True)).to(sigma.dtype)
        y = t / t.sum(-1, keepdim=True)
        return y, {"iterations": 0, "objective": [F(y)], "converged": True, "dual_gap": 0.0}
    y = sigma.clone() if y0 is None else y0.to(dtype=sigma.dtype, device=sigma.device).clone()
    shift = logs / lam + logu

    def G(z):
        logz = safe_log(z)
        logzbar = torch.logsumexp(logz, 0) - math.log(M)
        return torch.softmax(logz + shift - logzbar, -1)

    # the checked objective on entry also validates y0's shape; the iterations use the unchecked F
    info = {"objective": [float(self_labeling_objective(y, sigma, lam, prior, "kl", "shannon"))], "converged": False}
    y = _iterate(G, F, y, tol, max_iter, acceleration, info)
    p = lam * (safe_log(y.mean(0)) - logu)
    p = torch.where(torch.isfinite(p), p, torch.full_like(p, torch.finfo(p.dtype).max / 4))
    dual = (p - logs).amin(1).mean() - lam * torch.logsumexp(logu + p / lam, 0)
    info["dual_gap"] = info["objective"][-1] - float(dual)
    return y, info
