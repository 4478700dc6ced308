"""EM for L_CCE+ (eq. 11/19, Section 4) and its M-step (eq. 15-17, Appendix C)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..losses import check_prior
from ._common import _check_sigma, _iterate, _objective


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
