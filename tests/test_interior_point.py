"""The barrier Newton y-step (cce.pseudolabels) against EM run to convergence, PGD, and the dual bound."""

import math

import numpy as np
import pytest
import torch

from cce.losses import check_prior, self_labeling_objective
from cce.pseudolabels import dual_bound, em, interior_point, pgd
from cce.pseudolabels import _interior_point
from cce.pseudolabels._barrier_cpu import _direction, _factor, _solve, _value, _work
from cce.pseudolabels._interior_point import (_barrier, _barrier_compiled, _newton_direction, _parts, _primal_dual,
                                              _primal_dual_compiled)

F64 = torch.float64


def softmax_sigma(M, K, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(M, K, generator=g, dtype=F64) + torch.linspace(0, 2, K, dtype=F64)
    return torch.softmax(logits, -1)


def certified_em(sigma, lam, prior=None):
    """EM of Section 4 run to convergence, its own dual gap below 1e-8 relative: the reference.
    Both results are then within 1e-8 of the optimum, so they agree to 1e-8."""
    y, info = em(sigma, lam, prior, tol=1e-15, max_iter=5000, acceleration="squarem")
    f = info["objective"][-1]
    assert f - dual_bound(y, sigma, lam, prior) <= 1e-8 * max(f, 1e-3), "the reference itself did not converge"
    return f


def test_newton_step_equals_the_dense_kkt_solve():
    """The O(M K^2) step against the (MK + M)-dimensional KKT system built from autograd's Hessian
    of t * M * F - sum ln y, F being the library's own objective (cce.losses)."""
    M, K, lam, t = 6, 4, 2.0, 7.0
    sigma = softmax_sigma(M, K, 1, scale=1.0)
    y = softmax_sigma(M, K, 2, scale=1.0)
    prior = check_prior(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64), K, sigma)
    A = torch.kron(torch.eye(M, dtype=F64), torch.ones(1, K, dtype=F64))
    for fairness in ("reverse_kl", "kl"):
        reverse = fairness == "reverse_kl"

        def phi(flat):
            F = self_labeling_objective(flat.reshape(M, K), sigma, lam, prior, fairness)
            return t * M * F - torch.log(flat).sum()

        g, log_y, s, ybar = _parts(y, sigma, lam, prior, reverse)
        assert g == pytest.approx(M * float(self_labeling_objective(y, sigma, lam, prior, fairness)), rel=1e-12)
        assert log_y == pytest.approx(float(torch.log(y).sum()), rel=1e-12)
        d, dec2 = _newton_direction(y, sigma, s, ybar, t, lam, prior, reverse)
        grad = torch.autograd.functional.jacobian(phi, y.reshape(-1))
        H = torch.autograd.functional.hessian(phi, y.reshape(-1))
        kkt = torch.cat([torch.cat([H, A.T], 1), torch.cat([A, torch.zeros(M, M, dtype=F64)], 1)])
        dense = torch.linalg.solve(kkt, torch.cat([-grad, torch.zeros(M, dtype=F64)]))[: M * K]
        torch.testing.assert_close(d.reshape(-1), dense, rtol=1e-9, atol=1e-12)
        assert dec2 == pytest.approx(float(-(grad * dense).sum()), rel=1e-9)


def appendix_c_sigma():
    """Example 3's one-hot rows and rows with zero entries among softmax rows (M = 60, K = 4)."""
    sigma = softmax_sigma(60, 4, 8)
    sigma[:10] = torch.nn.functional.one_hot(torch.arange(10) % 4, 4).to(F64)
    sigma[10:20, 1] = 0.0
    return sigma / sigma.sum(1, keepdim=True)


@pytest.mark.parametrize("fairness", ["reverse_kl", "kl"])
def test_primal_dual_step_equals_the_dense_kkt_solve(fairness):
    """The compiled primal-dual step (scaling x = sqrt(y / lambda), t = 1) against the KKT system
    (H + diag(lambda / y)) d + A^T nu = -(g - tau / y), A d = 0, H and g from autograd on M * F."""
    M, K, lam, tau = 6, 4, 2.0, 0.03
    reverse = fairness == "reverse_kl"
    sigma = softmax_sigma(M, K, 1, scale=1.0)
    y = softmax_sigma(M, K, 2, scale=1.0)
    mult = torch.rand(M, K, generator=torch.Generator().manual_seed(3), dtype=F64) + 0.05  # lambda
    prior = check_prior(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64), K, sigma)

    def f(flat):
        return M * self_labeling_objective(flat.reshape(M, K), sigma, lam, prior, fairness)

    grad = torch.autograd.functional.jacobian(f, y.reshape(-1))
    H = torch.autograd.functional.hessian(f, y.reshape(-1)) + torch.diag((mult / y).reshape(-1))
    A = torch.kron(torch.eye(M, dtype=F64), torch.ones(1, K, dtype=F64))
    kkt = torch.cat([torch.cat([H, A.T], 1), torch.cat([A, torch.zeros(M, M, dtype=F64)], 1)])
    rhs = -(grad - (tau / y).reshape(-1))
    dense = torch.linalg.solve(kkt, torch.cat([rhs, torch.zeros(M, dtype=F64)]))[: M * K].reshape(M, K)

    Y, S = y.T.contiguous().numpy(), sigma.T.contiguous().numpy()
    s = (sigma * y).sum(1).numpy()
    ybar = y.mean(0)
    c = (lam * prior / ybar.square() if reverse else lam / ybar).numpy() / M
    X = np.sqrt(Y / mult.T.numpy())
    w = _work(K, M)
    g = grad.reshape(M, K).T.numpy() - tau / Y
    w[0][:] = -X * (g - (Y * g).sum(0))  # rho; a row constant does not change the step
    A_k, root = _factor(X, S, 1.0 / s, 1.0, c, w)
    D = np.empty((K, M))
    _solve(X, A_k, root, w, D)
    np.testing.assert_allclose(D.T, dense.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("case", "lam", "fairness"), [("softmax", 100.0, "reverse_kl"), ("softmax", 100.0, "kl"),
                                                       ("appendix_c", 1.0, "reverse_kl"), ("K2", 100.0, "reverse_kl"),
                                                       ("softmax", 0.0, "reverse_kl")])
def test_primal_dual_gap_bound_is_certified(case, lam, fairness):
    """On the CPU the primal-dual method stops on the Frank-Wolfe gap, sum_i (g_i . y_i - min_k g_ik) / M,
    which bounds F(y) - F* for the convex F: it holds against the optimum the barrier reaches at 1e-13."""
    sigma = {"softmax": softmax_sigma(250, 10, 21), "appendix_c": appendix_c_sigma(),
             "K2": softmax_sigma(250, 2, 22)}[case]
    K = sigma.shape[1]
    prior = torch.full((K,), 1.0 / K, dtype=F64)
    _, ref = _barrier(sigma, prior, lam, fairness == "reverse_kl", sigma, 1e-13, 500, 30.0, 50.0, 100.0)
    f_star = ref["objective"][-1]
    for tol in (1e-4, 1e-6, 1e-9):
        y, info = interior_point(sigma, lam, fairness=fairness, tol=tol, certify=True)
        f = info["objective"][-1]
        assert info["method"] == "primal_dual" and info["converged"]
        assert f - f_star <= info["gap_bound"] + 1e-12 * f_star and info["gap_bound"] <= tol * max(f, 1e-3)
        assert info["dual_gap"] <= 2 * tol * max(f, 1e-3)
        assert info["iterations"] <= 30


def test_stalled_primal_dual_hands_over_to_the_barrier(monkeypatch):
    """Where the primal-dual iteration has not met tol within its budget, the barrier method solves
    from y0 with the iterations left, and the record keeps both."""
    sigma = softmax_sigma(250, 10, 21)
    prior = torch.full((10,), 0.1, dtype=F64)
    monkeypatch.setattr(_interior_point, "PRIMAL_DUAL_BUDGET", 3)
    y, info = interior_point(sigma, 100.0, tol=1e-9, max_iter=200)
    _, alone = _barrier_compiled(sigma, prior, 100.0, True, sigma, 1e-9, 197, 30.0, 50.0, 100.0)
    assert info["method"] == "barrier" and info["converged"]
    assert info["iterations"] == 3 + alone["iterations"]
    assert info["objective"][4:] == alone["objective"] and len(info["objective"]) == 4 + len(alone["objective"])
    # with no iterations left there is no hand-over: the primal-dual iterate and its record
    _, capped = interior_point(sigma, 100.0, tol=1e-9, max_iter=3)
    assert capped["method"] == "primal_dual" and capped["iterations"] == 3 and not capped["converged"]
    # a barrier that ends above the primal-dual iterate does not replace it; the record counts its
    # steps (on Appendix C rows three primal-dual iterations are nearly there, two Newton steps not)
    _, alone = interior_point(appendix_c_sigma(), 1.0, tol=1e-12, max_iter=3)
    _, short = interior_point(appendix_c_sigma(), 1.0, tol=1e-12, max_iter=5)
    assert short["method"] == "primal_dual" and short["iterations"] == 5 and not short["converged"]
    assert short["objective"] == alone["objective"] and len(alone["objective"]) == 4


@pytest.mark.parametrize("method", [_primal_dual, _primal_dual_compiled])
def test_primal_dual_start_is_y0_mixed_with_uniform_and_does_not_move_the_optimum(method):
    """The start is (1 - mix) y0 + mix / K: its objective is the record's first entry. From any mix
    the method ends within tol of one optimum (the start only changes how it gets there)."""
    sigma, lam, K = softmax_sigma(250, 10, 5, scale=30.0), 100.0, 10  # confident rows, as late in training
    prior = torch.full((K,), 1.0 / K, dtype=F64)
    f_star = interior_point(sigma, lam, tol=1e-12)[1]["objective"][-1]
    for mix in (1e-3, 0.3, 1.0):
        _, info = method(sigma, prior, lam, True, sigma, 1e-8, 50, 100.0, mix)
        start = (1.0 - mix) * sigma / sigma.sum(1, keepdim=True) + mix / K
        assert info["objective"][0] == pytest.approx(float(self_labeling_objective(start, sigma, lam, prior)),
                                                     rel=1e-12)
        assert info["converged"] and 0 <= info["objective"][-1] - f_star <= 1e-8 * f_star, mix
    # interior_point starts the primal-dual method at the module's default mix
    _, info = interior_point(sigma, lam, tol=1e-8)
    mix = _interior_point.PRIMAL_DUAL_START_MIX
    start = (1.0 - mix) * sigma + mix / K
    assert info["objective"][0] == pytest.approx(float(self_labeling_objective(start, sigma, lam, prior)), rel=1e-12)


@pytest.mark.parametrize("method", [_primal_dual, _primal_dual_compiled])
@pytest.mark.parametrize("case", ["one_hot", "appendix_c", "softmax"])
def test_primal_dual_ends_at_its_lowest_objective_at_the_limits_of_precision(method, case):
    """At tol 1e-13 (lam 1e4 for the one-hot rows) the solve loses accuracy before the gap bound
    meets tol, and a step's slope can come out >= 0. Such steps once raised F from 0.034 to 0.79 and
    1.16 (one-hot rows) and from 0.3552 to 0.57 (Appendix C); now the method takes only steps that do
    not raise its merit and stops when there is none, leaving the rest to the barrier. (From the
    start mixed PRIMAL_DUAL_START_MIX with uniform, taking such steps fails three of the six cases:
    softmax with both versions, Appendix C with torch.)"""
    sigma, lam = {"one_hot": (torch.nn.functional.one_hot(torch.arange(30) % 4, 4).to(F64), 1e4),
                  "appendix_c": (appendix_c_sigma(), 1e4), "softmax": (softmax_sigma(250, 10, 0), 100.0)}[case]
    K = sigma.shape[1]
    _, info = method(sigma, torch.full((K,), 1.0 / K, dtype=F64), lam, True, sigma, 1e-13, 50, 100.0)
    assert info["objective"][-1] <= min(info["objective"]) * (1.0 + 1e-9)
    if not info["converged"]:
        _, handed = interior_point(sigma, lam, tol=1e-13, max_iter=500)
        assert handed["objective"][-1] <= info["objective"][-1] * (1.0 + 1e-9)


@pytest.mark.parametrize("reverse", [True, False])
def test_compiled_newton_step_equals_the_torch_step(reverse):
    """The CPU kernel (numba, arrays stored (K, M)) against the torch step that the dense KKT test checks."""
    M, K, lam, t = 40, 5, 3.0, 1e3
    sigma = softmax_sigma(M, K, 11)
    y = softmax_sigma(M, K, 12, scale=1.0)
    prior = torch.tensor([0.1, 0.15, 0.2, 0.25, 0.3], dtype=F64)
    g, log_y, s, ybar = _parts(y, sigma, lam, prior, reverse)
    d, dec2 = _newton_direction(y, sigma, s, ybar, t, lam, prior, reverse)
    Y, S = y.T.contiguous().numpy(), sigma.T.contiguous().numpy()
    s_c, ybar_c, work = np.empty(M), np.empty(K), np.empty(M)
    g_c, log_y_c = _value(Y, S, lam, prior.numpy(), reverse, s_c, ybar_c, work)
    assert g_c == pytest.approx(g, rel=1e-13) and log_y_c == pytest.approx(log_y, rel=1e-13)
    np.testing.assert_allclose(s_c, s.numpy(), rtol=1e-14)
    D = np.empty((K, M))
    dec2_c = _direction(Y, S, s_c, ybar_c, t, lam, prior.numpy(), reverse, D, _work(K, M))
    np.testing.assert_allclose(D.T, d.numpy(), rtol=1e-9, atol=1e-13)
    assert dec2_c == pytest.approx(dec2, rel=1e-10)


def test_compiled_sum_of_logs_survives_entries_whose_product_underflows():
    """sum ln y is taken as logs of products of a few entries: entries of 1e-100 (a product of 0)
    and of 3e-81 (a subnormal product, digits lost) must fall back to one log per entry."""
    K, M = 9, 3
    Y = np.full((K, M), 1e-100)
    Y[:, 1] = 3e-81
    Y[0] = 1.0 - (K - 1) * Y[1]
    Y[:, 2] = 1.0 / K
    S = np.full((K, M), 1.0 / K)
    _, log_y = _value(Y, S, 1.0, np.full(K, 1.0 / K), True, np.empty(M), np.empty(K), np.empty(M))
    assert log_y == pytest.approx(float(np.log(Y).sum()), rel=1e-14)


def path_case(case):
    """(sigma, prior, lam, reverse) of the inputs on which the torch and the compiled paths are compared."""
    lam, reverse, prior = 100.0, True, None
    sigma = softmax_sigma(250, 10, 21)
    if case == "kl":
        reverse = False
    elif case == "prior":
        lam, prior = 3.0, torch.linspace(1.0, 2.0, 10, dtype=F64)
    elif case == "appendix_c":
        sigma, lam = appendix_c_sigma(), 1.0
    elif case == "huge_lam":
        sigma, lam = appendix_c_sigma(), 1e4
    elif case == "K2":
        sigma = softmax_sigma(250, 2, 22)
    K = sigma.shape[1]
    prior = torch.full((K,), 1.0 / K, dtype=F64) if prior is None else prior / prior.sum()
    return sigma, prior, lam, reverse


PATH_CASES = ("lam100", "kl", "prior", "appendix_c", "huge_lam", "K2")


@pytest.mark.parametrize(("method", "case"), [("barrier", c) for c in PATH_CASES]
                         + [("primal_dual", c) for c in (*PATH_CASES, "tight")])
def test_compiled_cpu_path_takes_the_same_steps_as_the_torch_path(method, case):
    """The CUDA path (torch) and the CPU path (compiled) are one algorithm: on the same input they
    take the same steps to the same y, up to rounding."""
    sigma, prior, lam, reverse = path_case(case)
    if method == "barrier":
        args = (sigma, prior, lam, reverse, sigma, 1e-11, 200, 30.0, 50.0, 100.0)
        y_t, info_t = _barrier(*args)
        y_c, info_c = _barrier_compiled(*args)
    else:
        # the tightest tolerances at which rounding leaves the two on one path (at 1e-10 the last
        # iterations differ: 27 against 25 with "kl", both converged)
        tol = {"tight": 1e-9, "huge_lam": 1e-8}.get(case, 1e-6)
        args = (sigma, prior, lam, reverse, sigma, tol, 50, 100.0)
        y_t, info_t = _primal_dual(*args)
        y_c, info_c = _primal_dual_compiled(*args)
    assert info_c["converged"] and info_t["converged"] and info_c["method"] == info_t["method"] == method
    if method == "barrier" and case == "huge_lam":
        # lam * t reaches 1e17 here: rounding decides when one centering stops (39 or 40 steps)
        assert abs(info_c["iterations"] - info_t["iterations"]) <= 2
        assert info_c["objective"][-1] == pytest.approx(info_t["objective"][-1], rel=1e-10)
        np.testing.assert_allclose(y_c.numpy().mean(0), y_t.numpy().mean(0), atol=1e-9)
        return
    assert info_c["iterations"] == info_t["iterations"]
    if case not in ("huge_lam", "tight"):  # there the final gap is rounding-sized: both met tol above
        assert info_c["gap_bound"] == pytest.approx(info_t["gap_bound"], rel=1e-4, abs=1e-14)
    np.testing.assert_allclose(info_c["objective"], info_t["objective"], rtol=1e-10)
    np.testing.assert_allclose(y_c.numpy(), y_t.numpy(), rtol=1e-6, atol=1e-12)


def test_compiled_path_stays_finite_at_the_largest_barrier_weights():
    """At t = 1e16 rounding can leave den_i = y_i . P_i^-1 y_i slightly negative; a square root of
    1 / den (once used to form G as one Gram matrix) turned that into NaN and a failed solve."""
    sigma = softmax_sigma(250, 10, 0)
    prior = torch.full((10,), 0.1, dtype=F64)
    y, info = _barrier_compiled(sigma, prior, 100.0, True, sigma, 1e-13, 500, 100.0, 10.0, 1.0)
    assert info["converged"] and info["t"] == 1e16 and bool(torch.isfinite(y).all())
    # the bound read off y: about 1e-10 here
    assert info["objective"][-1] - dual_bound(y, sigma, 100.0) <= 1e-9 * info["objective"][-1]
    _, ref = _barrier(sigma, prior, 100.0, True, sigma, 1e-13, 500, 100.0, 10.0, 1.0)
    assert info["objective"][-1] == pytest.approx(ref["objective"][-1], rel=1e-11)


@pytest.mark.parametrize(("M", "K", "lam"), [(8, 3, 0.3), (8, 3, 20.0), (250, 10, 0.4), (250, 2, 100.0),
                                             (250, 20, 1.0)])
def test_same_optimum_as_em_with_a_certified_gap(M, K, lam):
    sigma = softmax_sigma(M, K, M + K)
    y, info = interior_point(sigma, lam, tol=1e-11, certify=True)
    f = float(self_labeling_objective(y, sigma, lam))
    assert f == pytest.approx(info["objective"][-1], rel=1e-12)
    assert info["converged"] and info["dual_gap"] <= 1e-8 * f
    f_em = certified_em(sigma, lam)
    assert abs(f - f_em) <= 1e-8 * f_em
    assert torch.allclose(y.sum(1), torch.ones(M, dtype=F64), atol=1e-12) and bool((y > 0).all())


@pytest.mark.parametrize(("K", "seed"), [(10, 260), (20, 5)])
def test_where_em_is_slow_the_interior_point_is_not(K, seed):
    """lam = 100 (Table 1's hard case): SQUAREM-accelerated EM does not certify 1e-8 in 2000
    iterations; the interior point does in tens of Newton steps and ends below EM's objective,
    far below it at the paper's stopping rule for EM (tol 1e-6, 200 iterations)."""
    sigma = softmax_sigma(250, K, seed)
    y, info = interior_point(sigma, 100.0, tol=1e-10, certify=True)
    f = info["objective"][-1]
    assert info["iterations"] <= 100 and info["dual_gap"] <= 1e-8 * f
    y_long, long = em(sigma, 100.0, tol=1e-15, max_iter=2000, acceleration="squarem")
    em_gap = long["objective"][-1] - dual_bound(y_long, sigma, 100.0)
    assert em_gap > 1e-8 * f  # the premise: EM has not certified 1e-8 after 2000 iterations
    assert f <= long["objective"][-1] and long["objective"][-1] - f <= em_gap
    _, capped = em(sigma, 100.0, tol=1e-6, max_iter=200, acceleration="squarem")
    assert f < capped["objective"][-1] - 1e-6


@pytest.mark.parametrize("lam", [0.5, 100.0])
def test_l_cce_against_pgd_run_to_convergence(lam):
    sigma = softmax_sigma(40, 5, 3)
    y, info = interior_point(sigma, lam, fairness="kl", tol=1e-11, certify=True)
    f = info["objective"][-1]
    assert info["dual_gap"] <= 1e-8 * f
    _, ref = pgd(sigma, lam, fairness="kl", step="armijo", tol=1e-15, max_iter=200000)
    assert f <= ref["objective"][-1] + 1e-9 * f and ref["objective"][-1] - f <= 1e-6 * f


# Appendix C and the paper's examples: one-hot sigma, zeros in sigma, lam = 0, a huge lam, priors
def test_appendix_c_inputs():
    g = torch.Generator().manual_seed(0)
    sigma = appendix_c_sigma()
    for lam in (0.0, 1.0):  # Example 2 (lam = 0: argmax)
        y, info = interior_point(sigma, lam, tol=1e-11, certify=True)
        f = info["objective"][-1]
        assert info["dual_gap"] <= 1e-8 * max(f, 1e-3), lam
        assert abs(f - certified_em(sigma, lam)) <= 1e-8 * max(f, 1e-3), lam
    # Example 1's regime, lam = 1e4: ybar -> u. EM does not converge here in thousands of
    # iterations; the interior point ends below it. The dual bound read off y certifies only
    # about 1e-6 here (beta = lam u / ybar magnifies the rounding of ybar by lam).
    y, info = interior_point(sigma, 1e4, tol=1e-11, certify=True)
    f = info["objective"][-1]
    assert info["dual_gap"] <= 1e-5 * f
    assert torch.allclose(y.mean(0), torch.full((4,), 0.25, dtype=F64), atol=1e-4)
    _, slow = em(sigma, 1e4, tol=1e-15, max_iter=1000, acceleration="squarem")
    assert f < slow["objective"][-1]
    # a prior: here EM stalls (its dual gap after 5000 iterations was 2.1e-3); the interior point
    # certifies 1e-8 and ends below it
    prior = torch.rand(4, generator=g, dtype=F64) + 0.1
    prior = prior / prior.sum()
    y, info = interior_point(sigma, 3.0, prior, tol=1e-11, certify=True)
    assert info["dual_gap"] <= 1e-8 * info["objective"][-1]
    _, stalled = em(sigma, 3.0, prior, tol=1e-15, max_iter=2000, acceleration="squarem")
    assert info["objective"][-1] < stalled["objective"][-1]


def test_zero_prior_classes():
    sigma = softmax_sigma(50, 4, 9, scale=1.0)
    prior = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=F64)
    # KL(ybar || u) forbids the classes u excludes: they stay exactly empty
    y, info = interior_point(sigma, 2.0, prior, fairness="kl", tol=1e-11, certify=True)
    assert bool((y[:, 2:] == 0).all()) and info["dual_gap"] <= 1e-8 * info["objective"][-1]
    # KL(u || ybar) only ignores them
    y, info = interior_point(sigma, 2.0, prior, tol=1e-11, certify=True)
    assert info["dual_gap"] <= 1e-8 * info["objective"][-1]
    assert abs(info["objective"][-1] - certified_em(sigma, 2.0, prior)) <= 1e-8 * info["objective"][-1]


def test_float32_in_float32_out_and_validation():
    sigma = softmax_sigma(30, 3, 4).float()
    y, info = interior_point(sigma, 1.0, tol=1e-9, certify=True)
    assert y.dtype == torch.float32 and info["dual_gap"] <= 1e-7
    with pytest.raises(ValueError, match="fairness"):
        interior_point(sigma, 1.0, fairness="kl_reverse")
    with pytest.raises(ValueError, match="y0 shape"):
        interior_point(sigma, 1.0, y0=torch.ones(3, 3))
    for bad in (math.nan, -0.1, math.inf):
        y0 = sigma.clone()
        y0[4, 1] = bad
        with pytest.raises(ValueError, match="y0 must be finite and non-negative"):
            interior_point(sigma, 1.0, y0=y0)
    y0 = sigma.clone()
    y0[7] = 0.0  # a row with no mass has no direction to start from
    with pytest.raises(ValueError, match="positive entry in every row"):
        interior_point(sigma, 1.0, y0=y0)
    # a valid y0 other than sigma: the same optimum
    _, warm = interior_point(sigma, 1.0, y0=torch.full_like(sigma, 1 / 3), tol=1e-9)
    assert warm["objective"][-1] == pytest.approx(info["objective"][-1], rel=1e-8)


def test_kl_with_a_zero_prior_needs_every_row_on_a_kept_class():
    """Under KL(ybar || u) the classes with u_k = 0 stay empty: a row of sigma with all its mass
    there has F = +inf, and a row of y0 there leaves no start; both are errors, not a nan."""
    sigma = softmax_sigma(50, 4, 3)
    prior = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=F64)
    y0 = sigma.clone()
    y0[5] = torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=F64)
    with pytest.raises(ValueError, match="every row of y0 needs a positive entry in a class of positive prior"):
        interior_point(sigma, 1.0, prior, fairness="kl", y0=y0)
    bad = sigma.clone()
    bad[5] = torch.tensor([0.0, 0.0, 0.3, 0.7], dtype=F64)
    with pytest.raises(ValueError, match="every row of sigma needs a positive entry in a class of positive prior"):
        interior_point(bad, 1.0, prior, fairness="kl")
    # with KL(u || ybar), or at lam = 0, those classes are not emptied: both inputs are fine
    for lam, fairness in ((1.0, "reverse_kl"), (0.0, "kl")):
        _, info = interior_point(bad, lam, prior, fairness=fairness, y0=y0, tol=1e-9)
        assert info["converged"] and math.isfinite(info["objective"][-1])


@pytest.mark.parametrize("fairness", ["kl", "reverse_kl"])
def test_lam_zero_drops_the_prior_as_the_objective_does(fairness):
    """At lam = 0 the objective is mean_i -ln(sigma_i . y_i) whatever the prior: the minimum puts each
    point on its most likely class, F* = mean_i -ln max_k sigma_ik, zero-prior classes included
    (under KL(ybar || u) they were kept empty)."""
    sigma = softmax_sigma(40, 4, 9)
    sigma[:10, 3] += 5.0  # ten points whose most likely class has prior 0
    sigma = sigma / sigma.sum(1, keepdim=True)
    prior = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=F64)
    f_star = float(-torch.log(sigma.amax(1)).mean())
    y, info = interior_point(sigma, 0.0, prior, fairness=fairness, tol=1e-10, certify=True)
    assert info["converged"] and info["objective"][-1] - f_star <= 1e-9 * f_star
    assert bool((y.argmax(1) == sigma.argmax(1)).all()) and float(y[:, 3].sum()) > 9.9


def test_max_iter_is_reported_not_hidden():
    sigma = softmax_sigma(100, 10, 6)
    _, info = interior_point(sigma, 100.0, tol=1e-12, max_iter=5)
    assert info["iterations"] == 5 and not info["converged"] and math.isfinite(info["objective"][-1])


@pytest.mark.cuda
def test_cuda_matches_cpu():
    sigma = softmax_sigma(250, 10, 7)
    y_cpu, info_cpu = interior_point(sigma, 100.0, tol=1e-10)
    y_gpu, info_gpu = interior_point(sigma.cuda(), 100.0, tol=1e-10, certify=True)
    assert y_gpu.is_cuda and info_gpu["dual_gap"] <= 1e-8 * info_gpu["objective"][-1]
    assert info_gpu["objective"][-1] == pytest.approx(info_cpu["objective"][-1], rel=1e-9)
    np.testing.assert_allclose(y_gpu.mean(0).cpu().numpy(), y_cpu.mean(0).numpy(), atol=1e-6)
