"""Weak supervision (Table 4): labelled subsets, the step's loss, Only seeds, runs through the CLI and their resume."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cce.pipeline.cli import main
from cce.training import deep, weak
from conftest import comparable_record
from data_fixtures import halves_images, prepared_fake_mnist


# ----------------------------------------------------------------------------
# Labelled subsets
# ----------------------------------------------------------------------------
def _labels():
    # classes of 100, 200 and 300 images, shuffled
    return np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [100, 200, 300]))


def test_labelled_subset_has_exact_per_class_counts():
    labels = _labels()
    for fraction, counts in ((0.1, [10, 20, 30]), (0.05, [5, 10, 15]), (0.01, [1, 2, 3]), (0.001, [1, 1, 1])):
        idx = weak.labelled_subset(labels, fraction, seed=3)
        assert np.all(np.diff(idx) > 0)
        assert np.bincount(labels[idx], minlength=3).tolist() == counts


def test_labelled_subsets_are_nested_the_same_for_a_seed_and_differ_across_seeds():
    labels = _labels()
    s10, s5, s1 = (set(weak.labelled_subset(labels, f, seed=7)) for f in (0.1, 0.05, 0.01))
    assert s1 < s5 < s10
    # the subset depends on the labels, fraction and seed only: every method gets the same
    assert np.array_equal(weak.labelled_subset(labels, 0.05, 7), weak.labelled_subset(labels.copy(), 0.05, 7))
    assert set(weak.labelled_subset(labels, 0.1, 8)) != s10
    with pytest.raises(ValueError, match="fraction"):
        weak.labelled_subset(labels, 0.0, 0)


# ----------------------------------------------------------------------------
# The step's loss
# ----------------------------------------------------------------------------
def _batch(seed=0, V=2, B=5, L=3, K=4):
    g = torch.Generator().manual_seed(seed)
    view_logits = torch.randn(V, B, K, generator=g, dtype=torch.float64)
    target_logits = torch.randn(V, L, K, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 3, 1])
    return view_logits, target_logits, labels, F.one_hot(labels, K).double()


def test_weak_loss_is_cross_entropy_on_the_labelled_plus_the_self_labeling_loss():
    view_logits, target_logits, labels, targets = _batch()
    V = view_logits.shape[0]
    ce = sum(F.cross_entropy(target_logits[v], labels) for v in range(V)) / V
    # MI-D, eq. (1), on the view-averaged softmax
    sigma = torch.softmax(view_logits, -1).mean(0)
    ent = lambda p: -(p * p.log()).sum(-1)  # noqa: E731
    mi = ent(sigma).mean() - ent(sigma.mean(0))
    spec = deep.get_deep_method("mi_d")
    state = spec.make_state(spec.options({}), 5)
    got = deep.batch_loss(spec, state, view_logits, None, target_logits, targets, "shannon", 1.0)
    assert float(got) == pytest.approx(float(ce + mi), rel=1e-12)
    half = deep.batch_loss(spec, state, view_logits, None, target_logits, targets, "shannon", 0.5)
    assert float(half) == pytest.approx(float(ce + 0.5 * mi), rel=1e-12)
    # a pseudo-label method (SeLa: mean H(y, sigma), eq. 4) with given labels y
    y = torch.softmax(torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64), -1)
    sela = deep.get_deep_method("sela")
    got = deep.batch_loss(sela, sela.make_state(sela.options({}), 5), view_logits, y, target_logits, targets)
    assert float(got) == pytest.approx(float(ce - (y * sigma.log()).sum(-1).mean()), rel=1e-12)
    # one-hot targets: H2 is H
    h2 = deep.batch_loss(spec, state, view_logits, None, target_logits, targets, "collision", 0.0)
    assert float(h2) == pytest.approx(float(ce), rel=1e-10)


def test_seeds_only_loss_ignores_the_unlabelled_batch():
    view_logits, target_logits, labels, targets = _batch()
    spec = deep.get_deep_method("seeds_only")
    vl, tl = view_logits.clone().requires_grad_(), target_logits.clone().requires_grad_()
    loss = deep.batch_loss(spec, {}, vl, None, tl, targets)
    other = deep.batch_loss(spec, {}, 10 * view_logits, None, target_logits, targets)
    assert float(loss.detach()) == float(other)
    loss.backward()
    assert vl.grad is None and tl.grad is not None
    with pytest.raises(deep.DeepRunError, match="needs targets"):
        deep.batch_loss(spec, {}, view_logits)


OPTS = {"epochs": 1, "batch_size": 8, "device": "cpu", "eval_batch_size": 8}


def _train(method, images, labels, mask, ck):
    sup = deep.Supervision(weak.one_hot(labels, 2), mask, batch_size=4)
    deep.train_deep(images, 2, method, 0, OPTS, dataset="mnist", checkpoint=ck, progress=False, supervision=sup)
    return deep.load_checkpoint(ck)["model"]


def test_seeds_only_training_does_not_depend_on_the_unlabelled_images(tmp_path):
    images, labels = halves_images(24)
    mask = np.zeros(len(labels), bool)
    mask[[0, 1, 4, 5, 9]] = True
    # the unlabelled images shuffled among themselves (same channel statistics for the input scaling)
    shuffled = images.copy()
    free = np.flatnonzero(~mask)
    shuffled[free] = images[np.random.default_rng(1).permutation(free)]
    a = _train("seeds_only", images, labels, mask, tmp_path / "a.ckpt")
    b = _train("seeds_only", shuffled, labels, mask, tmp_path / "b.ckpt")
    for name in a:
        assert torch.allclose(a[name].double(), b[name].double(), atol=1e-6), name
    # ... while a self-labeling method does see them
    c = _train("mi_d", images, labels, mask, tmp_path / "c.ckpt")
    d = _train("mi_d", shuffled, labels, mask, tmp_path / "d.ckpt")
    assert any(not torch.allclose(c[n].double(), d[n].double(), atol=1e-6) for n in c if c[n].is_floating_point())


def test_targets_are_checked():
    images, labels = halves_images(24)
    with pytest.raises(deep.DeepRunError, match="give a Supervision"):
        deep.train_deep(images, 2, "seeds_only", 0, OPTS, progress=False)
    with pytest.raises(deep.DeepRunError, match="simplex"):
        deep.train_deep(images, 2, "mi_d", 0, OPTS, progress=False,
                        supervision=deep.Supervision(np.ones((len(labels), 2)), None))
    with pytest.raises(deep.DeepRunError, match="target loss"):
        deep.train_deep(images, 2, "mi_d", 0, OPTS, progress=False,
                        supervision=deep.Supervision(weak.one_hot(labels, 2), None, "l2"))


# ----------------------------------------------------------------------------
# Through the command line, on a prepared (fake) MNIST: 40 train, 10 test images
# ----------------------------------------------------------------------------
@pytest.fixture
def mnist_root(tmp_path, monkeypatch):
    return prepared_fake_mnist(tmp_path, monkeypatch, n_train=40, n_test=10, seed=5)


def _weak_cli(root, out, method, options, fraction="0.1", *extra):
    return main(["weak", "--dataset", "mnist", "--root", str(root), "--method", method, "--seed", "2",
                 "--fraction", fraction, "--options", json.dumps(options), "--out", str(out),
                 "--checkpoint", str(out.with_suffix(".ckpt")), *extra])


WEAK_OPTS = {**OPTS, "batch_size": 16, "labelled_batch_size": 4}


@pytest.mark.parametrize("method", weak.WEAK_METHODS)
def test_every_weak_method_runs_through_the_cli(tmp_path, mnist_root, method):
    out = tmp_path / f"{method}.json"
    assert _weak_cli(mnist_root, out, method, WEAK_OPTS, "0.25") == 0
    r = json.loads(out.read_text())
    assert (r["experiment"], r["dataset"], r["method"], r["seed"], r["fraction"], r["loss"]) == \
        ("weak", "mnist", method, 2, 0.25, "shannon")
    assert 10 <= r["n_labelled"] < 40 and r["data"]["n_train"] == 40 and r["data"]["n_test"] == 10
    m = r["metrics"]
    assert r["main_metric"] == "accuracy" and 0 <= m["accuracy"] <= m["hungarian_accuracy"] <= 1
    assert {"nmi", "ari", "n_clusters_nonempty"} <= set(m)
    c = r["info"]["curves"]
    assert c["epoch"] == [1] and math.isfinite(c["loss"][0]) and c["accuracy"] == [m["accuracy"]]
    assert c["hungarian_accuracy"] == [m["hungarian_accuracy"]]
    assert r["options"]["labelled_batch_size"] == 4 and r["options"]["network"] == "auto"
    assert {"versions", "wall_time_s", "device", "git_commit", "created"} <= set(r)
    assert r["info"]["architecture"] == "grey28"


def test_every_method_gets_the_same_labelled_images(tmp_path, mnist_root):
    shas = set()
    for method in ("seeds_only", "cce_plus"):
        assert _weak_cli(mnist_root, tmp_path / f"{method}.json", method, WEAK_OPTS) == 0
        shas.add(json.loads((tmp_path / f"{method}.json").read_text())["labelled_sha256"])
    assert len(shas) == 1


def test_stopped_weak_run_resumes_to_the_identical_record(tmp_path, mnist_root, capsys):
    # SeLa: labels of the whole training set refreshed every other epoch, and the labelled stream
    opts = {**WEAK_OPTS, "epochs": 2, "label_every": 2}
    whole, part = tmp_path / "whole.json", tmp_path / "part.json"
    assert _weak_cli(mnist_root, whole, "sela", opts, "0.1", "--keep-checkpoint") == 0
    assert _weak_cli(mnist_root, part, "sela", opts, "0.1", "--stop-after-epoch", "1") == 0
    assert not part.exists() and "stopped after epoch 1" in capsys.readouterr().out
    assert _weak_cli(mnist_root, part, "sela", opts, "0.1", "--keep-checkpoint") == 0
    a, b = json.loads(whole.read_text()), json.loads(part.read_text())
    fields = ("n_labelled", "labelled_sha256")
    assert comparable_record(a, *fields) == comparable_record(b, *fields) and b["info"]["resumed_at_epochs"] == [1]
    ka, kb = deep.load_checkpoint(whole.with_suffix(".ckpt")), deep.load_checkpoint(part.with_suffix(".ckpt"))
    for name, tensor in ka["model"].items():
        assert torch.equal(tensor, kb["model"][name]), name


def test_bad_weak_input_is_a_user_error(tmp_path, mnist_root, capsys):
    assert _weak_cli(mnist_root, tmp_path / "r.json", "cce", WEAK_OPTS) == 2  # not a Table 4 row
    assert _weak_cli(mnist_root, tmp_path / "r.json", "mi_d", {"lam": 1}) == 2
    assert _weak_cli(mnist_root, tmp_path / "r.json", "mi_d", WEAK_OPTS, "1.5") == 2
    assert _weak_cli(mnist_root, tmp_path / "r.json", "mi_d", {**WEAK_OPTS, "network": "vgg"}) == 2
    err = capsys.readouterr().err
    assert "unknown weakly-supervised method" in err and "no option" in err and "fraction" in err
    assert "unknown network" in err and "Traceback" not in err


def test_unknown_network_is_refused_with_the_options():
    """A run's options are checked before it loads data: an unknown network is refused there."""
    with pytest.raises(deep.DeepRunError, match="unknown network 'vgg'"):
        weak.weak_options("mi_d", {"network": "vgg"})
    with pytest.raises(deep.DeepRunError, match="unknown network 'vgg'"):
        weak.noisy_options({"network": "vgg"})
    assert weak.noisy_options({"network": "grey28"})["network"] == "grey28"


# ----------------------------------------------------------------------------
# labelled_batch: how Table 4's labelled images enter a step
# ----------------------------------------------------------------------------
def _epoch_of(labelled_batch, batch_size=10, labelled_batch_size=None):
    images, labels = halves_images(40)
    mask = np.zeros(40, dtype=bool)
    mask[::5] = True  # 8 labelled images, a fifth of the data
    sup = deep.Supervision(weak.one_hot(labels, 2), mask, "shannon", 1.0, labelled_batch_size, labelled_batch)
    setup = deep._setup(images, 2, "cce_plus", 0, {**OPTS, "batch_size": batch_size}, None, "mnist", 255.0, sup,
                        "auto", None, None, False)
    return deep._epoch_batches(setup, deep.initial_state(setup)), set(np.flatnonzero(mask).tolist())


def test_proportional_batches_hold_the_labelled_share_of_the_data():
    batches, labelled = _epoch_of("proportional")
    assert len(batches) == 4 and all(idx.numel() == 10 for idx, _ in batches)
    for idx, lab in batches:  # the labelled images of the batch of all images, no other
        assert set(lab.tolist()) == set(idx.tolist()) & labelled
    # each labelled image once an epoch: 8 of 40 images, the data's share (a fifth) of the epoch's batches
    seen = torch.cat([lab for _, lab in batches]).tolist()
    assert sorted(seen) == sorted(labelled) and len(seen) / 40 == pytest.approx(0.2)


def test_separate_batches_give_every_step_a_full_labelled_batch():
    batches, labelled = _epoch_of("separate", labelled_batch_size=6)
    assert all(lab.numel() == 6 and set(lab.tolist()) <= labelled for _, lab in batches)
    seen = torch.cat([lab for _, lab in batches]).tolist()  # 24 draws cycling 8 images: each 3 times
    assert sorted(seen) == sorted(sorted(labelled) * 3)


@pytest.mark.parametrize("method", ["seeds_only", "cce_plus"])
def test_proportional_weak_run_trains(tmp_path, mnist_root, method):
    out = tmp_path / f"{method}.json"
    assert _weak_cli(mnist_root, out, method, {**WEAK_OPTS, "labelled_batch": "proportional"}, "0.1") == 0
    r = json.loads(out.read_text())
    assert r["options"]["labelled_batch"] == "proportional" and math.isfinite(r["info"]["curves"]["loss"][0])
    with pytest.raises(deep.DeepRunError, match="option 'labelled_batch' must be one of"):
        weak.weak_options(method, {"labelled_batch": "mixed"})


def test_lam_reading_is_an_option_of_the_weak_runs():
    assert weak.weak_options("cce_plus", {"lam_scale": "batch"})["lam_scale"] == "batch"
    with pytest.raises(deep.DeepRunError, match="option 'lam_scale' must be one of"):
        weak.weak_options("cce_plus", {"lam_scale": "sum"})
