"""Optimality certificate for L_CCE+ and L_CCE: a Lagrange-dual lower bound."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..losses import check_prior, safe_log
from ._common import _check_sigma


def dual_bound(y: Tensor, sigma: Tensor, lam: float, prior=None, fairness: str = "reverse_kl",
               n_bisect: int = 80) -> float:
    """Lagrange-dual lower bound on min_y of mean_i H2(y_i, sigma_i) + lam * fairness (eq. 10/11).

    With s_i = sigma_i . y_i and q = ybar dualized (multipliers -alpha_i / M and -beta_k),
        D(alpha, beta) = mean_i [1 + ln alpha_i - max_k (alpha_i sigma_ik + beta_k)] + Q(beta),
        Q = lam + lam sum_k u_k ln(beta_k / lam) ("reverse_kl", beta > 0) or
        Q = -lam ln sum_k u_k exp(-beta_k / lam) ("kl"),
    a lower bound for every alpha > 0 and beta. beta is read off y (beta_k = lam u_k / ybar_k or
    -lam ln(ybar_k / u_k), the KKT values) and each alpha_i maximizes its concave 1-D term by
    bisection, so F(y) - D -> 0 as y -> y*. y, sigma (M, K) -> float.
    """
    sigma = _check_sigma(sigma)
    K = sigma.shape[1]
    prior = check_prior(prior, K, sigma)
    y = y.to(sigma.dtype)
    if fairness not in ("reverse_kl", "kl"):
        raise ValueError(f"fairness must be 'reverse_kl' or 'kl', got {fairness!r}")
    ybar = y.mean(0)
    if lam == 0:
        beta = torch.zeros_like(ybar)
        Q = 0.0
    elif fairness == "reverse_kl":
        if bool(((ybar <= 0) & (prior > 0)).any()):
            return -math.inf
        beta = torch.where(prior > 0, lam * prior / ybar.clamp_min(torch.finfo(ybar.dtype).tiny),
                           torch.zeros_like(ybar))
        Q = lam + lam * float(torch.special.xlogy(prior, beta / lam).sum())
    else:
        big = torch.finfo(ybar.dtype).max / 4
        beta = -lam * (safe_log(ybar) - safe_log(prior))
        # classes with u_k = 0 must stay empty: beta_k -> -inf keeps them out of the max
        beta = torch.where(prior > 0, beta.clamp(max=big), torch.full_like(beta, -big))
        Q = -lam * float(torch.logsumexp(torch.where(prior > 0, safe_log(prior) - beta / lam, -torch.inf), 0))

    def phi(log_alpha):
        return log_alpha - (log_alpha.exp()[:, None] * sigma + beta).amax(1)

    # phi is concave in alpha; its right derivative 1/alpha - sigma_{k*(alpha)} decides the side.
    smax = sigma.amax(1)
    lo = -torch.log(smax)
    hi = lo + 60.0
    for _ in range(n_bisect):
        mid = 0.5 * (lo + hi)
        a = mid.exp()
        val = a[:, None] * sigma + beta
        kstar = (val == val.amax(1, keepdim=True)) * sigma
        slope = 1.0 / a - kstar.amax(1)
        up = slope > 0
        lo = torch.where(up, mid, lo)
        hi = torch.where(up, hi, mid)
    s = (sigma * y).sum(1)
    plug = torch.where(s > 0, -torch.log(s.clamp_min(torch.finfo(s.dtype).tiny)), lo)
    best = torch.maximum(phi(lo), phi(plug))
    return float(1.0 + best.mean()) + Q
