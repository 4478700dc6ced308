"""Formulas of cce.losses: closed forms, identities of Section 3, logit versions, the nn.Module."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cce.losses import (
    CollisionCrossEntropyLoss,
    collision_cross_entropy,
    collision_cross_entropy_with_logits,
    collision_entropy,
    entropy,
    kl_divergence,
    mutual_information_loss,
    mutual_information_loss_with_logits,
    self_labeling_objective,
    shannon_cross_entropy,
    shannon_cross_entropy_with_logits,
)

F64 = torch.float64




def rand_simplex(M, K, seed, zeros=0.0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(M, K, generator=g, dtype=F64)
    if zeros:
        x = x * (torch.rand(M, K, generator=g, dtype=F64) > zeros)
        x[:, 0] += (x.sum(1) == 0).to(F64)  # keep every row non-empty
    return (x / x.sum(1, keepdim=True)).to(dtype)


seeds = st.integers(0, 2**31 - 1)
dims = st.integers(1, 12)


def h2_reference(p, q):
    """-ln(p_i . q_i) per row, in plain float64 numpy / Python (independent of cce.losses)."""
    dots = [float(np.dot(a, b)) for a, b in zip(p.numpy(), q.numpy())]
    return np.array([-math.log(d) if d > 0 else math.inf for d in dots])


def test_entropies_closed_forms():
    u = torch.full((4,), 0.25, dtype=F64)
    assert float(entropy(u)) == pytest.approx(math.log(4), rel=1e-15)
    assert float(collision_entropy(u)) == pytest.approx(math.log(4), rel=1e-15)
    e = torch.tensor([0.0, 1.0, 0.0], dtype=F64)
    assert float(entropy(e)) == 0.0 and float(collision_entropy(e)) == 0.0
    p = torch.tensor([0.5, 0.25, 0.25], dtype=F64)
    assert float(collision_entropy(p)) == pytest.approx(-math.log(0.375), rel=1e-15)
    # H2 <= H (Renyi entropies decrease with the order)
    assert float(collision_entropy(p)) < float(entropy(p))


@settings(max_examples=100, deadline=None)
@given(seed=seeds, K=dims)
def test_h2_equals_h_for_one_hot(seed, K):
    sigma = rand_simplex(5, K, seed)
    labels = torch.randint(0, K, (5,), generator=torch.Generator().manual_seed(seed))
    y = torch.nn.functional.one_hot(labels, K).to(F64)
    torch.testing.assert_close(collision_cross_entropy(y, sigma), shannon_cross_entropy(y, sigma), rtol=1e-14, atol=0)
    torch.testing.assert_close(collision_cross_entropy(y, y), collision_entropy(y))
    # independent values: H2(e_c, sigma) = -ln sigma_c, and H2(e_c, e_c) = 0
    ref = [-math.log(float(sigma[i, c])) for i, c in enumerate(labels.tolist())]
    np.testing.assert_allclose(collision_cross_entropy(y, sigma).numpy(), ref, rtol=1e-14, atol=0)
    assert torch.equal(collision_cross_entropy(y, y), torch.zeros(5, dtype=F64))


@settings(max_examples=100, deadline=None)
@given(seed=seeds, K=dims, zeros=st.sampled_from([0.0, 0.3]))
def test_h2_symmetric_and_cosine_identity(seed, K, zeros):
    p = rand_simplex(7, K, seed, zeros)
    q = rand_simplex(7, K, seed + 1, zeros)
    h = collision_cross_entropy(p, q)
    torch.testing.assert_close(h, collision_cross_entropy(q, p), rtol=1e-15, atol=0)
    ok = torch.isfinite(h)
    cos = (p * q).sum(1) / (p.norm(dim=1) * q.norm(dim=1))
    rhs = -torch.log(cos) + (collision_entropy(p) + collision_entropy(q)) / 2
    torch.testing.assert_close(h[ok], rhs[ok], rtol=1e-12, atol=1e-12)
    # H2(p, q) >= (H2(p) + H2(q)) / 2 with equality iff p = q
    assert bool((h[ok] >= (collision_entropy(p) + collision_entropy(q))[ok] / 2 - 1e-12).all())
    torch.testing.assert_close(collision_cross_entropy(p, p), collision_entropy(p))
    # independent of the product's commutativity: both orders against -ln(p . q) in numpy
    ref = h2_reference(p, q)
    np.testing.assert_allclose(h.numpy(), ref, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(collision_cross_entropy(q, p).numpy(), ref, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(collision_cross_entropy(p, p).numpy(), h2_reference(p, p), rtol=1e-13, atol=1e-14)
    # ... and strictly greater where p != q
    differ = ok & (p != q).any(1)
    assert bool((h[differ] > (collision_entropy(p) + collision_entropy(q))[differ] / 2).all())


def test_gradient_zero_for_uniform_y():
    # Fig. 1 caption: H2(u, softmax(l)) = ln K for every l, so its gradient vanishes.
    for K in (2, 5, 100):
        logits = torch.randn(10, K, dtype=F64, requires_grad=True)
        y = torch.full((10, K), 1.0 / K, dtype=F64)
        loss = collision_cross_entropy_with_logits(y, logits)
        torch.testing.assert_close(loss, torch.full((10,), math.log(K), dtype=F64))
        (g,) = torch.autograd.grad(loss.sum(), logits)
        assert float(g.abs().max()) < 1e-15
        # while Shannon's cross-entropy trains sigma towards u
        (gs,) = torch.autograd.grad(shannon_cross_entropy_with_logits(y, logits).sum(), logits)
        assert float(gs.abs().max()) > 1e-3


@settings(max_examples=100, deadline=None)
@given(seed=seeds, K=dims, zeros=st.sampled_from([0.0, 0.5]), scale=st.sampled_from([0.1, 3.0, 30.0]),
       dtype=st.sampled_from([torch.float32, F64]))
def test_logit_versions_equal_probability_versions(seed, K, zeros, scale, dtype):
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(6, K, generator=g, dtype=F64)).to(dtype)
    y = rand_simplex(6, K, seed, zeros, dtype)
    sigma = torch.softmax(logits.to(F64), -1)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == F64 else dict(rtol=2e-5, atol=2e-5)
    ref = collision_cross_entropy(y.to(F64), sigma)
    ok = torch.isfinite(ref)
    torch.testing.assert_close(collision_cross_entropy_with_logits(y, logits).to(F64)[ok], ref[ok], **tol)
    ref_h = shannon_cross_entropy(y.to(F64), sigma)
    torch.testing.assert_close(shannon_cross_entropy_with_logits(y, logits).to(F64), ref_h, **tol)
    torch.testing.assert_close(mutual_information_loss_with_logits(logits).to(F64),
                               mutual_information_loss(sigma), **tol)


def test_logits_version_survives_extreme_logits():
    # sigma . y underflows in probability space, not in log space
    logits = torch.tensor([[0.0, -800.0, 5.0]], dtype=F64)
    y = torch.tensor([[0.0, 1.0, 0.0]], dtype=F64)
    out = collision_cross_entropy_with_logits(y, logits)
    expected = 805.0 + math.log1p(math.exp(-5.0)) + math.log1p(math.exp(-805.0))
    assert float(out) == pytest.approx(expected, rel=1e-14)
    assert math.isinf(float(collision_cross_entropy(y, torch.softmax(logits, -1))))


@settings(max_examples=60, deadline=None)
@given(seed=seeds, K=st.integers(2, 10), dtype=st.sampled_from([torch.float32, F64]))
def test_logit_gradients_finite_and_exact_with_zeros_in_y(seed, K, dtype):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(5, K, generator=g, dtype=F64)).to(dtype).requires_grad_(True)
    y = rand_simplex(5, K, seed, 0.5, dtype).requires_grad_(True)
    loss = collision_cross_entropy_with_logits(y, logits).sum()
    gy, gl = torch.autograd.grad(loss, (y, logits))
    assert bool(torch.isfinite(gy).all()) and bool(torch.isfinite(gl).all())
    # reference: autograd of -ln(sum y softmax) in float64, exact where y_k = 0 too
    l64 = logits.detach().to(F64).requires_grad_(True)
    y64 = y.detach().to(F64).requires_grad_(True)
    ref = -torch.log((y64 * torch.softmax(l64, -1)).sum(-1)).sum()
    ry, rl = torch.autograd.grad(ref, (y64, l64))
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == F64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gy.to(F64), ry, **tol)
    torch.testing.assert_close(gl.to(F64), rl, **tol)


def test_module_equals_cross_entropy_on_hard_targets():
    torch.manual_seed(0)
    for dtype in (torch.float32, F64):
        logits = (4 * torch.randn(32, 7)).to(dtype).requires_grad_(True)
        target = torch.randint(0, 7, (32,))
        target[::5] = -100
        for reduction in ("mean", "sum", "none"):
            ours = CollisionCrossEntropyLoss(reduction=reduction)(logits, target)
            ref = torch.nn.CrossEntropyLoss(reduction=reduction)(logits, target)
            assert torch.equal(ours, ref)
            g1 = torch.autograd.grad(ours.sum(), logits)[0]
            g2 = torch.autograd.grad(ref.sum(), logits)[0]
            assert torch.equal(g1, g2)
        ours = CollisionCrossEntropyLoss(ignore_index=3)(logits, target.clamp_min(0))
        ref = torch.nn.CrossEntropyLoss(ignore_index=3)(logits, target.clamp_min(0))
        assert torch.equal(ours, ref)
        # the collision formula itself (soft path), not only the dispatch to F.cross_entropy:
        # one-hot float targets (no ignored entries) give the cross-entropy of the hard targets
        hard = target.clamp_min(0)
        soft = torch.nn.functional.one_hot(hard, 7).to(dtype)
        tol = dict(rtol=1e-14, atol=1e-14) if dtype == F64 else dict(rtol=1e-5, atol=1e-5)
        for reduction in ("mean", "sum", "none"):
            ours = CollisionCrossEntropyLoss(reduction=reduction)(logits, soft)
            ref = torch.nn.functional.cross_entropy(logits, hard, reduction=reduction)
            torch.testing.assert_close(ours, ref, **tol)
            g1 = torch.autograd.grad(ours.sum(), logits)[0]
            g2 = torch.autograd.grad(ref.sum(), logits)[0]
            torch.testing.assert_close(g1, g2, **tol)
    # (N, K, d) layout, hard and one-hot soft targets
    logits = torch.randn(4, 5, 3, dtype=F64)
    t = torch.randint(0, 5, (4, 3))
    assert torch.equal(CollisionCrossEntropyLoss()(logits, t), torch.nn.CrossEntropyLoss()(logits, t))
    soft = torch.nn.functional.one_hot(t, 5).movedim(-1, 1).to(F64)
    for reduction in ("mean", "sum", "none"):
        torch.testing.assert_close(CollisionCrossEntropyLoss(reduction=reduction)(logits, soft),
                                   torch.nn.CrossEntropyLoss(reduction=reduction)(logits, t), rtol=1e-14, atol=1e-14)


def test_module_soft_targets_and_validation():
    logits = torch.randn(6, 4, dtype=F64, requires_grad=True)
    y = rand_simplex(6, 4, 3, 0.4)
    loss = CollisionCrossEntropyLoss()(logits, y)
    torch.testing.assert_close(loss, collision_cross_entropy(y, torch.softmax(logits, -1)).mean())
    loss.backward()
    assert bool(torch.isfinite(logits.grad).all())
    with pytest.raises(ValueError):
        CollisionCrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError):
        CollisionCrossEntropyLoss()(logits, y[:, :3])


def test_kl_divergence_conventions():
    p = torch.tensor([0.5, 0.5, 0.0], dtype=F64)
    q = torch.tensor([0.25, 0.25, 0.5], dtype=F64)
    assert float(kl_divergence(p, q)) == pytest.approx(math.log(2), rel=1e-15)
    assert float(kl_divergence(p, p)) == 0.0
    assert math.isinf(float(kl_divergence(q, p)))
    assert float(kl_divergence(torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64))) == 0.0


def test_mutual_information_loss():
    sigma = rand_simplex(9, 4, 1)
    ref = np.mean([-(s * np.log(s)).sum() for s in sigma.numpy()])
    m = sigma.numpy().mean(0)
    ref -= -(m * np.log(m)).sum()
    assert float(mutual_information_loss(sigma)) == pytest.approx(ref, rel=1e-13)
    # decisive and balanced predictions reach -ln K
    eye = torch.eye(4, dtype=F64)
    assert float(mutual_information_loss(eye)) == pytest.approx(-math.log(4), rel=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_self_labeling_objective_variants(dtype):
    y = rand_simplex(10, 3, 5, dtype=dtype)
    sigma = rand_simplex(10, 3, 6, dtype=dtype)
    prior = torch.tensor([0.5, 0.3, 0.2], dtype=dtype)
    ybar = y.mean(0)
    h2 = -torch.log((y * sigma).sum(1)).mean()
    h = -(y * torch.log(sigma)).sum(1).mean()
    rkl = (prior * torch.log(prior / ybar)).sum()
    kl = (ybar * torch.log(ybar / prior)).sum()
    lam = 2.5
    tol = dict(rtol=1e-12, atol=0) if dtype == F64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(self_labeling_objective(y, sigma, lam, prior), h2 + lam * rkl, **tol)
    torch.testing.assert_close(self_labeling_objective(y, sigma, lam, prior, "kl"), h2 + lam * kl, **tol)
    torch.testing.assert_close(self_labeling_objective(y, sigma, lam, prior, "kl", "shannon"), h + lam * kl, **tol)
    torch.testing.assert_close(self_labeling_objective(y, sigma, lam, prior, "reverse_kl", "shannon"),
                               h + lam * rkl, **tol)
    u = torch.full((3,), 1 / 3, dtype=dtype)
    torch.testing.assert_close(self_labeling_objective(y, sigma, lam),
                               h2 + lam * (u * torch.log(u / ybar)).sum(), **tol)
    # lam = 0 with an empty class: no 0 * inf
    e = torch.nn.functional.one_hot(torch.zeros(10, dtype=torch.long), 3).to(dtype)
    assert float(self_labeling_objective(e, sigma, 0.0)) == pytest.approx(float(-torch.log(sigma[:, 0]).mean()))
    assert math.isinf(float(self_labeling_objective(e, sigma, 1.0)))


def test_self_labeling_objective_validation():
    y = rand_simplex(4, 3, 0)
    with pytest.raises(ValueError, match="fairness"):
        self_labeling_objective(y, y, 1.0, fairness="reverse")
    with pytest.raises(ValueError, match="cross_entropy"):
        self_labeling_objective(y, y, 1.0, cross_entropy="renyi")
    with pytest.raises(ValueError, match="prior"):
        self_labeling_objective(y, y, 1.0, prior=torch.tensor([0.5, 0.6, -0.1], dtype=F64))
    with pytest.raises(ValueError, match="prior"):
        self_labeling_objective(y, y, 1.0, prior=torch.tensor([0.5, 0.5], dtype=F64))
    with pytest.raises(ValueError):
        self_labeling_objective(y, y[:, :2], 1.0)
