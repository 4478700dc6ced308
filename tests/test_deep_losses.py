"""The deep losses (MI-D, IIC, view-averaged predictions) against values written out independently."""

import math

import numpy as np
import pytest
import torch

from cce import losses
from cce.methods import get_method
from cce.models import build_model

P1 = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
P2 = np.array([[0.7, 0.3], [0.1, 0.9], [0.5, 0.5]])


def _logits(p):
    return torch.tensor(np.log(p), dtype=torch.float64)


def test_view_mixture_is_the_log_of_the_mean_softmax():
    g = torch.Generator().manual_seed(0)
    view_logits = torch.randn(3, 5, 4, generator=g, dtype=torch.float64) * 3
    mix = losses.view_mixture_logits(view_logits)
    expected = torch.softmax(view_logits, -1).mean(0)
    assert torch.allclose(mix.exp(), expected, rtol=1e-12, atol=0)
    assert torch.allclose(torch.softmax(mix, -1), expected, rtol=1e-12, atol=0)
    # as logits in the existing losses: H2(y, mean sigma) = -ln sum_k y_k mean_t sigma_tk
    y = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), -1)
    h2 = losses.collision_cross_entropy_with_logits(y, mix)
    assert torch.allclose(h2, -torch.log((y * expected).sum(-1)), rtol=1e-12, atol=0)


@pytest.mark.parametrize("w", [1.0, 0.5])
def test_mi_d_on_a_fixed_batch(w):
    # sigma_i = mean of the two views, then mean_i H(sigma_i) - w H(mean_i sigma_i), in numpy
    s = (P1 + P2) / 2
    mean_h = np.mean([-(r * np.log(r)).sum() for r in s])
    sbar = s.mean(0)
    expected = mean_h - w * -(sbar * np.log(sbar)).sum()
    got = losses.mi_d_loss(torch.stack([_logits(P1), _logits(P2)]), fairness_weight=w)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_mi_d_of_confident_agreeing_balanced_views_is_minus_ln_k():
    one_hot = torch.eye(4, dtype=torch.float64).repeat(2, 1) * 60.0  # 8 points, each class twice
    got = losses.mi_d_loss(torch.stack([one_hot, one_hot]))
    assert got.item() == pytest.approx(-math.log(4), abs=1e-12)


def _iic_k2(a, b, lamb=1.0):
    """IIC's loss for K = 2 written out: a_i = p1_i0, b_i = p2_i0."""
    p11 = np.mean(a * b)
    p12 = np.mean(a * (1 - b))
    p21 = np.mean((1 - a) * b)
    p22 = np.mean((1 - a) * (1 - b))
    off = (p12 + p21) / 2  # symmetrized
    m1 = p11 + off  # marginals of the symmetric joint
    m2 = off + p22
    assert m1 + m2 == pytest.approx(1.0)
    return -(p11 * (np.log(p11) - 2 * lamb * np.log(m1))
             + 2 * off * (np.log(off) - lamb * np.log(m1) - lamb * np.log(m2))
             + p22 * (np.log(p22) - 2 * lamb * np.log(m2)))


def test_iic_joint_for_k2():
    P = losses.iic_joint(torch.tensor(P1), torch.tensor(P2)).numpy()
    a, b = P1[:, 0], P2[:, 0]
    off = (np.mean(a * (1 - b)) + np.mean((1 - a) * b)) / 2
    expected = np.array([[np.mean(a * b), off], [off, np.mean((1 - a) * (1 - b))]])
    np.testing.assert_allclose(P, expected, rtol=1e-12)


@pytest.mark.parametrize("lamb", [1.0, 1.5])
def test_iic_loss_for_k2(lamb):
    got = losses.iic_loss(_logits(P1), _logits(P2), lamb=lamb)
    assert got.item() == pytest.approx(_iic_k2(P1[:, 0], P2[:, 0], lamb), rel=1e-12)
    # symmetric in the two views
    assert losses.iic_loss(_logits(P2), _logits(P1), lamb=lamb).item() == pytest.approx(got.item(), rel=1e-12)


def test_iic_of_identical_balanced_one_hot_views_is_minus_ln_k_and_stays_finite():
    # The joint is diagonal (zeros off the diagonal): IIC's eps keeps the logarithms finite.
    logits = (torch.eye(3, dtype=torch.float64) * 800.0).repeat(2, 1).requires_grad_()
    loss = losses.iic_loss(logits, logits)
    assert loss.item() == pytest.approx(-math.log(3), abs=1e-9)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_iic_loss_needs_no_in_place_write_and_works_in_float32():
    g = torch.Generator().manual_seed(1)
    l1 = torch.randn(6, 3, generator=g, requires_grad=True)
    l2 = torch.randn(6, 3, generator=g, requires_grad=True)
    loss = losses.iic_loss(l1, l2)
    loss.backward()
    ref = losses.iic_loss(l1.detach().double(), l2.detach().double())
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert l1.grad.abs().sum() > 0 and l2.grad.abs().sum() > 0


def _network_losses():
    """Each deep method's loss as the training loop forms it, from view logits (V, B, K)."""
    y = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(2)), -1)
    out = {
        "mi_d": lambda vl: losses.mi_d_loss(vl),
        "iic": lambda vl: losses.iic_loss(vl[0], vl[1]),
    }
    for name in ("sela", "mi_adm", "cce", "cce_plus"):
        m = get_method(name)
        out[name] = lambda vl, m=m: m.network_loss(losses.view_mixture_logits(vl), y, {})
    return out


@pytest.mark.parametrize("name", ["mi_d", "iic", "sela", "mi_adm", "cce", "cce_plus"])
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    net = build_model((28, 28), 3)
    x = torch.rand(8, 1, 28, 28)  # 2 views of 4 images, view-major
    loss = _network_losses()[name](net(x).view(2, 4, 3))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
