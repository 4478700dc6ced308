"""Pseudo-label solvers (the y-step of self-labeling): EM, PGD, SeLa Sinkhorn, MI-ADM.

POT-style plain functions: each takes predictions ``sigma`` (M, K), rows on the
simplex, and returns ``(y, info)`` with pseudo-labels ``y`` (M, K) and a dict.
All are batched over M (no Python loop over points), run on CPU and CUDA and
accept float32 and float64. Equation numbers refer to Zhang & Boykov.

Convergence test shared by ``em``, ``pgd`` and ``mi_adm`` (:func:`converged`):
stop after the iteration where ``|F_prev - F| <= tol * |F_prev|`` for the
objective F, i.e. the relative change of the objective falls below ``tol``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .losses import _objective_unchecked, check_prior, safe_log, self_labeling_objective

__all__ = [
    "m_step",
    "em",
    "em_map",
    "pgd",
    "proj_simplex",
    "proj_simplex_sort",
    "sinkhorn",
    "mi_adm",
    "converged",
    "dual_bound",
]


def converged(f_prev: float, f: float, tol: float) -> bool:
    """The shared stopping rule: ``|f_prev - f| <= tol * |f_prev|`` (both finite)."""
    if not (math.isfinite(f_prev) and math.isfinite(f)):
        return False
    return abs(f_prev - f) <= tol * abs(f_prev)


def _check_sigma(sigma: Tensor, lam: float | None = None) -> Tensor:
    if not isinstance(sigma, Tensor):
        sigma = torch.as_tensor(sigma)
    if sigma.dim() != 2:
        raise ValueError(f"sigma must be (M, K), got shape {tuple(sigma.shape)}")
    if not sigma.is_floating_point():
        sigma = sigma.to(torch.get_default_dtype())
    if bool((sigma < 0).any()) or not bool(torch.isfinite(sigma).all()):
        raise ValueError("sigma must be finite and non-negative")
    if lam is not None and not (lam >= 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    return sigma


# ----------------------------------------------------------------------------
# M-step, eq. (15)-(17) and Appendix C
# ----------------------------------------------------------------------------
class _SigmaPrep:
    """What the M-step needs from sigma alone (computed once per EM run)."""

    def __init__(self, sigma: Tensor):
        one, zero = torch.ones_like(sigma), torch.zeros_like(sigma)
        smax = sigma.amax(-1, keepdim=True)
        pos = smax > 0
        smax_safe = torch.where(pos, smax, torch.ones_like(smax))
        tied = (sigma == smax) | ~pos  # argmaxes of sigma; an all-zero row reads as uniform
        self.tied = tied
        self.tied_f = tied.to(sigma.dtype)
        self.r = torch.where(tied, one, sigma / smax_safe)
        # (sigma_max - sigma_k) is exact for close values (Sterbenz), unlike 1 - r_k.
        self.one_minus_r = torch.where(tied, zero, (smax - sigma) / smax_safe)
        self.r_over_one_minus_r = torch.where(tied, zero, self.r / torch.where(tied, one, self.one_minus_r))
        self.inv_r = torch.where(self.r > 0, 1.0 / torch.where(self.r > 0, self.r, one), zero)
        self.ties_split = self.tied_f / self.tied_f.sum(-1, keepdim=True)
        self.dtype = sigma.dtype

    def rows(self, sl: slice) -> "_SigmaPrep":
        out = object.__new__(_SigmaPrep)
        for k, v in self.__dict__.items():
            out.__dict__[k] = v[sl] if isinstance(v, Tensor) else v
        return out


# On CPU the M-step runs over blocks of rows of about this many entries, so that its
# temporaries stay in cache (several times faster for M * K in the millions).
_CPU_BLOCK = 1 << 16


def _m_step(p: _SigmaPrep, w: Tensor, d0: Tensor | None = None, max_newton: int = 100) -> tuple[Tensor, dict]:
    M, K = w.shape
    block = max(1, _CPU_BLOCK // K)
    if w.device.type == "cpu" and M > 2 * block:
        parts = [_m_step(p.rows(slice(i, i + block)), w[i:i + block],
                         None if d0 is None else d0[i:i + block], max_newton) for i in range(0, M, block)]
        return torch.cat([y for y, _ in parts]), {
            "newton_iterations": max(i["newton_iterations"] for _, i in parts),
            "closed_form": torch.cat([i["closed_form"] for _, i in parts]),
            "d": torch.cat([i["d"] for _, i in parts]),
            "newton_converged": all(i["newton_converged"] for _, i in parts),
        }
    eps = torch.finfo(p.dtype).eps
    tiny = torch.finfo(p.dtype).tiny
    r = p.r

    W = w.sum(-1, keepdim=True)
    c = 1.0 + W
    a = c * p.one_minus_r  # the denominators at d = 0 (zero on the argmaxes)
    w_tied = torch.linalg.vecdot(w, p.tied_f).unsqueeze(-1)
    # h(0) = sum_k w_k / (c (1 - r_k)) and 1 - h(0) = (1 - q) / c with q = sum_k w_k r_k / (1 - r_k):
    # the second form has no cancellation when the leftover mass 1 - h(0) is tiny.
    q = torch.linalg.vecdot(w, p.r_over_one_minus_r).unsqueeze(-1)
    closed = (w_tied == 0) & (q <= 1)

    # Lemma 1's start in d: max_k (w_k - c (1 - r_k)) / r_k (the terms of classes with w_k = 0 or
    # r_k = 0 are <= 0 and those of the argmaxes are w_k, all harmless), or the sum of w over the
    # argmaxes when larger; both are lower bounds of the root. A warm start d0 (the previous
    # EM iteration's root) is taken when larger.
    d = torch.maximum(((w - a) * p.inv_r).amax(-1, keepdim=True), w_tied)
    if d0 is not None:
        d = torch.maximum(d, d0)
    else:
        # w_tied / d* = 1 - h_rest(d*) <= 1 - h_rest(W), h_rest = the sum over the non-argmax
        # classes (decreasing in d), so d* >= w_tied / (1 - h_rest(W)); far tighter than w_tied
        # when heavy classes with small sigma take nearly all the mass.
        h_rest_w = torch.linalg.vecdot(w * (1.0 - p.tied_f), torch.reciprocal(c - r)).unsqueeze(-1)
        d = torch.maximum(d, torch.where(h_rest_w < 1, w_tied / (1.0 - h_rest_w), w_tied))
    # d > 0 keeps every denominator positive. A start right of the root is harmless: Newton on
    # the concave 1/h lands left of it (or halves d) and then increases monotonically.
    d = torch.minimum(torch.maximum(d, eps * W), W)
    d = torch.where(closed, W, d)  # placeholder, closed rows are filled in below

    wr = w * r
    active = ~closed
    n_it = 0
    htol = 4.0 * eps * math.sqrt(K)
    while n_it < max_newton and bool(active.any()):
        n_it += 1
        inv_den = torch.reciprocal(torch.addcmul(a, r, d))
        # h - 1 = (T - 1) / c with T = (c - d) sum_k w_k r_k / D_k = (sigma . y) / x: exact, and
        # free of the cancellation of sum_k y_k - 1 when c is large; |T - 1| is also the
        # relative KKT residual, so it is what the stopping test looks at.
        t_m1 = (1.0 + (W - d)) * torch.linalg.vecdot(wr, inv_den).unsqueeze(-1) - 1.0
        h_m1 = t_m1 / c
        hp = torch.linalg.vecdot(wr * inv_den, inv_den).unsqueeze(-1).clamp_min(tiny)  # -h'(d) > 0
        d_new = torch.minimum(torch.maximum(d + (1.0 + h_m1) * h_m1 / hp, 0.5 * d), W)
        done = (t_m1.abs() <= htol) | ((d_new - d).abs() <= 4.0 * eps * d_new)
        d = torch.where(active, d_new, d)
        active = active & ~done

    if bool(closed.any()):
        d = torch.where(closed, torch.zeros_like(d), d)
        y = w / torch.addcmul(a, r, d).clamp_min(tiny)  # zero-weight argmaxes of closed rows: 0 / tiny
        # Closed-form rows: the leftover mass 1 - h(0) on the (weightless) argmaxes of sigma.
        y = torch.where(closed & p.tied, ((1.0 - q) / c).clamp_min(0.0) * p.ties_split, y)
    else:
        y = w / torch.addcmul(a, r, d).clamp_min(tiny)
    y = y / y.sum(-1, keepdim=True)
    return y, {"newton_iterations": n_it, "closed_form": closed.squeeze(-1), "d": d.squeeze(-1),
               "newton_converged": not bool(active.any())}


def m_step(sigma: Tensor, weights: Tensor, max_newton: int = 100) -> tuple[Tensor, dict]:
    """Solve min_y -ln(sigma_i . y) - sum_k w_ik ln y_k over the simplex for all rows, eq. (15).

    sigma, weights: (M, K), weights >= 0 (in EM, w_ik = lam * M * u_k * S_ik). Returns y (M, K)
    and info {"newton_iterations": int, "newton_converged": bool, "closed_form": (M,) bool, "d": (M,)}.

    Main case (eq. 16-17): y_k = w_k / (c - sigma_k / x), c = 1 + sum_k w_k. We solve in
    d = c - sigma_max / x in (0, sum w] instead of x: with r_k = sigma_k / sigma_max the
    denominators become c (1 - r_k) + r_k d, sums of non-negative terms, so there is no
    cancellation near the left end point (x -> sigma_max / c is d -> 0). Newton is run on
    1 / h(d) - 1, h(d) = sum_k y_k: h is a sum of 1/affine terms, so 1/h is concave and
    increasing in d (Cauchy-Schwarz), exactly linear for one term, and Newton started left
    of the root (Lemma 1's l, i.e. d_0 = max_k (w_k - c (1 - r_k)) / r_k, or the sum of w over
    the argmaxes of sigma when larger) increases monotonically to it. The residual is taken
    as h - 1 = (T - 1) / c with T = (sigma . y) / x, which does not cancel for large c
    (lam = 1e6) and is the relative KKT residual; Newton stops at |T - 1| <= 4 eps sqrt(K).

    Appendix C: classes with w_k = 0 get y_k = 0 except possibly the argmaxes of sigma. If no
    argmax of sigma has weight and h(0) = sum_k w_k / (c (1 - r_k)) <= 1, the optimum is
    the closed form at d = 0 (x = sigma_max / c) with the remaining mass 1 - h(0) on the
    argmaxes, split uniformly among tied argmaxes (any split is optimal). This covers
    lam = 0 (all w = 0: y = uniform over argmax sigma, one-hot without ties) and Example 3's
    one-hot sigma. Otherwise y_c = 0 on zero-weight classes and Newton solves the rest.
    The problem is invariant to the scale of sigma_i; an all-zero sigma row is read as uniform.
    """
    sigma = _check_sigma(sigma)
    w = weights.to(sigma.dtype)
    if w.shape != sigma.shape:
        raise ValueError(f"weights shape {tuple(w.shape)} != sigma shape {tuple(sigma.shape)}")
    if bool((w < 0).any()) or not bool(torch.isfinite(w).all()):
        raise ValueError("weights must be finite and non-negative")
    return _m_step(_SigmaPrep(sigma), w, max_newton=max_newton)


# ----------------------------------------------------------------------------
# EM for L_CCE+ (eq. 11/19), Section 4
# ----------------------------------------------------------------------------
def _m_weights(y: Tensor, lam: float, prior: Tensor) -> Tensor:
    # w_ik = lam * M * u_k * S_ik with S_ik = y_ik / sum_j y_jk (E-step, eq. 14).
    # Entries below the smallest normal float are flushed to 0: subnormal arithmetic is slow
    # on CPUs, and such entries only ever shrink (their class is not the argmax of sigma_i).
    tiny = torch.finfo(y.dtype).tiny
    if float(y.amin()) < tiny:
        y = torch.where(y >= tiny, y, torch.zeros_like(y))
    col = y.sum(0, keepdim=True)
    scale = torch.where(col > 0, (lam * y.shape[0]) * prior / torch.where(col > 0, col, torch.ones_like(col)),
                        torch.zeros_like(col))
    return y * scale


def em_map(y: Tensor, sigma: Tensor, lam: float, prior=None) -> Tensor:
    """One EM iteration y -> M(E(y)) for L_CCE+: E-step (14), then the M-step (15) of every point."""
    sigma = _check_sigma(sigma)
    prior = check_prior(prior, sigma.shape[1], sigma)
    return _m_step(_SigmaPrep(sigma), _m_weights(y, lam, prior))[0]


def _objective(y, sigma, lam, prior, fairness="reverse_kl"):
    # Unchecked: called every iteration, on inputs that the solvers validate once on entry.
    return float(_objective_unchecked(y, sigma, lam, prior, fairness, "collision"))


def _iterate(G, F, y, tol, max_iter, acceleration, info):
    """Run the monotone map G from y until :func:`converged`; plain or safeguarded SQUAREM.

    Appends F after every iteration to info["objective"] (which holds F(y) on entry) and sets
    info["iterations"], info["converged"] (and info["accepted"] for SQUAREM).
    """
    it = 0
    if acceleration == "squarem":
        info["accepted"] = 0
        step_max = 1.0
        floor = math.log(torch.finfo(y.dtype).tiny) + 10.0
        t0 = torch.log(y)  # log 0 = -inf marks entries the extrapolation leaves alone
        while it < max_iter:
            it += 1
            y1 = G(y)
            y2 = G(y1)
            f2 = F(y2)
            t1, t2 = torch.log(y1), torch.log(y2)
            rr = t1 - t0
            vv = t2 - 2.0 * t1 + t0
            fin = torch.isfinite(vv)  # all three finite
            if not bool(fin.all()):
                rr = torch.where(fin, rr, torch.zeros_like(rr))
                vv = torch.where(fin, vv, torch.zeros_like(vv))
            rn, vn = float(torch.linalg.vector_norm(y2 * rr)), float(torch.linalg.vector_norm(y2 * vv))
            y_new, f_new, t_new = y2, f2, t2
            if vn > 0 and math.isfinite(rn) and math.isfinite(vn):
                alpha = -min(max(rn / vn, 1.0), step_max)
                for _ in range(4):  # the extrapolation, then 3 halvings towards alpha = -1
                    tx = t0.add(rr, alpha=-2.0 * alpha).add_(vv, alpha=alpha * alpha)
                    # floor at e^floor (normal floats) below the row max: extrapolated entries stay
                    # positive (EM could not revive a 0) and exp avoids its slow subnormal path
                    tx = torch.where(fin, torch.maximum(tx, tx.amax(-1, keepdim=True) + floor), t2)
                    y3 = G(torch.softmax(tx, -1))
                    f3 = F(y3)
                    if math.isfinite(f3) and f3 <= f2:
                        y_new, f_new, t_new = y3, f3, None
                        info["accepted"] += 1
                        if -alpha == step_max:
                            step_max *= 4.0
                        break
                    if alpha >= -1.0:
                        break
                    alpha = (alpha - 1.0) / 2.0
                if y_new is y2:
                    step_max = max(1.0, step_max / 4.0)
            y = y_new
            t0 = torch.log(y) if t_new is None else t_new
            info["objective"].append(f_new)
            if converged(info["objective"][-2], f_new, tol):
                info["converged"] = True
                break
    else:
        while it < max_iter:
            it += 1
            y = G(y)
            info["objective"].append(F(y))
            if converged(info["objective"][-2], info["objective"][-1], tol):
                info["converged"] = True
                break
    info["iterations"] = it
    return y


def em(
    sigma: Tensor,
    lam: float,
    prior=None,
    y0: Tensor | None = None,
    tol: float = 1e-7,
    max_iter: int = 1000,
    acceleration: str | None = None,
) -> tuple[Tensor, dict]:
    """EM of Section 4 for L_CCE+ = mean_i H2(y_i, sigma_i) + lam * KL(u || ybar), eq. (11)/(19).

    sigma (M, K); returns y (M, K) minimizing exactly
    ``self_labeling_objective(y, sigma, lam, prior, "reverse_kl", "collision")``.
    Derivation (Jensen on -ln, tight at the E-step):
      -ln ybar_k = -ln sum_i S_ik y_ik / (M S_ik) <= -sum_i S_ik ln(y_ik / (M S_ik)),
      tight at S_ik = y_ik / sum_j y_jk (E-step, eq. 14); M times the bound splits into
      per-point problems (15) with weights w_ik = lam * M * u_k * S_ik (M-step, :func:`m_step`).
    Eq. (15) read literally (weights lam * u_k * S_ik) is this algorithm with lam / M for lam.

    y0 defaults to sigma (Algorithm 1's warm start); zeros in y0 are allowed (Property 1:
    the positive set only grows). Stops by :func:`converged` (relative objective change
    <= tol) or after max_iter iterations.

    ``acceleration="squarem"``: SQUAREM (Varadhan & Roland 2008, step S3) on the EM map.
    From y0 -> y1 -> y2 (two EM steps) it extrapolates in log y, so the point stays positive,
    theta' = t0 - 2 a r + a^2 v (r = t1 - t0, v = t2 - 2 t1 + t0, t = ln y, rows renormalized),
    with a = -max(1, |r|_y / |v|_y) capped by an adaptive step_max; |.|_y weights each entry
    by y2_ik, so entries decaying to 0 (linear in ln y) do not set the step. One EM step from
    theta' is kept if its objective is <= that of y2; otherwise a is halved towards -1 (3 tries)
    and then y2 is taken: every iteration is non-increasing and at least as good as two plain
    EM steps. info["em_steps"] counts EM maps (3 to 6 per SQUAREM iteration).

    info: "iterations", "objective" (after every iteration, starting with the initial),
    "converged", "em_steps", "newton_iterations" (max over M-steps), and for SQUAREM
    "accepted" (extrapolations kept).
    """
    sigma = _check_sigma(sigma, lam)
    M, K = sigma.shape
    prior = check_prior(prior, K, sigma)
    if acceleration not in (None, "none", "squarem"):
        raise ValueError(f"acceleration must be None or 'squarem', got {acceleration!r}")
    y = sigma.clone() if y0 is None else y0.to(dtype=sigma.dtype, device=sigma.device).clone()
    if y.shape != sigma.shape:
        raise ValueError(f"y0 shape {tuple(y.shape)} != sigma shape {tuple(sigma.shape)}")
    prep = _SigmaPrep(sigma)
    info = {"objective": [_objective(y, sigma, lam, prior)], "converged": False, "em_steps": 0,
            "newton_iterations": 0}

    d_prev = [None]

    def G(z):
        info["em_steps"] += 1
        out, mi = _m_step(prep, _m_weights(z, lam, prior), d_prev[0])
        d_prev[0] = mi["d"].unsqueeze(-1)
        info["newton_iterations"] = max(info["newton_iterations"], mi["newton_iterations"])
        return out

    y = _iterate(G, lambda z: _objective(z, sigma, lam, prior), y, tol, max_iter, acceleration, info)
    return y, info


# ----------------------------------------------------------------------------
# Optimality certificate for L_CCE+ and L_CCE
# ----------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------
# Projected gradient descent
# ----------------------------------------------------------------------------
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
    keys as :func:`em` ("iterations", "objective", "converged").

    ``step="armijo"``: backtracking on the sufficient-decrease condition of projected gradient
    steps, M F(y+) <= M F(y) + <g, y+ - y> + |y+ - y|^2 / (2 t) (Beck & Teboulle 2009), halving t
    until it holds and doubling it after each accepted step. Every iteration then decreases
    the objective whatever the scale of lam, at the price of extra objective evaluations
    (info["evaluations"]); the fixed steps are for the comparison of Table 1.
    """
    sigma = _check_sigma(sigma, lam)
    M, K = sigma.shape
    prior = check_prior(prior, K, sigma)
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


# ----------------------------------------------------------------------------
# SeLa: equal-partition pseudo-labels by entropic optimal transport, eq. (4)
# ----------------------------------------------------------------------------
def sinkhorn(
    sigma: Tensor,
    n_iter: int = 1000,
    epsilon: float = 0.05,
    prior=None,
    tol: float = 1e-9,
) -> tuple[Tensor, dict]:
    """SeLa pseudo-labels (eq. 4): entropic OT from points (mass 1/M) to classes (mass u_k).

    Cost -ln sigma_ik, regularization epsilon; log-domain Sinkhorn in torch (CPU and CUDA):
    P_ik = exp(ln(sigma_ik) / epsilon + alpha_i + beta_k). Iterates until the row-marginal
    L1 error is <= tol (column marginals are exact after each update) or n_iter. Returns
    hard one-hot y (M, K) = argmax_k P_ik and info {"plan": P (M, K), "iterations",
    "marginal_error", "converged"}.
    """
    sigma = _check_sigma(sigma)
    M, K = sigma.shape
    prior = check_prior(prior, K, sigma)
    logk = safe_log(sigma) / epsilon
    loga = torch.full((M,), -math.log(M), dtype=sigma.dtype, device=sigma.device)
    logb = safe_log(prior)
    beta = torch.zeros(K, dtype=sigma.dtype, device=sigma.device)
    err = float("inf")
    it = 0
    while it < n_iter:
        it += 1
        alpha = loga - torch.logsumexp(logk + beta, 1)
        beta = logb - torch.logsumexp(logk + alpha[:, None], 0)
        if it % 10 == 0 or it == n_iter:
            row = torch.logsumexp(logk + beta, 1) + alpha
            err = float((row.exp() - loga.exp()).abs().sum())
            if err <= tol:
                break
    logp = logk + alpha[:, None] + beta
    plan = logp.exp()
    y = torch.nn.functional.one_hot(logp.argmax(1), K).to(sigma.dtype)
    return y, {"plan": plan, "iterations": it, "marginal_error": err, "converged": err <= tol}


# ----------------------------------------------------------------------------
# MI-ADM: the y-step of L_ce+kl, eq. (5)
# ----------------------------------------------------------------------------
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
