"""The barrier method of :mod:`._interior_point` compiled for the CPU (numba).

Same algorithm, step for step, as the torch version there: on a 250 x 10 batch one Newton step
is about 60 small tensor operations, and torch's dispatch on each is most of a y-step (about
0.5 ms per Newton step in torch, about 35 microseconds compiled, line search included). Compiled loops remove that overhead; the CUDA path keeps the torch version, where
the same operations run on the device. Both are tested against each other and against EM.

Arrays are stored transposed, (K, M): every loop then runs over the M points with the K classes
outside, and the points are independent, so the compiler vectorizes those loops (SIMD) without
reordering any sum. Per-point sums are arrays of M accumulated class by class.

``cache=True`` keeps the machine code next to this file (or in numba's user cache where that is
read-only), so only the first process that uses it pays the compilation (some seconds).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# sum ln y is taken as the logs of products of this many entries of y (see _value)
_CHUNK = 4


@njit(cache=True)
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


@njit(cache=True)
def _direction(Y, S, s, ybar, t, lam, prior, reverse, D, w):
    """The Newton step, written to D (K, M), and the squared decrement; the derivation and the
    variable names are those of ``_interior_point._newton_direction``. w: work arrays."""
    K, M = Y.shape
    rho, e, v, W, Wb, inv_s, mean, vv, vy, vr, b, dn, er = w
    gf = np.empty(K)
    root = np.empty(K)
    for k in range(K):
        if reverse:
            gf[k] = -prior[k] / ybar[k]
            c = lam * prior[k] / (ybar[k] * ybar[k]) / M
        else:
            gf[k] = math.log(ybar[k]) - math.log(prior[k]) + 1.0
            c = lam / ybar[k] / M
        root[k] = math.sqrt(t * c)
    for i in range(M):
        inv_s[i] = 1.0 / s[i]
    mean[:] = 0.0
    for k in range(K):
        lg = lam * gf[k]
        for i in range(M):
            rho[k, i] = -S[k, i] * inv_s[i] + lg  # the gradient, until rho is formed below
            mean[i] += Y[k, i] * rho[k, i]
    vv[:] = 0.0
    vy[:] = 0.0
    vr[:] = 0.0
    for k in range(K):
        for i in range(M):
            r = 1.0 - t * (Y[k, i] * (rho[k, i] - mean[i]))
            rho[k, i] = r
            vk = Y[k, i] * S[k, i]
            v[k, i] = vk
            vv[i] += vk * vk
            vy[i] += vk * Y[k, i]
            vr[i] += vk * r
    for i in range(M):
        alpha = t * inv_s[i] * inv_s[i]
        b[i] = alpha / (1.0 + alpha * vv[i])
    dn[:] = 0.0
    er[:] = 0.0
    for k in range(K):
        for i in range(M):
            ek = Y[k, i] - b[i] * vy[i] * v[k, i]
            e[k, i] = ek
            dn[i] += Y[k, i] * ek
            er[i] += ek * rho[k, i]
    a = np.empty(K)
    diag = np.empty(K)
    for i in range(M):
        dn[i] = 1.0 / dn[i]  # from here on, dn holds 1 / den
        vr[i] *= b[i]  # b * (v . rho)
        er[i] *= dn[i]  # (e . rho) / den
    for k in range(K):
        acc = 0.0
        sq = 0.0
        for i in range(M):
            acc += Y[k, i] * (rho[k, i] - vr[i] * v[k, i] - er[i] * e[k, i])
            sq += Y[k, i] * Y[k, i]
            W[k, i] = Y[k, i] * v[k, i]
            W[k, M + i] = Y[k, i] * e[k, i]
            Wb[k, i] = b[i] * W[k, i]
            Wb[k, M + i] = dn[i] * W[k, M + i]
        a[k] = acc
        diag[k] = sq
    # sum_i b_i (y v)_i (y v)_i^T + (y e)_i (y e)_i^T / den_i in one BLAS call, without square
    # roots of b or 1 / den: at large t, rounding can leave den slightly negative
    WW = W @ Wb.T
    # z = root * (I + root G root)^-1 (root * a), G = diag - WW, by LU with pivoting (LAPACK), as
    # torch.linalg.solve does: late in the barrier, rounding leaves root G root slightly indefinite
    # where lam and t are large, and a Cholesky factorization would break down there
    A = np.empty((K, K))
    for k in range(K):
        for l in range(K):
            A[k, l] = root[k] * ((diag[k] if k == l else 0.0) - WW[k, l]) * root[l] + (1.0 if k == l else 0.0)
    z = root * np.linalg.solve(A, root * a)
    # delta_i = S_i(rho_i - y_i * z); x is kept in D until delta replaces it
    vy[:] = 0.0  # v . x
    vr[:] = 0.0  # e . x
    for k in range(K):
        for i in range(M):
            x = rho[k, i] - Y[k, i] * z[k]
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
            D[k, i] = Y[k, i] * delta
            mean[i] += rho[k, i] * delta
    return mean.sum()


@njit(cache=True)
def _work(K, M):
    """Work arrays of :func:`_direction`, allocated once per solve."""
    return (np.empty((K, M)), np.empty((K, M)), np.empty((K, M)), np.empty((K, 2 * M)), np.empty((K, 2 * M)),
            np.empty(M), np.empty(M), np.empty(M), np.empty(M), np.empty(M), np.empty(M), np.empty(M), np.empty(M))


@njit(cache=True)
def barrier(sigma, prior, lam, reverse, y0, tol, max_iter, mu, center_tol, t0):
    """The barrier method on float64 arrays sigma, y0 (M, K): (y (M, K), objective (max_iter + 1,)
    filled to n_obj, n_obj, Newton steps, final t, converged)."""
    M, K = sigma.shape
    S = np.ascontiguousarray(sigma.T)
    Y = np.empty((K, M))
    for i in range(M):
        total = 0.0
        for k in range(K):
            total += y0[i, k]
        for k in range(K):
            Y[k, i] = (1.0 - 1e-3) * y0[i, k] / total + 1e-3 / K
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
                total[:] = 0.0
                for k in range(K):
                    for i in range(M):
                        Y_new[k, i] = Y[k, i] + step * D[k, i]
                        total[i] += Y_new[k, i]
                for k in range(K):
                    for i in range(M):
                        Y_new[k, i] /= total[i]  # rounding drifts the row sums
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
