"""The interior-point methods of :mod:`._interior_point` compiled for the CPU (numba).

:func:`primal_dual` and :func:`barrier`, each the same algorithm step for step as its torch
version there (the CUDA path; up to rounding, which can change the last iterations at lam = 1e4
or tol below 1e-9), both built on one scaled Newton solve (:func:`_factor`,
:func:`_solve`). On a 250 x 10 batch one barrier Newton step is about 60 small tensor
operations, and torch's dispatch on each is most of a y-step (about 0.5 ms per Newton step in
torch, about 40 microseconds compiled, line search included; a primal-dual iteration about
twice that). Compiled loops remove that overhead; on CUDA the same operations run on the
device. Both versions are tested against each other and against EM.

Arrays are stored transposed, (K, M): every loop then runs over the M points with the K classes
outside, and the points are independent, so the compiler vectorizes those loops (SIMD) without
reordering a sum over points. Per-point sums are arrays of M accumulated class by class; a sum
over all entries adds those M sums.

``error_model="numpy"``: a division by zero gives inf or nan instead of raising, so the compiler
can vectorize the loops that divide (about 9% of a y-step). The caller's checks (every row of
sigma and y0 with a positive entry in the classes solved for) keep y interior and sigma . y > 0, and
the step rules keep the multipliers positive; where rounding leaves a denominator at 0 late in a
solve, the nan shows in the objective record.

``cache=True`` keeps the machine code next to this file (or in numba's user cache where that is
read-only), so only the first process that uses it pays the compilation (some seconds).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# sum ln y is taken as the logs of products of this many entries of y (see _value)
_CHUNK = 4


@njit(cache=True, error_model="numpy")
def _value(Y, S, lam, prior, reverse, s, ybar, prod):
    """M * F(y) and sum_ik ln y_ik for Y = y^T (K, M); fills s (M,) = sigma_i . y_i and ybar (K,)."""
    K, M = Y.shape
    s[:] = 0.0
    log_y = 0.0
    for k0 in range(0, K, _CHUNK):
        # sum ln y as logs of products of _CHUNK entries: a quarter of the logs, which dominate here;
        # in a barrier iterate y rarely falls below 1e-20, so such a product is a normal float
        prod[:] = 1.0
        for k in range(k0, min(k0 + _CHUNK, K)):
            for i in range(M):
                s[i] += S[k, i] * Y[k, i]
                prod[i] *= Y[k, i]
        for i in range(M):
            if prod[i] > 1e-290:
                log_y += math.log(prod[i])
            else:  # the product could have lost digits (subnormal) or underflowed: one log per entry
                for k in range(k0, min(k0 + _CHUNK, K)):
                    log_y += math.log(Y[k, i])
    g = 0.0
    for i in range(M):
        g -= math.log(s[i])
    fair = 0.0
    for k in range(K):
        ybar[k] = Y[k].sum() / M
        if reverse:
            if prior[k] > 0.0:
                fair += prior[k] * (math.log(prior[k]) - math.log(ybar[k]))
        else:
            fair += ybar[k] * (math.log(ybar[k]) - math.log(prior[k]))
    return g + lam * M * fair, log_y


@njit(cache=True, error_model="numpy")
def _factor(X, S, inv_s, t, c, w):
    """The parts of the scaled Newton system that do not depend on its right-hand side.

    In delta = d / x (X = x^T (K, M), the scaling: y for the barrier, sqrt(y / lambda) for the
    primal-dual method) the point blocks are P_i = I + (t / s_i^2) v_i v_i^T, v_i = x_i * sigma_i,
    with the row-sum constraint x_i . delta_i = 0 (Sherman-Morrison: e_i = P_i^-1 x_i), and the
    columns are coupled by t * c_k (c = lam * Phi''(ybar) / M). Fills v, e, b, 1 / den in w and
    returns A = I + root G root (K, K) and root = sqrt(t c) (K,)."""
    K, M = X.shape
    rho, e, v, W, Wb, _, _, vv, vy, _, b, dn, _ = w
    root = np.empty(K)
    for k in range(K):
        root[k] = math.sqrt(t * c[k])
    vv[:] = 0.0
    vy[:] = 0.0
    for k in range(K):
        for i in range(M):
            vk = X[k, i] * S[k, i]
            v[k, i] = vk
            vv[i] += vk * vk
            vy[i] += vk * X[k, i]
    for i in range(M):
        alpha = t * inv_s[i] * inv_s[i]
        b[i] = alpha / (1.0 + alpha * vv[i])
    dn[:] = 0.0
    for k in range(K):
        for i in range(M):
            ek = X[k, i] - b[i] * vy[i] * v[k, i]
            e[k, i] = ek
            dn[i] += X[k, i] * ek
    diag = np.zeros(K)
    for i in range(M):
        dn[i] = 1.0 / dn[i]  # from here on, dn holds 1 / den
    for k in range(K):
        sq = 0.0
        for i in range(M):
            sq += X[k, i] * X[k, i]
            W[k, i] = X[k, i] * v[k, i]
            W[k, M + i] = X[k, i] * e[k, i]
            Wb[k, i] = b[i] * W[k, i]
            Wb[k, M + i] = dn[i] * W[k, M + i]
        diag[k] = sq
    # sum_i b_i (x v)_i (x v)_i^T + (x e)_i (x e)_i^T / den_i in one BLAS call, without square
    # roots of b or 1 / den: at large t, rounding can leave den slightly negative
    WW = W @ Wb.T
    A = np.empty((K, K))
    for k in range(K):
        for l in range(K):
            A[k, l] = root[k] * ((diag[k] if k == l else 0.0) - WW[k, l]) * root[l] + (1.0 if k == l else 0.0)
    return A, root


@njit(cache=True, error_model="numpy")
def _solve(X, A, root, w, D):
    """The step d = x * delta for the right-hand side in w's rho (K, M), written to D, after
    :func:`_factor`: delta_i = S_i(rho_i - x_i * z), S_i(r) = P_i^-1 r - e_i (e_i . r) / den_i,
    z = root * (I + root G root)^-1 (root * a), a = sum_i x_i * S_i(rho_i). Returns rho . delta."""
    K, M = X.shape
    rho, e, v, _, _, _, mean, _, vy, vr, b, dn, er = w
    vr[:] = 0.0
    er[:] = 0.0
    for k in range(K):
        for i in range(M):
            vr[i] += v[k, i] * rho[k, i]
            er[i] += e[k, i] * rho[k, i]
    for i in range(M):
        vr[i] *= b[i]  # b * (v . rho)
        er[i] *= dn[i]  # (e . rho) / den
    a = np.empty(K)
    for k in range(K):
        acc = 0.0
        for i in range(M):
            acc += X[k, i] * (rho[k, i] - vr[i] * v[k, i] - er[i] * e[k, i])
        a[k] = acc
    # LU with pivoting (LAPACK), as torch.linalg.solve: late in the barrier, rounding leaves
    # root G root slightly indefinite where lam and t are large, and Cholesky would break down there
    z = root * np.linalg.solve(A, root * a)
    # x is kept in D until delta replaces it
    vy[:] = 0.0  # v . x
    vr[:] = 0.0  # e . x
    for k in range(K):
        for i in range(M):
            x = rho[k, i] - X[k, i] * z[k]
            D[k, i] = x
            vy[i] += v[k, i] * x
            vr[i] += e[k, i] * x
    for i in range(M):
        vy[i] *= b[i]
        vr[i] *= dn[i]
    mean[:] = 0.0
    for k in range(K):
        for i in range(M):
            delta = D[k, i] - vy[i] * v[k, i] - vr[i] * e[k, i]
            D[k, i] = X[k, i] * delta
            mean[i] += rho[k, i] * delta
    return mean.sum()


@njit(cache=True, error_model="numpy")
def _fairness_derivatives(ybar, lam, prior, reverse, M, gf, c):
    """Phi'(ybar) into gf and lam * Phi''(ybar) / M (the column coupling) into c, both (K,)."""
    for k in range(ybar.shape[0]):
        if reverse:
            gf[k] = -prior[k] / ybar[k]
            c[k] = lam * prior[k] / (ybar[k] * ybar[k]) / M
        else:
            gf[k] = math.log(ybar[k]) - math.log(prior[k]) + 1.0
            c[k] = lam / ybar[k] / M


@njit(cache=True, error_model="numpy")
def _gradient(Y, S, s, ybar, lam, prior, reverse, G, gf, c, mean):
    """The gradient of M * F into G (K, M), its y-weighted row means into mean (M,); fills gf, c."""
    K, M = Y.shape
    _fairness_derivatives(ybar, lam, prior, reverse, M, gf, c)
    mean[:] = 0.0
    for k in range(K):
        lg = lam * gf[k]
        for i in range(M):
            G[k, i] = -S[k, i] / s[i] + lg
            mean[i] += Y[k, i] * G[k, i]


@njit(cache=True, error_model="numpy")
def _direction(Y, S, s, ybar, t, lam, prior, reverse, D, w):
    """The barrier's Newton step, written to D (K, M), and the squared decrement; the derivation and
    the variable names are those of ``_interior_point._newton_direction``. w: work arrays."""
    K, M = Y.shape
    rho, _, _, _, _, inv_s, mean, _, _, _, _, _, _ = w
    gf = np.empty(K)
    c = np.empty(K)
    _gradient(Y, S, s, ybar, lam, prior, reverse, rho, gf, c, mean)
    for i in range(M):
        inv_s[i] = 1.0 / s[i]
    for k in range(K):
        for i in range(M):
            rho[k, i] = 1.0 - t * (Y[k, i] * (rho[k, i] - mean[i]))
    A, root = _factor(Y, S, inv_s, t, c, w)
    return _solve(Y, A, root, w, D)


@njit(cache=True, error_model="numpy")
def _start(y0, mix):
    """The start Y (K, M) from y0 (M, K): rows normalized and mixed ``mix`` with uniform (interior)."""
    M, K = y0.shape
    Y = np.empty((K, M))
    for i in range(M):
        total = 0.0
        for k in range(K):
            total += y0[i, k]
        for k in range(K):
            Y[k, i] = (1.0 - mix) * y0[i, k] / total + mix / K
    return Y


@njit(cache=True, error_model="numpy")
def _trial(Y, D, step, Y_new, total):
    """Y_new = Y + step * D (K, M) with its rows renormalized: rounding drifts the row sums."""
    K, M = Y.shape
    total[:] = 0.0
    for k in range(K):
        for i in range(M):
            Y_new[k, i] = Y[k, i] + step * D[k, i]
            total[i] += Y_new[k, i]
    for k in range(K):
        for i in range(M):
            Y_new[k, i] /= total[i]


@njit(cache=True, error_model="numpy")
def _work(K, M):
    """Work arrays of :func:`_factor` and :func:`_solve` (rho, the right-hand side, first), one set per solve."""
    return (np.empty((K, M)), np.empty((K, M)), np.empty((K, M)), np.empty((K, 2 * M)), np.empty((K, 2 * M)),
            np.empty(M), np.empty(M), np.empty(M), np.empty(M), np.empty(M), np.empty(M), np.empty(M), np.empty(M))


@njit(cache=True, error_model="numpy")
def barrier(sigma, prior, lam, reverse, y0, tol, max_iter, mu, center_tol, t0):
    """The barrier method on float64 arrays sigma, y0 (M, K): (y (M, K), objective (max_iter + 1,)
    filled to n_obj, n_obj, Newton steps, final t, converged)."""
    M, K = sigma.shape
    S = np.ascontiguousarray(sigma.T)
    Y = _start(y0, 1e-3)
    w = _work(K, M)
    s = np.empty(M)
    ybar = np.empty(K)
    s_new = np.empty(M)
    ybar_new = np.empty(K)
    prod = np.empty(M)
    total = np.empty(M)
    D = np.empty((K, M))
    Y_new = np.empty((K, M))
    objective = np.empty(max_iter + 1)
    g, log_y = _value(Y, S, lam, prior, reverse, s, ybar, prod)
    objective[0] = g / M
    n_obj = 1
    t = t0
    it = 0
    converged = False
    while it < max_iter:
        for _ in range(50):
            if it >= max_iter:
                break
            dec2 = _direction(Y, S, s, ybar, t, lam, prior, reverse, D, w)
            if dec2 <= 0.0:  # centered to rounding: no descent direction left at this t
                break
            it += 1
            to_boundary = math.inf
            for k in range(K):
                for i in range(M):
                    if D[k, i] < 0.0:
                        to_boundary = min(to_boundary, Y[k, i] / -D[k, i])
            step = min(1.0, 0.99 * to_boundary)
            phi = t * g - log_y
            while True:
                _trial(Y, D, step, Y_new, total)
                g_new, log_y_new = _value(Y_new, S, lam, prior, reverse, s_new, ybar_new, prod)
                phi_new = t * g_new - log_y_new
                # Armijo, with slack for rounding: t * g is large once t is
                if phi_new <= phi - 0.25 * step * dec2 + 1e-12 * abs(phi) or step < 1e-12:
                    break
                step *= 0.5
            Y, Y_new = Y_new, Y
            s, s_new = s_new, s
            ybar, ybar_new = ybar_new, ybar
            g, log_y = g_new, log_y_new
            objective[n_obj] = g / M
            n_obj += 1
            if dec2 <= center_tol:
                break
        if K / t <= tol * max(g / M, 1e-3):
            converged = True
            break
        t *= mu
    return np.ascontiguousarray(Y.T), objective, n_obj, it, t, converged


@njit(cache=True, error_model="numpy")
def _to_boundary(Y, Dy, L, Dl):
    """The largest steps in (0, 1] that keep Y + step * Dy and L + step * Dl positive, each 0.995 of
    the way to the boundary."""
    K, M = Y.shape
    step_y = step_l = 1.0
    for k in range(K):
        for i in range(M):
            if Dy[k, i] < 0.0 and 0.995 * Y[k, i] < -Dy[k, i] * step_y:
                step_y = 0.995 * Y[k, i] / -Dy[k, i]
            if Dl[k, i] < 0.0 and 0.995 * L[k, i] < -Dl[k, i] * step_l:
                step_l = 0.995 * L[k, i] / -Dl[k, i]
    return step_y, step_l


@njit(cache=True, error_model="numpy")
def primal_dual(sigma, prior, lam, reverse, y0, tol, max_iter, t0, mix):
    """The primal-dual interior-point method (Mehrotra predictor-corrector) on float64 arrays sigma,
    y0 (M, K), started at y0 mixed ``mix`` with uniform: (y (M, K), objective (max_iter + 1,) filled
    to n_obj, n_obj, iterations, the certified gap bound, converged). See ``_interior_point`` for the
    method."""
    M, K = sigma.shape
    S = np.ascontiguousarray(sigma.T)
    Y = _start(y0, mix)
    w = _work(K, M)
    rho, _, _, _, _, inv_s, _, _, _, _, _, _, _ = w
    mean = np.empty(M)  # g_i . y_i; _solve overwrites the work array of that name
    s, ybar, s_new, ybar_new = np.empty(M), np.empty(K), np.empty(M), np.empty(K)
    prod, total, low = np.empty(M), np.empty(M), np.empty(M)
    G, L, X, R = np.empty((K, M)), np.empty((K, M)), np.empty((K, M)), np.empty((K, M))
    Dy, Dl, Dy_a, Dl_a, C = np.empty((K, M)), np.empty((K, M)), np.empty((K, M)), np.empty((K, M)), np.empty((K, M))
    Y_new = np.empty((K, M))
    gf, c = np.empty(K), np.empty(K)
    objective = np.empty(max_iter + 1)
    f, log_y = _value(Y, S, lam, prior, reverse, s, ybar, prod)
    objective[0] = f / M
    n_obj = 1
    _gradient(Y, S, s, ybar, lam, prior, reverse, G, gf, c, mean)
    # lambda_ik, the multiplier of y_ik >= 0, starts at the reduced gradient where it is positive
    # plus the complementarity 1 / t0 of a barrier with weight t0
    for k in range(K):
        for i in range(M):
            L[k, i] = max(G[k, i] - mean[i], 0.0) + 1.0 / (t0 * Y[k, i])
    it = 0
    converged = False
    while True:
        # the Frank-Wolfe gap bounds F(y) - F* for convex F: sum_ik y_ik (g_ik - min_k g_ik) / M,
        # a sum of non-negative terms (g_i . y_i - min_k g_ik would cancel at large lam)
        low[:] = np.inf
        for k in range(K):
            for i in range(M):
                low[i] = min(low[i], G[k, i])
        total[:] = 0.0
        for k in range(K):
            for i in range(M):
                total[i] += Y[k, i] * (G[k, i] - low[i])
        gap = total.sum() / M
        if gap <= tol * max(f / M, 1e-3):
            converged = True
            break
        if it >= max_iter:
            break
        it += 1
        # sums over all entries accumulate per point first: the loops over points then vectorize
        total[:] = 0.0
        for k in range(K):
            for i in range(M):
                total[i] += Y[k, i] * L[k, i]
                X[k, i] = math.sqrt(Y[k, i] / L[k, i])  # diag(lambda / y) is I in the variable d / X
                R[k, i] = 1.0 / Y[k, i]
                rho[k, i] = -X[k, i] * (G[k, i] - mean[i])  # predictor: complementarity target 0
        mu = total.sum() / (M * K)
        for i in range(M):
            inv_s[i] = 1.0 / s[i]
        A, root = _factor(X, S, inv_s, 1.0, c, w)
        _solve(X, A, root, w, Dy_a)
        for k in range(K):
            for i in range(M):
                Dl_a[k, i] = -L[k, i] * (1.0 + R[k, i] * Dy_a[k, i])
        step_p, step_d = _to_boundary(Y, Dy_a, L, Dl_a)
        total[:] = 0.0
        for k in range(K):
            for i in range(M):
                total[i] += (Y[k, i] + step_p * Dy_a[k, i]) * (L[k, i] + step_d * Dl_a[k, i])
        mu_aff = total.sum() / (M * K)
        # Mehrotra's centering target, kept above what tol needs: y * lambda = tau makes the gap
        # about K tau, and a smaller tau only costs precision
        tau = max(mu * (mu_aff / mu) ** 3, 0.1 * tol * max(f, 1e-3 * M) / (M * K))
        # corrector: y * lambda = tau with the predictor's second-order term; where that is no
        # descent direction of the merit f - tau sum ln y, the pure centering step (rarely)
        for attempt in range(2):
            total[:] = 0.0
            for k in range(K):
                for i in range(M):
                    C[k, i] = (tau - (Dy_a[k, i] * Dl_a[k, i] if attempt == 0 else 0.0)) * R[k, i]
                    rho[k, i] = G[k, i] - C[k, i]
                    total[i] += Y[k, i] * rho[k, i]
            for k in range(K):
                for i in range(M):
                    rho[k, i] = -X[k, i] * (rho[k, i] - total[i])
            _solve(X, A, root, w, Dy)
            total[:] = 0.0
            for k in range(K):
                for i in range(M):
                    total[i] += (G[k, i] - tau * R[k, i]) * Dy[k, i]
                    Dl[k, i] = C[k, i] - L[k, i] * (1.0 + R[k, i] * Dy[k, i])
            slope = total.sum()
            if slope < 0.0:
                break
        step_p, step_d = _to_boundary(Y, Dy, L, Dl)
        step_full = step_p
        phi = f - tau * log_y
        # Armijo on the merit, with slack for rounding. The centering step descends in exact
        # arithmetic; a slope >= 0 means the solve lost accuracy near the limits of float64, and
        # then only a step that does not raise the merit is taken
        descent = min(slope, 0.0)
        while True:
            _trial(Y, Dy, step_p, Y_new, total)
            f_new, log_y_new = _value(Y_new, S, lam, prior, reverse, s_new, ybar_new, prod)
            if f_new - tau * log_y_new <= phi + 0.25 * step_p * descent + 1e-12 * abs(phi):
                break
            step_p *= 0.5
            if step_p < 1e-12:
                break
        if step_p < 1e-12:  # no step lowers the merit: stop, the caller's barrier method takes over
            it -= 1
            break
        step_d *= step_p / step_full  # the multipliers go no further along their step than y goes along its
        Y, Y_new = Y_new, Y
        s, s_new = s_new, s
        ybar, ybar_new = ybar_new, ybar
        f, log_y = f_new, log_y_new
        for k in range(K):
            for i in range(M):
                L[k, i] += step_d * Dl[k, i]
        _gradient(Y, S, s, ybar, lam, prior, reverse, G, gf, c, mean)
        objective[n_obj] = f / M
        n_obj += 1
    return np.ascontiguousarray(Y.T), objective, n_obj, it, gap, converged
