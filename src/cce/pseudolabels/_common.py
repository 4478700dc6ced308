"""What the solvers share: input checks, the stopping rule and the monotone iteration (plain or SQUAREM)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..losses import _objective_unchecked, check_prior, uniform_prior


def _solver_prior(prior, K: int, sigma: Tensor, lam: float) -> Tensor:
    """``check_prior``, then uniform where lam = 0: the objective drops the fairness term there, so
    the prior has no effect, and a zero entry would give 0 * inf in the gradient of KL(ybar || u)."""
    prior = check_prior(prior, K, sigma)
    return uniform_prior(K, sigma) if lam == 0 else prior


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
    # one device sync on the common path: min >= 0 is false for NaN too, and a finite total of
    # non-negative entries has no infinite entry; only a non-finite total needs the exact test
    low, total = torch.stack([sigma.amin(), sigma.sum()]).tolist() if sigma.numel() else (0.0, 0.0)
    if not low >= 0 or (not math.isfinite(total) and not bool(torch.isfinite(sigma).all())):
        raise ValueError("sigma must be finite and non-negative")
    if lam is not None and not (lam >= 0 and math.isfinite(lam)):
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    return sigma


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
