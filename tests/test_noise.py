"""Noisy labels (Figure 2): label corruption, soft targets, H against H2 under uncertain targets, ResNet-18, runs."""

import json
import math

import numpy as np
import pytest
import torch

from cce import models
from cce.pipeline.cli import main
from cce.training import deep, weak
from data_fixtures import prepared_fake_mnist


# ----------------------------------------------------------------------------
# Label corruption and soft targets
# ----------------------------------------------------------------------------
def _labels(K=5):
    return np.random.default_rng(0).permutation(np.repeat(np.arange(K), [40, 41, 57, 60, 103]))


@pytest.mark.parametrize("eta", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_corrupted_fraction_is_eta_within_one_image_per_class(eta):
    labels = _labels()
    observed, corrupted = weak.corrupt_labels(labels, eta, 5, seed=1)
    for c in range(5):
        n_c = int((labels == c).sum())
        assert abs(int(corrupted[labels == c].sum()) - eta * n_c) <= 1
    # a corrupted label is never the true one; the others are untouched
    assert np.all(observed[corrupted] != labels[corrupted]) and np.all(observed[~corrupted] == labels[~corrupted])
    assert observed.min() >= 0 and observed.max() < 5


def test_corruption_is_reproducible_from_the_seed_and_uses_every_other_class():
    labels = _labels()
    a = weak.corrupt_labels(labels, 0.5, 5, seed=3)
    b = weak.corrupt_labels(labels.copy(), 0.5, 5, seed=3)
    c = weak.corrupt_labels(labels, 0.5, 5, seed=4)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    obs, cor = weak.corrupt_labels(labels, 1.0, 5, seed=3)
    for k in range(5):  # every wrong class appears among the corrupted labels of class k
        assert set(obs[cor & (labels == k)]) == set(range(5)) - {k}


def test_soft_targets_sum_to_one_and_follow_the_formula():
    observed = np.array([0, 2, 1, 2])
    for eta in (0.0, 0.3, 1.0):
        y = weak.soft_targets(observed, eta, 3)
        assert y.shape == (4, 3) and np.allclose(y.sum(1), 1.0)
        expected = np.full((4, 3), eta / 3)
        expected[np.arange(4), observed] += 1 - eta
        assert np.allclose(y, expected)


# ----------------------------------------------------------------------------
# Figure 1's argument: uniform targets give H2 no gradient, H pulls toward uniform
# ----------------------------------------------------------------------------
def _grads(loss_name, targets):
    torch.manual_seed(0)
    net = models.build_network("grey28", (28, 28), 4)
    x = torch.randn(6, 1, 28, 28)
    loss = deep.target_loss(net(x).unsqueeze(0), targets, loss_name)
    net.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def test_uniform_targets_give_collision_ce_zero_gradient_and_shannon_ce_a_pull_to_uniform():
    uniform = torch.full((6, 4), 0.25)
    g2, g = _grads("collision", uniform), _grads("shannon", uniform)
    assert g2.abs().max() < 1e-6 * max(1.0, g.abs().max())
    assert g.abs().max() > 1e-3
    # confident (one-hot) targets: the two losses and their gradients are the same
    onehot = torch.eye(4)[[0, 1, 2, 3, 0, 1]]
    assert torch.allclose(_grads("collision", onehot), _grads("shannon", onehot), atol=1e-6)


# ----------------------------------------------------------------------------
# ResNet-18
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape,stem", [((28, 28), 3), ((32, 32, 3), 3), ((96, 96, 3), 7)])
def test_resnet18_is_adapted_to_the_input(shape, stem):
    net = models.build_network("resnet18", shape, 7)
    C = shape[2] if len(shape) == 3 else 1
    assert net.conv1.in_channels == C and net.conv1.kernel_size == (stem, stem)
    assert isinstance(net.maxpool, torch.nn.Identity) == (stem == 3)
    assert models.network_name(net) == "resnet18" and net.fc.out_features == 7
    net.eval()
    with torch.no_grad():
        assert net(torch.zeros(2, C, *shape[:2])).shape == (2, 7)
    with pytest.raises(ValueError, match="takes"):
        models.build_network("rgb32", (28, 28), 7)


# ----------------------------------------------------------------------------
# Through the command line, on a prepared (fake) MNIST
# ----------------------------------------------------------------------------
@pytest.fixture
def mnist_root(tmp_path, monkeypatch):
    return prepared_fake_mnist(tmp_path, monkeypatch, n_train=30, n_test=8, seed=6)


def _noisy_cli(root, out, loss, eta, options, *extra):
    return main(["noisy", "--dataset", "mnist", "--root", str(root), "--loss", loss, "--eta", str(eta),
                 "--seed", "1", "--options", json.dumps(options), "--out", str(out),
                 "--checkpoint", str(out.with_suffix(".ckpt")), *extra])


OPTS = {"epochs": 1, "batch_size": 15, "device": "cpu", "eval_batch_size": 8}


@pytest.mark.parametrize("loss,network", [("shannon", "grey28"), ("collision", "resnet18")])
def test_noisy_run_through_the_cli(tmp_path, mnist_root, loss, network):
    out = tmp_path / f"{loss}.json"
    assert _noisy_cli(mnist_root, out, loss, 0.4, {**OPTS, "network": network}) == 0
    r = json.loads(out.read_text())
    assert (r["experiment"], r["dataset"], r["method"], r["seed"], r["eta"], r["loss"]) == \
        ("noisy", "mnist", "supervised", 1, 0.4, loss)
    assert r["n_labelled"] == 30 and r["data"]["n_test"] == 8 and 8 <= r["n_corrupted"] <= 16
    m = r["metrics"]
    assert r["main_metric"] == "accuracy" and 0 <= m["accuracy"] <= m["hungarian_accuracy"] <= 1
    c = r["info"]["curves"]
    assert c["epoch"] == [1] and math.isfinite(c["loss"][0]) and c["accuracy"] == [m["accuracy"]]
    assert r["info"]["architecture"] == network and r["options"]["n_views"] == 1
    assert {"versions", "wall_time_s", "device", "git_commit", "options"} <= set(r)


def test_bad_noisy_input_is_a_user_error(tmp_path, mnist_root, capsys):
    assert _noisy_cli(mnist_root, tmp_path / "r.json", "l2", 0.1, OPTS) == 2
    assert _noisy_cli(mnist_root, tmp_path / "r.json", "shannon", 1.5, OPTS) == 2
    assert _noisy_cli(mnist_root, tmp_path / "r.json", "shannon", 0.1, {**OPTS, "lam": 3}) == 2
    err = capsys.readouterr().err
    assert "loss must be" in err and "eta" in err and "no option" in err and "Traceback" not in err
