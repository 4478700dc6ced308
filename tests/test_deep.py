"""The deep training loop: every method trains, a stopped run resumes to the identical record, device checks."""

import json
import math

import numpy as np
import pytest
import torch

from cce.pipeline.cli import main
from cce.training import deep
from conftest import comparable_record
from data_fixtures import halves_images, prepared_fake_mnist

N, BATCH = 16, 8


OPTS = {"epochs": 1, "batch_size": BATCH, "device": "cpu", "eval_batch_size": 8}


@pytest.mark.parametrize("method", list(deep.DEEP_METHODS))
def test_every_method_trains_an_epoch(method):
    images, labels = halves_images(N)
    pred, info = deep.train_deep(images, 2, method, 0, OPTS, y_true=labels, dataset="mnist", progress=False)
    assert pred.shape == (N,) and set(np.unique(pred)) <= {0, 1}
    c, t = info["curves"], info["timing"]
    assert c["epoch"] == [1] and math.isfinite(c["loss"][0]) and 0 <= c["accuracy"][0] <= 1
    assert c["n_clusters_nonempty"][0] == np.unique(pred).size
    assert t["augment_s"][0] > 0 and t["network_s"][0] > 0
    assert t["augment_s"][0] + t["label_s"][0] + t["network_s"][0] + t["eval_s"][0] == pytest.approx(t["epoch_s"][0])
    has_labels = deep.DEEP_METHODS[method].base is not None
    assert (t["label_s"][0] > 0) == has_labels
    if deep.DEEP_METHODS[method].label_scope == "batch":
        assert c["label_iterations"][0] > 0
    assert info["architecture"] == "grey28" and info["augmentation"]["flip"] is False  # digits: no flip
    assert info["device"] == "cpu"


def test_bf16_autocast_is_an_option():
    images, labels = halves_images(N)
    _, info = deep.train_deep(images, 2, "mi_d", 0, {**OPTS, "precision": "bf16"}, y_true=labels, progress=False)
    assert info["precision"] == "bf16" and math.isfinite(info["curves"]["loss"][0])
    with pytest.raises(deep.DeepRunError, match="precision"):
        deep.train_deep(images, 2, "mi_d", 0, {**OPTS, "precision": "fp8"}, progress=False)


def test_options_and_images_checked():
    images, _ = halves_images(N)
    with pytest.raises(deep.DeepRunError, match="no option"):
        deep.train_deep(images, 2, "cce_plus", 0, {"momentum": 0.9}, progress=False)
    with pytest.raises(deep.DeepRunError, match="unknown deep method"):
        deep.train_deep(images, 2, "kmeans", 0, {}, progress=False)
    with pytest.raises(deep.DeepRunError, match="no Table 7 network"):
        deep.train_deep(np.zeros((4, 8, 8), np.uint8), 2, "mi_d", 0, OPTS, progress=False)
    # the paper's deep setting, and the label options of the linear-head methods kept
    d = deep.DEEP_METHODS["cce_plus"].defaults
    assert (d["lr"], d["batch_size"], d["epochs"], d["lam"], d["n_views"]) == (1e-4, 250, 50, 100.0, 2)
    assert "momentum" not in d and "preprocess" not in d


# ----------------------------------------------------------------------------
# Through the command line, on a prepared (fake) MNIST
# ----------------------------------------------------------------------------
@pytest.fixture
def mnist_root(tmp_path, monkeypatch):
    return prepared_fake_mnist(tmp_path, monkeypatch, n_train=12, n_test=4, seed=4)


def _deep_cli(root, out, ckpt, method, options, *extra):
    return main(["deep", "--dataset", "mnist", "--root", str(root), "--method", method, "--seed", "3",
                 "--options", json.dumps(options), "--out", str(out), "--checkpoint", str(ckpt), *extra])


def test_stopped_run_resumes_to_the_identical_record(tmp_path, mnist_root, capsys):
    # SeLa keeps the most state across epochs (labels of the whole data set, refreshed every other
    # epoch here): model, optimizer, random streams and labels must all come back from the checkpoint.
    method, opts = "sela", {**OPTS, "epochs": 2, "label_every": 2}
    whole, whole_ck = tmp_path / "whole.json", tmp_path / "whole.ckpt"
    assert _deep_cli(mnist_root, whole, whole_ck, method, opts, "--keep-checkpoint") == 0

    part, part_ck = tmp_path / "part.json", tmp_path / "part.ckpt"
    assert _deep_cli(mnist_root, part, part_ck, method, opts, "--stop-after-epoch", "1") == 0
    assert not part.exists() and deep.load_checkpoint(part_ck)["epoch"] == 1
    assert "stopped after epoch 1" in capsys.readouterr().out
    assert _deep_cli(mnist_root, part, part_ck, method, opts, "--keep-checkpoint") == 0

    a, b = json.loads(whole.read_text()), json.loads(part.read_text())
    assert comparable_record(a) == comparable_record(b)
    assert a["info"]["curves"]["epoch"] == [1, 2] and b["info"]["resumed_at_epochs"] == [1]
    ka, kb = deep.load_checkpoint(whole_ck), deep.load_checkpoint(part_ck)
    assert ka["epoch"] == kb["epoch"] == 2
    for name, tensor in ka["model"].items():
        assert torch.equal(tensor, kb["model"][name]), name
    # the record's fields of a Table 2 record
    assert {"accuracy", "nmi", "ari", "n_clusters_nonempty"} <= set(a["metrics"])
    assert {"versions", "wall_time_s", "device", "git_commit"} <= set(a) and "kornia" in a["versions"]


def test_checkpoint_deleted_once_the_record_is_written_unless_kept(tmp_path, mnist_root):
    ck = tmp_path / "run.ckpt"
    assert _deep_cli(mnist_root, tmp_path / "a.json", ck, "mi_d", {**OPTS, "epochs": 1}) == 0
    assert not ck.exists() and json.loads((tmp_path / "a.json").read_text())["checkpoint"] is None
    assert _deep_cli(mnist_root, tmp_path / "b.json", ck, "mi_d", {**OPTS, "epochs": 1}, "--keep-checkpoint") == 0
    assert deep.load_checkpoint(ck)["epoch"] == 1
    assert json.loads((tmp_path / "b.json").read_text())["checkpoint"] == str(ck)


def test_checkpoint_of_another_run_is_not_resumed(tmp_path, mnist_root, capsys):
    ck = tmp_path / "run.ckpt"
    assert _deep_cli(mnist_root, tmp_path / "a.json", ck, "mi_d", OPTS, "--keep-checkpoint") == 0
    assert _deep_cli(mnist_root, tmp_path / "b.json", ck, "mi_d", {**OPTS, "lr": 1e-3}) == 0
    assert "belongs to another run" in capsys.readouterr().err
    assert json.loads((tmp_path / "b.json").read_text())["info"]["resumed_at_epochs"] == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_requested_without_cuda_stops_before_training(tmp_path, capsys):
    # no dataset under the root either: the device is checked first
    code = _deep_cli(tmp_path / "nothing", tmp_path / "r.json", tmp_path / "r.ckpt", "cce_plus", {"device": "cuda"})
    err = capsys.readouterr().err
    assert code == 2 and "CUDA is not available" in err and "Traceback" not in err
    assert not (tmp_path / "r.ckpt").exists() and not (tmp_path / "r.json").exists()


def test_unknown_method_or_option_is_a_user_error(tmp_path, mnist_root, capsys):
    assert _deep_cli(mnist_root, tmp_path / "r.json", tmp_path / "r.ckpt", "kmeans", OPTS) == 2
    assert _deep_cli(mnist_root, tmp_path / "r.json", tmp_path / "r.ckpt", "iic", {"lam": 1}) == 2
    err = capsys.readouterr().err
    assert "unknown deep method" in err and "no option" in err
