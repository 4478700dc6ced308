"""The y-step of L_CCE+ and L_CCE by interior-point methods: primal-dual, barrier where it stalls.

Problem (eq. 10/11 for fixed sigma): over y (M, K) with rows in the probability simplex,

    F(y) = mean_i -ln(sigma_i . y_i) + lam * Phi(ybar),   ybar = mean_i y_i,
    Phi = KL(u || ybar) ("reverse_kl", L_CCE+) or KL(ybar || u) ("kl", L_CCE).

The M points are coupled only through ybar, K numbers. The Hessian of M * F is therefore
block-diagonal by point, each block a rank-one matrix sigma_i sigma_i^T / s_i^2 (s_i = sigma_i . y_i),
plus lam * Phi''(ybar) / M on every pair of entries of one column: a rank-K term. With the
log barrier -sum ln y_ik, one Newton step costs O(M K^2) (a K x K linear system after the
Sherman-Morrison solve of each point's block with its simplex constraint), independent of how
close the optimum is to the simplex boundary, where EM converges sublinearly (Table 1).

The barrier method (Boyd & Vandenberghe, Convex Optimization, Section 11.3) minimizes
t * M * F(y) - sum_ik ln y_ik for t = t0, mu t0, mu^2 t0, ... by Newton steps with backtracking; at the
exact minimizer for t, F(y) - F* <= K / t (M K inequality constraints, objective scaled by M).
The barrier method stops when K / t <= tol * max(F, 1e-3); ``info["dual_gap"]``
(from :func:`cce.pseudolabels.dual_bound`, a bound that does not rely on centering) certifies
the result when ``certify=True``.

The defaults t0 = 100, mu = 30 and center_tol = 50 took the fewest Newton steps on batches of
digits and Fashion-MNIST runs (32 and 42, median, at tol 1e-6; t0 = 1, mu = 100 and center_tol = 10
took 46 and 53).

The default is a primal-dual method (Nocedal & Wright, Numerical Optimization, Sections 14.2
and 19.3). It keeps multipliers lambda (M, K) of y >= 0 and
takes Newton steps on the KKT conditions with y * lambda = tau, tau set by Mehrotra's
predictor-corrector rule, instead of a barrier weight raised stage by stage. Its step is the
barrier's with diag(lambda / y) in place of the barrier Hessian, solved by the same O(M K^2)
algebra in the scaled variable d / sqrt(y / lambda); a backtracking line search on
F - tau sum ln y keeps it monotone in that merit (the multipliers' step is cut with y's); where
no step lowers the merit (the solve's accuracy runs out near the limits of float64) it gives up.
It stops on the Frank-Wolfe gap, sum_ik y_ik (g_ik - min_k g_ik) / M <= tol * max(F, 1e-3)
(g the gradient of M * F), an upper bound on F(y) - F* for the convex F that needs no centering. On batches of digits and
Fashion-MNIST runs it took 9 and 13 iterations (median, tol 1e-6) against the barrier's 31 and 41
Newton steps, an iteration costing about twice a Newton step. Where it has stopped or has not
met tol within ``PRIMAL_DUAL_BUDGET`` iterations (seen at lam = 1e4 with tol 1e-9 or tighter, and
at tol 1e-13), the barrier method solves from y0 with the iterations left.

Both methods run as torch operations on CUDA (:func:`_primal_dual`, :func:`_barrier`) and compiled
by numba on the CPU (``_barrier_cpu``), where torch's per-operation overhead on these small
tensors would be most of the time; the two versions take the same steps up to rounding, which
can change the last iterations at lam = 1e4 or tol below 1e-9 (tested).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._common import _check_sigma, _solver_prior
from ._dual import dual_bound

__all__ = ["interior_point"]

# Primal-dual iterations before the barrier method takes over (9 on digits batches and 13 to 17 on
# Fashion-MNIST are typical at tol 1e-6; 30 at most on the tests' inputs that converge)
PRIMAL_DUAL_BUDGET = 50
# The primal-dual method starts at y0 mixed this much with uniform. From a start near the simplex's
# boundary (y0 = sigma of a confident network) its first steps are cut to a few percent by the
# fraction-to-boundary rule; on batches of Fashion-MNIST runs 0.3 took 13 and 17 iterations (median,
# early and late in training) against 16 and 22 (mean) from 1e-3, and the same 9 on digits. The
# price: a y0 near the optimum saves little (from the optimum itself, 11 iterations instead of 4).
PRIMAL_DUAL_START_MIX = 0.3


def _parts(y: Tensor, sigma: Tensor, lam: float, prior: Tensor, reverse: bool):
    """M * F(y) and sum_ik ln y_ik (floats, one device sync), the row dot products s (M,), ybar (K,)."""
    M = y.shape[0]
    s = (sigma * y).sum(1)
    ybar = y.mean(0)
    if reverse:
        fair = torch.special.xlogy(prior, prior).sum() - torch.special.xlogy(prior, ybar).sum()
    else:
        fair = torch.special.xlogy(ybar, ybar).sum() - torch.special.xlogy(ybar, prior).sum()
    g, log_y = torch.stack([-torch.log(s).sum() + lam * M * fair, torch.log(y).sum()]).tolist()
    return g, log_y, s, ybar


def _gradient(y: Tensor, sigma: Tensor, s: Tensor, ybar: Tensor, lam: float, prior: Tensor,
              reverse: bool) -> tuple[Tensor, Tensor]:
    """The gradient of M * F (M, K) and the column coupling c = lam * Phi''(ybar) / M (K,)."""
    M = y.shape[0]
    if reverse:
        grad_fair = -prior / ybar
        c = lam * prior / ybar.square() / M
    else:
        grad_fair = torch.log(ybar) - torch.log(prior) + 1.0
        c = lam / ybar / M
    return lam * grad_fair - sigma / s[:, None], c


class _ScaledNewtonSystem:
    """The Newton system of M * F (times t) on the simplex rows, plus the identity, in delta = d / x.

    Per point, P_i = I + (t / s_i^2) v_i v_i^T with v_i = x_i * sigma_i, and the row-sum constraint
    x_i . delta_i = 0; S_i(r) = P_i^-1 r - e_i (e_i . r) / (x_i . e_i), e_i = P_i^-1 x_i
    (Sherman-Morrison). The columns are coupled by t * c_k, c_k = lam * Phi''_k(ybar) / M, which
    enters every row as a price z (K,): delta_i = S_i(rho_i - x_i * z), z solving (I + T G) z = T a
    with T = diag(t c), a = sum_i x_i * S_i(rho_i), G = sum_i X_i S_i X_i (positive semi-definite;
    solved as I + T^1/2 G T^1/2). x = y for the barrier (its Hessian is the identity in y-units),
    x = sqrt(y / lambda) for the primal-dual method (t = 1).
    """

    def __init__(self, x: Tensor, sigma: Tensor, s: Tensor, t: float, c: Tensor):
        self.x = x
        self.v = x * sigma
        alpha = t / s.square()
        self.beta = alpha / (1.0 + alpha * self.v.square().sum(1))
        self.e = self._p_inv(x)
        self.den = (x * self.e).sum(1)
        xv, xe = x * self.v, x * self.e
        G = torch.diag(x.square().sum(0)) - (xv * self.beta[:, None]).T @ xv - (xe / self.den[:, None]).T @ xe
        self.root = torch.sqrt(t * c)
        self.A = torch.eye(len(c), dtype=x.dtype, device=x.device) + self.root[:, None] * G * self.root[None, :]

    def _p_inv(self, r):
        return r - (self.beta * (self.v * r).sum(1))[:, None] * self.v

    def _solve_rows(self, r):
        return self._p_inv(r) - ((self.e * r).sum(1) / self.den)[:, None] * self.e

    def delta(self, rho: Tensor) -> Tensor:
        """The scaled step delta (M, K) for the right-hand side rho (M, K); the step is x * delta."""
        a = (self.x * self._solve_rows(rho)).sum(0)
        z = self.root * torch.linalg.solve(self.A, self.root * a)
        return self._solve_rows(rho - self.x * z[None, :])


def _newton_direction(y: Tensor, sigma: Tensor, s: Tensor, ybar: Tensor, t: float, lam: float,
                      prior: Tensor, reverse: bool) -> tuple[Tensor, float]:
    """The Newton step d (M, K) of t * M * F - sum ln y with row sums kept, and the squared decrement.

    Solved in the scaled variable delta = d / y, where the barrier's Hessian is the identity
    (entries near the boundary then cost no precision), by :class:`_ScaledNewtonSystem`.
    rho_i = y_i * (-t grad_i) + 1 with the gradient's y-weighted row mean removed first (a row
    constant does not change the step, and the rest is small near the optimum).
    """
    grad, c = _gradient(y, sigma, s, ybar, lam, prior, reverse)
    grad = grad - (y * grad).sum(1, keepdim=True)
    rho = 1.0 - t * (y * grad)
    delta = _ScaledNewtonSystem(y, sigma, s, t, c).delta(rho)
    return y * delta, float((rho * delta).sum())


def interior_point(
    sigma: Tensor,
    lam: float,
    prior=None,
    fairness: str = "reverse_kl",
    y0: Tensor | None = None,
    tol: float = 1e-9,
    max_iter: int = 200,
    mu: float = 30.0,
    certify: bool = False,
    center_tol: float = 50.0,
    t0: float = 100.0,
) -> tuple[Tensor, dict]:
    """Minimize mean_i H2(y_i, sigma_i) + lam * Phi(ybar) over y (M, K), Phi by ``fairness``.

    Same objective as :func:`cce.pseudolabels.em` ("reverse_kl", L_CCE+, eq. 11) and
    :func:`cce.pseudolabels.pgd` ("kl", L_CCE, eq. 10); see the module docstring for the method.
    lam = 0 drops the fairness term, as in :func:`cce.losses.self_labeling_objective`, so the prior
    has no effect then. y0 (default: sigma; finite, non-negative, a positive entry in every row) is
    moved into the interior (mixed with uniform: ``PRIMAL_DUAL_START_MIX``
    for the primal-dual method, 1e-3 for the barrier method). The primal-dual
    method stops when its Frank-Wolfe gap bound is below tol * max(F, 1e-3) and starts its
    multipliers at complementarity 1 / ``t0``. Where it has not converged within its budget, the
    barrier method, which stops when
    its gap bound K / t is below tol * max(F, 1e-3); t starts at ``t0`` and grows by ``mu`` per
    outer step; each centering stops once the squared Newton decrement (in units of t * M * F) is
    below ``center_tol``: loose centering costs little accuracy because the next outer step
    re-centers, and saves Newton steps. K / t is exact only at exact centering: ``certify=True``
    computes the dual gap, which needs no such assumption. Either method stops after max_iter
    iterations in all.
    info: "method" ("primal_dual" or "barrier", the one that returned y), "iterations" (primal-dual
    iterations plus, after a hand-over, Newton steps), "objective" (F at the start and after every
    iteration of the primal-dual method; when the barrier's y is returned, its own record, from its
    start, follows), "converged", "gap_bound" (the Frank-Wolfe gap or K / t), "t" (final barrier
    weight, barrier only) and, with certify=True, "dual_gap" (F(y) - dual bound >= F(y) - F*).
    Entries the optimum sets to zero come out small and positive (about tol * F / K over their
    multiplier), except the classes that "kl" with a zero prior entry keeps empty: exactly 0.
    """
    sigma = _check_sigma(sigma, lam)
    K = sigma.shape[1]
    prior = _solver_prior(prior, K, sigma, lam)
    if fairness not in ("reverse_kl", "kl"):
        raise ValueError(f"fairness must be 'reverse_kl' or 'kl', got {fairness!r}")
    if bool((sigma.sum(1) <= 0).any()):
        raise ValueError("every row of sigma needs a positive entry")
    if y0 is None:
        y0 = sigma
    else:
        y0 = torch.as_tensor(y0)
        if y0.shape != sigma.shape:
            raise ValueError(f"y0 shape {tuple(y0.shape)} != sigma shape {tuple(sigma.shape)}")
        low, row_low = torch.stack([y0.amin(), y0.sum(1).amin()]).tolist()  # NaN fails both tests
        if not (low >= 0 and row_low > 0 and bool(torch.isfinite(y0).all())):
            raise ValueError("y0 must be finite and non-negative with a positive entry in every row")
    # KL(ybar || u) is finite only with ybar_k = 0 where u_k = 0: those classes stay empty and the
    # problem is solved on the others. float64 throughout: the late barrier steps need its precision.
    keep = None if fairness == "reverse_kl" or bool((prior > 0).all()) else prior > 0  # None: all columns
    sigma64, prior64, y064 = sigma.double(), prior.double(), y0.to(device=sigma.device, dtype=torch.float64)
    if keep is not None:
        sigma64, prior64, y064 = sigma64[:, keep], prior64[keep], y064[:, keep]
        # a row with all its mass on the emptied classes: F = +inf for sigma, no start for y0
        for name, a in (("sigma", sigma64), ("y0", y064)):
            if bool((a.sum(1) <= 0).any()):
                raise ValueError(f"with fairness='kl' and a zero prior entry, every row of {name} needs a positive "
                                 "entry in a class of positive prior (those with prior 0 stay empty)")
    reverse = fairness == "reverse_kl"
    # compiled on the CPU, where torch's per-operation overhead would dominate; torch on CUDA
    primal_dual, barrier = ((_primal_dual_compiled, _barrier_compiled) if sigma.device.type == "cpu"
                            else (_primal_dual, _barrier))
    y_kept, info = primal_dual(sigma64, prior64, lam, reverse, y064, tol, min(max_iter, PRIMAL_DUAL_BUDGET), t0)
    if not info["converged"] and info["iterations"] < max_iter:
        # the rare input where the primal-dual iteration stalls: the barrier method from y0
        y_b, info_b = barrier(sigma64, prior64, lam, reverse, y064, tol, max_iter - info["iterations"], mu, center_tol,
                              t0)
        iterations = info["iterations"] + info_b["iterations"]
        if info_b["converged"] or info_b["objective"][-1] < info["objective"][-1]:
            info_b["objective"] = info["objective"] + info_b["objective"]
            y_kept, info = y_b, info_b
        info["iterations"] = iterations  # the work of both
    if keep is None:
        y = y_kept.to(sigma.dtype)
    else:
        y = torch.zeros_like(sigma)
        y[:, keep] = y_kept.to(sigma.dtype)
    if certify:
        info["dual_gap"] = info["objective"][-1] - dual_bound(y_kept, sigma64, lam, prior64, fairness)
    return y, info


def _primal_dual_compiled(sigma: Tensor, prior: Tensor, lam: float, reverse: bool, y0: Tensor, tol: float,
                          max_iter: int, t0: float, mix: float = PRIMAL_DUAL_START_MIX) -> tuple[Tensor, dict]:
    """The primal-dual method (``_barrier_cpu.primal_dual``) on validated float64 CPU inputs."""
    from ._barrier_cpu import primal_dual

    y, objective, n_obj, it, gap, converged = primal_dual(
        sigma.contiguous().numpy(), prior.contiguous().numpy(), float(lam), bool(reverse), y0.contiguous().numpy(),
        float(tol), int(max_iter), float(t0), float(mix))
    info = {"objective": objective[:n_obj].tolist(), "converged": bool(converged), "iterations": int(it),
            "gap_bound": float(gap), "method": "primal_dual"}
    return torch.from_numpy(y), info


def _barrier_compiled(sigma: Tensor, prior: Tensor, lam: float, reverse: bool, y0: Tensor, tol: float,
                      max_iter: int, mu: float, center_tol: float, t0: float) -> tuple[Tensor, dict]:
    """:func:`_barrier` compiled for the CPU (``_barrier_cpu``): same steps, no per-operation overhead."""
    from ._barrier_cpu import barrier

    y, objective, n_obj, it, t, converged = barrier(
        sigma.contiguous().numpy(), prior.contiguous().numpy(), float(lam), bool(reverse), y0.contiguous().numpy(), float(tol), int(max_iter),
        float(mu), float(center_tol), float(t0))
    info = {"objective": objective[:n_obj].tolist(), "converged": bool(converged), "iterations": int(it),
            "t": float(t), "gap_bound": sigma.shape[1] / t, "method": "barrier"}
    return torch.from_numpy(y), info


def _barrier(sigma: Tensor, prior: Tensor, lam: float, reverse: bool, y0: Tensor, tol: float, max_iter: int,
             mu: float, center_tol: float, t0: float) -> tuple[Tensor, dict]:
    """The barrier method on validated float64 inputs, every prior entry positive for "kl"."""
    M, K = sigma.shape
    y = (1.0 - 1e-3) * y0 / y0.sum(1, keepdim=True) + 1e-3 / K
    g, log_y, s, ybar = _parts(y, sigma, lam, prior, reverse)
    info = {"objective": [g / M], "converged": False, "method": "barrier"}
    t = t0
    it = 0
    while it < max_iter:
        # centering: Newton with backtracking on phi = t * g - sum ln y
        for _ in range(50):
            if it >= max_iter:
                break
            d, dec2 = _newton_direction(y, sigma, s, ybar, t, lam, prior, reverse)
            if dec2 <= 0:  # centered to rounding: no descent direction left at this t
                break
            it += 1
            neg = d < 0
            to_boundary = float((y[neg] / -d[neg]).min()) if bool(neg.any()) else math.inf
            step = min(1.0, 0.99 * to_boundary)
            phi = t * g - log_y
            while True:
                y_new = y + step * d
                y_new = y_new / y_new.sum(1, keepdim=True)  # rounding drifts the row sums
                g_new, log_y_new, s_new, ybar_new = _parts(y_new, sigma, lam, prior, reverse)
                phi_new = t * g_new - log_y_new
                # Armijo, with slack for rounding: t * g is large once t is
                if phi_new <= phi - 0.25 * step * dec2 + 1e-12 * abs(phi) or step < 1e-12:
                    break
                step *= 0.5
            y, g, log_y, s, ybar = y_new, g_new, log_y_new, s_new, ybar_new
            info["objective"].append(g / M)
            if dec2 <= center_tol:
                break
        if K / t <= tol * max(g / M, 1e-3):
            info["converged"] = True
            break
        t *= mu
    info.update(iterations=it, t=t, gap_bound=K / t)
    return y, info


def _to_boundary(x: Tensor, d: Tensor) -> Tensor:
    """The largest step in (0, 1] that keeps x + step * d positive, 0.995 of the way to the boundary
    (a 0-dim tensor: the caller syncs once for several)."""
    ratio = torch.where(d < 0, 0.995 * x / -d.clamp(max=-torch.finfo(d.dtype).tiny), torch.full_like(x, math.inf))
    return torch.clamp(ratio.min(), max=1.0)


def _primal_dual(sigma: Tensor, prior: Tensor, lam: float, reverse: bool, y0: Tensor, tol: float, max_iter: int,
                 t0: float, mix: float = PRIMAL_DUAL_START_MIX) -> tuple[Tensor, dict]:
    """The primal-dual method (module docstring) on validated float64 inputs, every prior entry
    positive for "kl": the same steps as the compiled ``_barrier_cpu.primal_dual``, in torch."""
    M, K = sigma.shape
    y = (1.0 - mix) * y0 / y0.sum(1, keepdim=True) + mix / K
    f, log_y, s, ybar = _parts(y, sigma, lam, prior, reverse)
    g, c = _gradient(y, sigma, s, ybar, lam, prior, reverse)
    mean = (y * g).sum(1, keepdim=True)
    # lambda, the multipliers of y >= 0: the reduced gradient where positive plus complementarity 1 / t0
    mult = (g - mean).clamp_min(0.0) + 1.0 / (t0 * y)
    info = {"objective": [f / M], "converged": False, "method": "primal_dual"}
    it = 0
    while True:
        # the Frank-Wolfe gap bounds F(y) - F* for convex F: sum_ik y_ik (g_ik - min_k g_ik) / M,
        # a sum of non-negative terms (g_i . y_i - min_k g_ik would cancel at large lam)
        gap, mu = torch.stack([(y * (g - g.amin(1, keepdim=True))).sum() / M, (y * mult).sum() / (M * K)]).tolist()
        if gap <= tol * max(f / M, 1e-3):
            info["converged"] = True
            break
        if it >= max_iter:
            break
        it += 1
        x = torch.sqrt(y / mult)  # the multipliers' block is the identity in d / x
        inv_y = 1.0 / y
        system = _ScaledNewtonSystem(x, sigma, s, 1.0, c)
        dy_a = x * system.delta(-x * (g - mean))  # predictor: complementarity target 0
        dm_a = -mult * (1.0 + inv_y * dy_a)
        step_p, step_d = torch.stack([_to_boundary(y, dy_a), _to_boundary(mult, dm_a)]).tolist()
        mu_aff = float(((y + step_p * dy_a) * (mult + step_d * dm_a)).sum()) / (M * K)
        # Mehrotra's centering target, kept above what tol needs (the gap is about K tau)
        tau = max(mu * (mu_aff / mu) ** 3, 0.1 * tol * max(f, 1e-3 * M) / (M * K))
        for second_order in (True, False):  # the pure centering step where the corrector is no descent
            target = (tau - dy_a * dm_a) * inv_y if second_order else tau * inv_y
            r = g - target
            dy = x * system.delta(-x * (r - (y * r).sum(1, keepdim=True)))
            dm = target - mult * (1.0 + inv_y * dy)
            slope, step_p, step_d = torch.stack([((g - tau * inv_y) * dy).sum(), _to_boundary(y, dy),
                                                 _to_boundary(mult, dm)]).tolist()
            if slope < 0.0:
                break
        step_full = step_p
        phi = f - tau * log_y
        # Armijo on the merit f - tau sum ln y, with slack for rounding; where the slope is >= 0 (the
        # solve lost accuracy near the limits of float64) only a step that does not raise the merit
        descent = min(slope, 0.0)
        while True:
            y_new = y + step_p * dy
            y_new = y_new / y_new.sum(1, keepdim=True)  # rounding drifts the row sums
            f_new, log_y_new, s_new, ybar_new = _parts(y_new, sigma, lam, prior, reverse)
            if f_new - tau * log_y_new <= phi + 0.25 * step_p * descent + 1e-12 * abs(phi):
                break
            step_p *= 0.5
            if step_p < 1e-12:
                break
        if step_p < 1e-12:  # no step lowers the merit: stop, the caller's barrier method takes over
            it -= 1
            break
        step_d *= step_p / step_full  # the multipliers go no further along their step than y goes along its
        y, f, log_y, s, ybar = y_new, f_new, log_y_new, s_new, ybar_new
        mult = mult + step_d * dm
        g, c = _gradient(y, sigma, s, ybar, lam, prior, reverse)
        mean = (y * g).sum(1, keepdim=True)
        info["objective"].append(f / M)
    info.update(iterations=it, gap_bound=gap)
    return y, info
