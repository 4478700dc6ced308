"""Solvers of cce.pseudolabels: M-step (closed forms, KKT), EM, PGD, Sinkhorn, MI-ADM."""

import math

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from cce.losses import self_labeling_objective
from cce.pseudolabels import (
    converged,
    dual_bound,
    em,
    em_map,
    m_step,
    mi_adm,
    pgd,
    proj_simplex,
    proj_simplex_sort,
    sinkhorn,
)

F64 = torch.float64


seeds = st.integers(0, 2**31 - 1)


def softmax_sigma(M, K, seed, scale=1.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(scale * torch.randn(M, K, generator=g, dtype=F64), -1).to(dtype)


# ----------------------------------------------------------------------------
# M-step: closed forms (paper Examples 1-3) and KKT
# ----------------------------------------------------------------------------
def kkt_residuals(sigma, w, y):
    """Scale-aware KKT residuals of min -ln(sigma.y) - sum w ln y on the simplex (relative to gamma)."""
    s = (sigma * y).sum(-1, keepdim=True)
    gamma = 1.0 + w.sum(-1, keepdim=True)  # sum_k y_k * stationarity gives gamma = 1 + sum w
    pos = y > 0
    y_safe = torch.where(pos, y, torch.ones_like(y))
    stat = torch.where(pos, (-sigma / s - w / y_safe + gamma).abs() / gamma, torch.zeros_like(y))
    dual = torch.where(~pos, (sigma / s - gamma).clamp_min(0.0) / gamma, torch.zeros_like(y))
    return {
        "stationarity": float(stat.max()),
        "dual_feasibility": float(dual.max()),
        "zero_with_weight": bool((~pos & (w > 0)).any()),
        "simplex": float((y.sum(-1) - 1).abs().max()),
        "negative": bool((y < 0).any()),
        "finite": bool(torch.isfinite(y).all()),
    }


def assert_kkt(sigma, w, y, tol=1e-8):
    r = kkt_residuals(sigma, w, y)
    assert r["finite"], r
    assert not r["negative"], r
    assert not r["zero_with_weight"], r
    assert r["simplex"] <= 1e-12, r
    assert r["stationarity"] <= tol, r
    assert r["dual_feasibility"] <= tol, r


def test_example1_large_lambda():
    # lam -> inf: y -> u_k S_k / u.S
    sigma = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=F64)
    S = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]], dtype=F64)
    u = torch.tensor([0.5, 0.25, 0.25], dtype=F64)
    for lam in (1e6, 1e9):
        y, _ = m_step(sigma, lam * u * S)
        expected = u * S / (u * S).sum(1, keepdim=True)
        torch.testing.assert_close(y, expected, rtol=10 / lam, atol=10 / lam)
    y, _ = m_step(sigma, 1e9 * u * S)
    assert float((y - expected).abs().max()) > 0  # the limit is approached, not jumped to


def test_example2_zero_lambda():
    sigma = softmax_sigma(50, 6, 0)
    y, info = m_step(sigma, torch.zeros_like(sigma))
    assert torch.equal(y, torch.nn.functional.one_hot(sigma.argmax(1), 6).to(F64))
    assert bool(info["closed_form"].all())
    # lam -> 0 converges to the same corner, through x = sigma_max / (1 + lam (u.S - u_max S_max))
    S = torch.rand(50, 6, dtype=F64, generator=torch.Generator().manual_seed(1))
    y_small, _ = m_step(sigma, 1e-9 * S)
    torch.testing.assert_close(y_small, y, atol=1e-7, rtol=0)
    assert bool((y_small > 0).all())
    # ties at sigma_max: the documented uniform split among the tied argmaxes
    sig = torch.tensor([[0.4, 0.4, 0.2], [0.25, 0.25, 0.5]], dtype=F64)
    y, _ = m_step(sig, torch.zeros_like(sig))
    torch.testing.assert_close(y, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]], dtype=F64))


@pytest.mark.parametrize("lam", [0.0, 1e-6, 0.4, 3.0, 100.0, 1e6])
def test_example3_one_hot_sigma(lam):
    K, c = 5, 2
    sigma = torch.nn.functional.one_hot(torch.tensor([c]), K).to(F64)
    u = torch.full((K,), 1.0 / K, dtype=F64)
    S = torch.tensor([[0.1, 0.3, 0.2, 0.25, 0.15]], dtype=F64)
    y, _ = m_step(sigma, lam * u * S)
    expected = (sigma + lam * u * S) / (1 + lam * (u * S).sum())
    torch.testing.assert_close(y, expected, rtol=1e-13, atol=1e-15)
    # also with S_c = 0 (Appendix C: the weightless argmax keeps the leftover mass)
    S0 = S.clone()
    S0[0, c] = 0
    y0, info = m_step(sigma, lam * u * S0)
    expected0 = (sigma + lam * u * S0) / (1 + lam * (u * S0).sum())
    torch.testing.assert_close(y0, expected0, rtol=1e-13, atol=1e-15)


def test_appendix_c_both_branches():
    sigma = torch.tensor([[0.5, 0.3, 0.2]], dtype=F64)
    # w_max = 0, small weights elsewhere: closed form with y_c > 0 (x = sigma_c / (1 + W))
    w = torch.tensor([[0.0, 0.1, 0.05]], dtype=F64)
    y, info = m_step(sigma, w)
    W = float(w.sum())
    yk = w[0, 1:] / ((1 + W) * (1 - sigma[0, 1:] / sigma[0, 0]))
    expected = torch.cat([1 - yk.sum().reshape(1), yk])[None]
    torch.testing.assert_close(y, expected, rtol=1e-14, atol=1e-15)
    assert bool(info["closed_form"].all())
    assert_kkt(sigma, w, y)
    # large weights: that closed form would give y_c < 0, so y_c = 0 and Newton on the rest
    w = torch.tensor([[0.0, 5.0, 3.0]], dtype=F64)
    y, info = m_step(sigma, w)
    assert float(y[0, 0]) == 0.0 and not bool(info["closed_form"].any())
    assert_kkt(sigma, w, y)
    # argmax tied with a weighted class: y_c = 0 (the closed form needs sigma_c > sigma_k)
    sigma = torch.tensor([[0.4, 0.4, 0.2]], dtype=F64)
    w = torch.tensor([[0.0, 0.01, 0.01]], dtype=F64)
    y, _ = m_step(sigma, w)
    assert float(y[0, 0]) == 0.0
    assert_kkt(sigma, w, y)


def _special_batch(seed, M, K, lam, flags):
    """Random (sigma, w) rows mixing the Appendix C cases."""
    rng = np.random.default_rng(seed)
    scale = rng.choice([0.1, 1.0, 5.0, 30.0])
    sigma = np.exp(scale * rng.standard_normal((M, K)))
    if "sigma_zeros" in flags:
        sigma *= rng.random((M, K)) > 0.4
        sigma[sigma.sum(1) == 0, 0] = 1.0
    if "ties" in flags:
        sigma = np.round(sigma * 4 / sigma.max(1, keepdims=True)) + (rng.random((M, K)) < 0.2)
    if "one_hot" in flags:
        rows = rng.random(M) < 0.3
        sigma[rows] = np.eye(K)[rng.integers(0, K, rows.sum())]
    bad = sigma.sum(1) == 0
    sigma[bad, 0] = 1.0
    sigma /= sigma.sum(1, keepdims=True)
    S = rng.random((M, K))
    if "w_zeros" in flags:
        S *= rng.random((M, K)) > 0.5
    if "w_zero_at_max" in flags:
        S[np.arange(M), sigma.argmax(1)] = 0.0
    S = S / np.maximum(S.sum(0, keepdims=True), 1e-300)
    w = lam * M * S / K  # EM's weights lam * M * u_k * S_ik
    if "w_spread" in flags:
        w *= 10.0 ** rng.uniform(-6, 3, (M, K))
    return torch.from_numpy(sigma), torch.from_numpy(w)


FLAGS = ["sigma_zeros", "ties", "one_hot", "w_zeros", "w_zero_at_max", "w_spread"]


@settings(max_examples=1000, deadline=None)
@given(
    seed=seeds,
    M=st.integers(1, 40),
    K=st.integers(1, 30),
    lam=st.sampled_from([0.0, 1e-12, 1e-6, 1e-3, 0.4, 1.0, 100.0, 1e4, 1e6]),
    flags=st.sets(st.sampled_from(FLAGS)),
)
def test_m_step_kkt_random(seed, M, K, lam, flags):
    sigma, w = _special_batch(seed, M, K, lam, flags)
    y, info = m_step(sigma, w)
    assert info["newton_converged"]
    assert_kkt(sigma, w, y, tol=1e-8)


@settings(max_examples=1000, deadline=None)
@given(
    sigma=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8),
    w=st.lists(st.one_of(st.just(0.0), st.floats(1e-9, 1e6)), min_size=8, max_size=8),
)
def test_m_step_kkt_raw_floats(sigma, w):
    K = len(sigma)
    s = torch.tensor([sigma], dtype=F64)
    if float(s.sum()) == 0.0:
        s[0, 0] = 1.0
    s = s / s.sum()
    wt = torch.tensor([w[:K]], dtype=F64)
    y, info = m_step(s, wt)
    assert_kkt(s, wt, y, tol=1e-8)


def test_m_step_blocks_and_warm_start(monkeypatch):
    import cce.pseudolabels._em as P

    sigma, w = _special_batch(5, 300, 7, 2.0, {"w_zeros", "ties", "one_hot"})
    y_ref, info_ref = m_step(sigma, w)
    monkeypatch.setattr(P, "_CPU_BLOCK", 70)  # blocks of 10 rows
    y_blk, info_blk = m_step(sigma, w)
    assert torch.equal(y_blk, y_ref) and torch.equal(info_blk["d"], info_ref["d"])
    # EM's warm start: any d0, left or right of the root, gives the same solution
    prep = P._SigmaPrep(sigma)
    for d0 in (info_ref["d"], 3 * info_ref["d"] + 1, 0.5 * info_ref["d"], torch.full_like(info_ref["d"], 1e300)):
        y, _ = P._m_step(prep, w, d0.unsqueeze(-1))
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-15)
        assert_kkt(sigma, w, y)


def test_m_step_float32_and_validation():
    sigma, w = _special_batch(3, 500, 20, 1.0, {"w_zeros", "ties"})
    y, _ = m_step(sigma.float(), w.float())
    assert y.dtype == torch.float32 and bool(torch.isfinite(y).all())
    y64, _ = m_step(sigma, w)
    assert float((y.double() - y64).abs().max()) < 1e-4
    r = kkt_residuals(sigma.float().double(), w.float().double(), y.double())
    assert r["stationarity"] < 1e-5 and r["dual_feasibility"] < 1e-5 and not r["zero_with_weight"]
    with pytest.raises(ValueError):
        m_step(sigma, -w - 1)
    with pytest.raises(ValueError):
        m_step(sigma, w[:, :3])


# ----------------------------------------------------------------------------
# EM
# ----------------------------------------------------------------------------
def assert_nonincreasing(obj, rtol=1e-13):
    obj = np.asarray(obj)
    fin = np.isfinite(obj)
    assert fin[-1]
    # once finite, never up (beyond float rounding); an infinite start may only go down
    d = obj[1:][fin[:-1]] - obj[:-1][fin[:-1]]
    assert np.all(d <= rtol * np.abs(obj[:-1][fin[:-1]])), d.max()


@pytest.mark.parametrize("acceleration", [None, "squarem"])
@pytest.mark.parametrize("K,lam", [(2, 100.0), (5, 0.4), (20, 100.0), (20, 0.04), (50, 1.0)])
def test_em_monotone(acceleration, K, lam):
    sigma = softmax_sigma(120, K, K, scale=2.0)
    y, info = em(sigma, lam, tol=0.0, max_iter=150, acceleration=acceleration)
    obj = info["objective"]
    assert len(obj) == info["iterations"] + 1
    # tol=0 stops only at an exact fixed point of the objective
    assert info["iterations"] == 150 or (info["converged"] and obj[-1] == obj[-2])
    assert_nonincreasing(obj)
    assert obj[-1] < obj[0]
    assert obj[-1] == pytest.approx(float(self_labeling_objective(y, sigma, lam)), rel=1e-14)
    assert bool(torch.isfinite(y).all())


def _scipy_optimum(sigma, lam, fairness, cross_entropy="collision"):
    """Independent solver: SLSQP on the convex objective over M simplices."""
    M, K = sigma.shape
    s = sigma.numpy()

    def f(x):
        y = torch.from_numpy(x.reshape(M, K))
        return float(self_labeling_objective(y, sigma, lam, None, fairness, cross_entropy))

    def grad(x):
        y = torch.from_numpy(x.reshape(M, K)).requires_grad_(True)
        (g,) = torch.autograd.grad(self_labeling_objective(y, sigma, lam, None, fairness, cross_entropy), y)
        return g.numpy().ravel()

    cons = {"type": "eq", "fun": lambda x: x.reshape(M, K).sum(1) - 1.0,
            "jac": lambda x: np.kron(np.eye(M), np.ones((1, K)))}
    best = None
    for x0 in (s.ravel(), np.full(M * K, 1.0 / K)):
        r = minimize(f, x0, jac=grad, method="SLSQP", bounds=[(1e-12, 1.0)] * (M * K), constraints=[cons],
                     options={"ftol": 1e-15, "maxiter": 2000})
        if best is None or r.fun < best.fun:
            best = r
    return best.fun


@pytest.mark.parametrize("lam", [0.3, 2.0, 20.0])
def test_em_optimum_matches_independent_solvers(lam):
    sigma = softmax_sigma(8, 3, 11, scale=1.5)
    y, info = em(sigma, lam, tol=1e-14, max_iter=3000, acceleration="squarem")
    f_em = info["objective"][-1]
    f_sp = _scipy_optimum(sigma, lam, "reverse_kl")
    lower = dual_bound(y, sigma, lam)
    assert lower <= f_sp + 1e-12 and lower <= f_em + 1e-12
    assert (f_em - lower) / abs(f_em) < 1e-6
    assert (f_em - f_sp) / abs(f_sp) < 1e-6
    _, ip = pgd(sigma, lam, step=0.02, tol=1e-15, max_iter=100000)
    assert abs(ip["objective"][-1] - f_em) / abs(f_em) < 1e-6


@pytest.mark.parametrize("K,lam", [(20, 0.4), (5, 100.0)])
def test_em_optimum_dual_gap_table1_size(K, lam):
    # a batch of the paper's size; the certificate needs no other solver
    sigma = softmax_sigma(250, K, 0)
    y, info = em(sigma, lam, tol=1e-12, max_iter=3000, acceleration="squarem")
    f = info["objective"][-1]
    assert (f - dual_bound(y, sigma, lam)) / f < 1e-6


@settings(max_examples=100, deadline=None)
@given(seed=seeds, K=st.integers(1, 6), lam=st.sampled_from([0.0, 0.1, 1.0, 30.0]),
       fairness=st.sampled_from(["reverse_kl", "kl"]), zero_prior=st.booleans())
def test_dual_bound_is_a_lower_bound(seed, K, lam, fairness, zero_prior):
    # weak duality: the bound read off any y1 is below the objective at any y2
    sigma = softmax_sigma(12, K, seed, scale=2.0)
    prior = torch.rand(K, dtype=F64, generator=torch.Generator().manual_seed(seed)) + 0.1
    if zero_prior and K > 1:
        prior[0] = 0.0
        sigma[:, 0] *= 0.1  # and keep it usable
    prior = prior / prior.sum()
    y1 = softmax_sigma(12, K, seed + 1, scale=3.0)
    y2 = softmax_sigma(12, K, seed + 2, scale=3.0)
    if zero_prior and K > 1 and fairness == "kl":
        y2[:, 0] = 0.0  # finite KL(ybar || prior) needs ybar_0 = 0
        y2 = y2 / y2.sum(1, keepdim=True)
    lower = dual_bound(y1, sigma, lam, prior, fairness)
    assert not math.isnan(lower)
    for y in (y1, y2, sigma):
        f = float(self_labeling_objective(y, sigma, lam, prior, fairness))
        assert lower <= f + 1e-12 * abs(f)


def test_em_plain_matches_squarem_and_lambda_zero():
    sigma = softmax_sigma(60, 4, 5)
    _, a = em(sigma, 0.4, tol=1e-13, max_iter=20000)
    _, b = em(sigma, 0.4, tol=1e-13, max_iter=20000, acceleration="squarem")
    assert abs(a["objective"][-1] - b["objective"][-1]) / b["objective"][-1] < 1e-7
    y, info = em(sigma, 0.0)
    assert torch.equal(y, torch.nn.functional.one_hot(sigma.argmax(1), 4).to(F64))
    assert info["converged"] and info["iterations"] == 2  # one step to the optimum, one to see no change


def test_squarem_cuts_em_steps_where_plain_em_is_slow():
    # lam = 100 in the mean form: the optimum has many y_ik near 0 and plain EM crawls.
    sigma = softmax_sigma(250, 2, 2)
    _, ref = em(sigma, 100.0, tol=1e-14, max_iter=2000, acceleration="squarem")
    target = ref["objective"][-1] * (1 + 1e-5)
    _, sq = em(sigma, 100.0, tol=0.0, max_iter=2000, acceleration="squarem")
    n_sq = next(i for i, f in enumerate(sq["objective"]) if f <= target)
    steps_sq = n_sq * 6  # upper bound on EM maps per SQUAREM iteration
    _, pl = em(sigma, 100.0, tol=0.0, max_iter=3 * steps_sq)
    assert min(pl["objective"]) > target  # plain EM needs more than 3x the EM maps
    assert sq["accepted"] > 0


def test_em_property1_positivity():
    sigma = softmax_sigma(40, 6, 9)
    sigma[:5, 2] = 0.0
    sigma = sigma / sigma.sum(1, keepdim=True)
    g = torch.Generator().manual_seed(3)
    y = torch.rand(40, 6, generator=g, dtype=F64) * (torch.rand(40, 6, generator=g, dtype=F64) > 0.4)
    y[:, 0] += 0.1
    y = y / y.sum(1, keepdim=True)
    is_max = sigma == sigma.amax(1, keepdim=True)
    u = torch.full((6,), 1 / 6, dtype=F64)
    grew = False
    for _ in range(30):
        y_new = em_map(y, sigma, 3.0, u)
        assert bool((y_new[y > 0] > 0).all())  # positive entries stay positive
        born = (y == 0) & (y_new > 0)
        assert bool(is_max[born].all())  # zeros turn positive only at sigma_max
        grew |= bool(born.any())
        y = y_new
    assert grew
    # and em() itself accepts y0 with zeros (even an empty class: objective +inf at the start)
    y0 = torch.nn.functional.one_hot(torch.zeros(40, dtype=torch.long), 6).to(F64)
    yy, info = em(sigma, 3.0, y0=y0, max_iter=50)
    assert math.isinf(info["objective"][0]) and math.isfinite(info["objective"][-1])
    assert bool(torch.isfinite(yy).all())


def test_em_float32_prior_and_validation():
    sigma = softmax_sigma(100, 5, 4).float()
    prior = torch.tensor([0.4, 0.3, 0.1, 0.1, 0.1])
    y, info = em(sigma, 2.0, prior=prior, max_iter=50, acceleration="squarem")
    assert y.dtype == torch.float32 and bool(torch.isfinite(y).all())
    assert_nonincreasing(info["objective"], rtol=1e-5)
    # the prior is what the fairness term balances towards
    y64, _ = em(sigma.double(), 50.0, prior=prior.double(), tol=1e-9, max_iter=300, acceleration="squarem")
    torch.testing.assert_close(y64.mean(0), prior.double(), atol=0.02, rtol=0)
    with pytest.raises(ValueError):
        em(sigma, 1.0, acceleration="anderson")
    with pytest.raises(ValueError, match="lam"):
        em(sigma, -1.0)
    with pytest.raises(ValueError, match="sigma"):
        em(-sigma, 1.0)
    with pytest.raises(ValueError):
        em(sigma, 1.0, prior=torch.ones(5))
    with pytest.raises(ValueError):
        em(sigma, 1.0, y0=sigma[:, :2])


def test_converged_rule():
    assert converged(1.0, 1.0 - 1e-8, 1e-7)
    assert not converged(1.0, 1.0 - 1e-6, 1e-7)
    assert not converged(1.0, 1.0 + 1e-6, 1e-7)  # an increase is a change too
    assert not converged(math.inf, 1.0, 1e-7)


# ----------------------------------------------------------------------------
# PGD and the simplex projection
# ----------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(seed=seeds, M=st.integers(1, 20), K=st.integers(1, 80), scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_projection_exact(seed, M, K, scale):
    g = torch.Generator().manual_seed(seed)
    v = scale * torch.randn(M, K, generator=g, dtype=F64)
    if seed % 3 == 0:
        v = torch.round(v)  # ties
    for y in (proj_simplex(v, "michelot"), proj_simplex(v, "sort"), proj_simplex(v)):
        assert bool((y >= 0).all())
        torch.testing.assert_close(y.sum(1), torch.ones(M, dtype=F64), rtol=0, atol=1e-12)
        # KKT of min |y - v|^2 / 2: v_k - y_k = theta on the support, v_k <= theta off it
        theta = ((v - y) * (y > 0)).sum(1, keepdim=True) / (y > 0).sum(1, keepdim=True)
        tol = 1e-12 * (1 + v.abs().max())
        assert float(((v - y - theta).abs() * (y > 0)).max()) <= tol
        assert float(((v - theta).clamp_min(0) * (y == 0)).max()) <= tol
    ref = torch.from_numpy(ot.utils.proj_simplex(v.numpy().T).T)
    torch.testing.assert_close(proj_simplex(v), ref, rtol=0, atol=1e-12 * (1 + float(v.abs().max())))
    torch.testing.assert_close(proj_simplex(v, "michelot"), proj_simplex_sort(v), rtol=0,
                               atol=1e-12 * (1 + float(v.abs().max())))


@pytest.mark.parametrize("method", ["sort", "michelot"])
def test_projection_of_huge_float32_entries(method):
    # u_1 - (u_1 - 1) rounds to 0 in float32 for u_1 >= 2**24: the projection is still the corner
    v = torch.tensor([[3.0e7, 1.0, -2.0], [1.0, 2.0**25, 0.5], [0.2, 0.3, 0.1]], dtype=torch.float32)
    y = proj_simplex(v, method)
    torch.testing.assert_close(y[:2], torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    torch.testing.assert_close(y[2], proj_simplex(v[2:].double(), method)[0].float())


@pytest.mark.parametrize("fairness", ["reverse_kl", "kl"])
def test_pgd_decreases_objective(fairness):
    sigma = softmax_sigma(100, 10, 1)
    y, info = pgd(sigma, 0.4, fairness=fairness, step=0.05, tol=0.0, max_iter=200)
    assert_nonincreasing(info["objective"], rtol=1e-13)
    assert info["objective"][-1] < 0.9 * info["objective"][0]
    assert info["objective"][-1] == pytest.approx(float(self_labeling_objective(y, sigma, 0.4, None, fairness)),
                                                  rel=1e-14)
    assert not info["diverged"] and info["iterations"] == 200


@pytest.mark.parametrize("lam", [0.3, 2.0])
def test_pgd_l_cce_matches_independent_solver(lam):
    # L_CCE (eq. 10), which EM cannot solve
    sigma = softmax_sigma(8, 3, 21, scale=1.5)
    y, info = pgd(sigma, lam, fairness="kl", step=0.02, tol=1e-15, max_iter=100000)
    f = info["objective"][-1]
    f_sp = _scipy_optimum(sigma, lam, "kl")
    lower = dual_bound(y, sigma, lam, fairness="kl")
    assert lower <= f + 1e-12 and lower <= f_sp + 1e-12
    assert (f - lower) / f < 1e-6
    assert abs(f - f_sp) / f < 1e-6


@pytest.mark.parametrize("fairness", ["reverse_kl", "kl"])
@pytest.mark.parametrize("lam,gap", [(0.4, 1e-6), (100.0, 1e-5)])
def test_pgd_armijo_is_monotone_and_reaches_the_optimum(fairness, lam, gap):
    # A fixed step that suits lam = 0.4 diverges at lam = 100; backtracking needs no tuning.
    # At lam = 100 the optimum lies near the simplex boundary and PGD crawls (sublinearly):
    # the stopping rule fires about 2e-6 above the optimum, hence the wider gap there.
    sigma = softmax_sigma(8, 3, 21, scale=1.5)
    y, info = pgd(sigma, lam, fairness=fairness, step="armijo", tol=1e-13, max_iter=20000)
    assert_nonincreasing(info["objective"], rtol=1e-13)
    assert info["converged"] and not info["diverged"] and info["evaluations"] >= info["iterations"]
    f = info["objective"][-1]
    lower = dual_bound(y, sigma, lam, fairness=fairness)
    assert 0 <= (f - lower) / abs(f) < gap
    assert abs(f - _scipy_optimum(sigma, lam, fairness)) / abs(f) < gap
    if lam > 1:  # the fixed step that Table 1 uses for K = 20 fails here
        _, fixed = pgd(sigma, lam, fairness=fairness, step=1.0, max_iter=50)
        assert fixed["diverged"] or fixed["objective"][-1] > f * (1 + 1e-3)
    with pytest.raises(ValueError, match="step"):
        pgd(sigma, lam, step="fast")


def test_pgd_diverging_step_is_reported():
    sigma = softmax_sigma(250, 200, 0)
    y, info = pgd(sigma, 0.4, step=5.0, max_iter=50)
    assert info["diverged"] and bool(torch.isfinite(y).all())
    with pytest.raises(ValueError):
        pgd(sigma, 0.4, fairness="both")


# ----------------------------------------------------------------------------
# SeLa Sinkhorn and MI-ADM
# ----------------------------------------------------------------------------
def _sinkhorn_loop(sigma, prior, epsilon, n_iter):
    """A plain log-domain Sinkhorn in torch (the loop cce had before it called POT), class masses exact."""
    logk = torch.log(sigma) / epsilon
    loga = torch.full((sigma.shape[0],), -math.log(sigma.shape[0]), dtype=sigma.dtype)
    beta = torch.zeros(sigma.shape[1], dtype=sigma.dtype)
    for _ in range(n_iter):
        alpha = loga - torch.logsumexp(logk + beta, 1)
        beta = torch.log(prior) - torch.logsumexp(logk + alpha[:, None], 0)
    return (logk + alpha[:, None] + beta).exp()


def test_sinkhorn_marginals_and_plain_loop():
    # cce.pseudolabels.sinkhorn is POT's log-domain Sinkhorn: the same plan and labels as a
    # loop written from eq. (4), and both marginals met.
    sigma = softmax_sigma(200, 7, 2, scale=2.0)
    prior = torch.tensor([0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1], dtype=F64)
    y, info = sinkhorn(sigma, epsilon=0.1, prior=prior, tol=1e-13, n_iter=5000)
    P = info["plan"]
    assert info["converged"] and info["marginal_error"] < 1e-13 and 10 < info["iterations"] < 5000
    assert P.dtype == F64 and y.dtype == F64
    torch.testing.assert_close(P.sum(1), torch.full((200,), 1 / 200, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(P.sum(0), prior, rtol=0, atol=1e-12)
    ref = _sinkhorn_loop(sigma, prior, 0.1, info["iterations"] + 100)
    torch.testing.assert_close(P, ref, rtol=0, atol=1e-10)
    assert torch.equal(y, torch.nn.functional.one_hot(ref.argmax(1), 7).to(F64))


def test_sinkhorn_sela_labels_match_plain_loop_and_stop_at_n_iter():
    # SeLa's setting (uniform classes, epsilon 0.05, tol 1e-4 of the sela method): the labels
    # of the stopped POT run are those of the converged loop but for points on a tie.
    g = torch.Generator().manual_seed(1)
    sigma = torch.softmax(3.0 * torch.randn(2000, 10, generator=g, dtype=F64), -1)
    y, info = sinkhorn(sigma, n_iter=1000, epsilon=0.05, tol=1e-4)
    assert info["converged"]
    ref = _sinkhorn_loop(sigma, torch.full((10,), 0.1, dtype=F64), 0.05, 2000)
    assert float((y.argmax(1) != ref.argmax(1)).double().mean()) <= 1e-3
    y1, info1 = sinkhorn(sigma, n_iter=1, epsilon=0.05, tol=1e-4)
    assert info1["iterations"] == 1 and not info1["converged"] and y1.shape == (2000, 10)


def test_sinkhorn_balances_hard_labels():
    # every point prefers class 0 a little: argmax puts all in class 0, SeLa balances.
    M, K = 300, 3
    g = torch.Generator().manual_seed(0)
    logits = 0.5 * torch.randn(M, K, generator=g, dtype=F64)
    logits[:, 0] += 3.0
    sigma = torch.softmax(logits, -1)
    assert int((sigma.argmax(1) == 0).sum()) == M
    y, info = sinkhorn(sigma, epsilon=0.05, tol=1e-10, n_iter=5000)
    counts = y.sum(0)
    assert float(counts.sum()) == M and bool((y.sum(1) == 1).all())
    assert float((counts - M / K).abs().max()) <= 0.05 * M
    y32, _ = sinkhorn(sigma.float(), epsilon=0.05)
    assert bool(torch.isfinite(y32).all())


@pytest.mark.parametrize("lam", [0.2, 1.0, 5.0])
def test_mi_adm_optimal(lam):
    sigma = softmax_sigma(8, 3, 5, scale=1.5)
    y, info = mi_adm(sigma, lam, tol=1e-15, max_iter=20000)
    f = info["objective"][-1]
    assert info["dual_gap"] >= -1e-12
    assert info["dual_gap"] / f < 1e-6
    f_sp = _scipy_optimum(sigma, lam, "kl", "shannon")
    assert (f - f_sp) / f < 1e-6
    assert_nonincreasing(info["objective"])
    # the plain mirror-descent map converges to the same value (more slowly)
    _, plain = mi_adm(sigma, lam, tol=0.0, max_iter=20000, acceleration=None)
    assert_nonincreasing(plain["objective"])
    assert (plain["objective"][-1] - f) / f < 1e-6
    # bigger batch: the dual certificate alone
    sigma = softmax_sigma(250, 10, 6)
    y, info = mi_adm(sigma, lam, tol=1e-14, max_iter=20000)
    assert info["dual_gap"] / info["objective"][-1] < 1e-6
    assert_nonincreasing(info["objective"])


@pytest.mark.parametrize("step", ["armijo", 0.5])
def test_pgd_lambda_zero_ignores_a_zero_prior(step):
    """lam = 0 drops the fairness term, as in the objective: a zero prior entry under KL(ybar || u)
    no longer makes the gradient 0 * inf = nan (which failed in the simplex projection), and PGD
    reaches F* = mean_i -ln max_k sigma_ik (each point on its argmax)."""
    sigma = softmax_sigma(20, 4, 8)
    prior = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=F64)
    assert bool((sigma.argmax(1) >= 2).any())  # some points belong to a zero-prior class
    y, info = pgd(sigma, 0.0, prior, fairness="kl", step=step, tol=1e-12, max_iter=2000)
    f_star = float(-torch.log(sigma.amax(1)).mean())
    assert math.isfinite(info["objective"][-1]) and info["objective"][-1] - f_star <= 1e-9
    assert bool((y.argmax(1) == sigma.argmax(1)).all())


def test_mi_adm_lambda_zero_is_argmax():
    sigma = softmax_sigma(30, 4, 8)
    y, info = mi_adm(sigma, 0.0)
    assert torch.equal(y, torch.nn.functional.one_hot(sigma.argmax(1), 4).to(F64))
    # a 3-way tie in float64 is split exactly (in sigma's dtype, not the default float32)
    tied = torch.tensor([[0.3, 0.3, 0.3, 0.1]], dtype=F64)
    y, _ = mi_adm(tied, 0.0)
    assert y.dtype == F64
    assert torch.equal(y, torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0]], dtype=F64))
