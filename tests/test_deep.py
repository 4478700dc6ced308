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
    assert a["predictions"]["sha256"] == b["predictions"]["sha256"]  # every image's cluster and confidence
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


# ----------------------------------------------------------------------------
# The readings the paper leaves open (config/README.md, "Open choices of the deep runs")
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["cce_plus", "cce", "mi_adm"])
def test_lam_reading_is_an_option_of_the_deep_runs(method):
    images, labels = halves_images(N)
    lam = deep.DEEP_METHODS[method].defaults["lam"]
    _, mean = deep.train_deep(images, 2, method, 0, OPTS, progress=False)
    _, batch = deep.train_deep(images, 2, method, 0, {**OPTS, "lam_scale": "batch"}, progress=False)
    assert mean["lam_effective"] == lam and batch["lam_effective"] == pytest.approx(lam / BATCH)  # eq. (15): lam / M
    with pytest.raises(deep.DeepRunError, match="option 'lam_scale' must be one of"):
        deep.train_deep(images, 2, method, 0, {**OPTS, "lam_scale": "sum"}, progress=False)


def test_mi_d_weights_unit_is_eq1_and_imsat_weighs_fairness_four_times():
    from cce import losses

    logits = torch.randn(2, 12, 3, generator=torch.Generator().manual_seed(0))
    spec = deep.DEEP_METHODS["mi_d"]
    unit = deep.batch_loss(spec, spec.make_state(spec.options(), 12), logits)
    imsat = deep.batch_loss(spec, spec.make_state(spec.options({"mi_weights": "imsat"}), 12), logits)
    sigma = torch.softmax(logits, -1).mean(0)  # the view mixture
    mean_h = -(sigma * sigma.log()).sum(-1).mean()
    h_mean = -(sigma.mean(0) * sigma.mean(0).log()).sum()
    assert float(unit) == pytest.approx(float(mean_h - h_mean), rel=1e-5)
    assert float(imsat) == pytest.approx(float(mean_h - 4 * h_mean), rel=1e-5)
    assert float(unit) == float(losses.mi_d_loss(logits, 1.0))  # today's loss, bit for bit
    with pytest.raises(deep.DeepRunError, match="option 'mi_weights' must be one of"):
        spec.options({"mi_weights": "vat"})


def test_sample_one_augmentation_reaches_the_run():
    images, labels = halves_images(N)
    _, info = deep.train_deep(images, 2, "mi_d", 0, {**OPTS, "augment": "sample_one", "flip": True}, progress=False)
    assert info["augmentation"]["mode"] == "sample_one" and math.isfinite(info["curves"]["loss"][0])
    with pytest.raises(deep.DeepRunError, match="option 'augment' must be one of"):
        deep.train_deep(images, 2, "mi_d", 0, {**OPTS, "augment": "all"}, progress=False)


def _label_steps(monkeypatch, options):
    """The global steps before which SeLa's labels of every image were renewed, and the inputs used."""
    calls, inputs = [], []
    relabel, augmented = deep._relabel_all, deep._predict_augmented

    def spy(setup, state):
        calls.append(state.step)
        return relabel(setup, state)

    def spy_augmented(setup, state):
        inputs.append(state.model.training)
        return augmented(setup, state)

    monkeypatch.setattr(deep, "_relabel_all", spy)
    monkeypatch.setattr(deep, "_predict_augmented", spy_augmented)
    images, labels = halves_images(N)
    _, info = deep.train_deep(images, 2, "sela", 0, {**OPTS, **options}, y_true=labels, progress=False)
    assert all(math.isfinite(v) for v in info["curves"]["loss"])
    return calls, inputs


def test_sela_label_schedule_every_epoch_or_spread_over_the_steps(monkeypatch):
    # N = 16, batch 8: 2 steps an epoch, 3 epochs = 6 steps
    assert _label_steps(monkeypatch, {"epochs": 3})[0] == [0, 2, 4]  # today: at every epoch's start
    assert _label_steps(monkeypatch, {"epochs": 3, "label_every": 2})[0] == [0, 4]
    # SeLa's cifar.py (nopts): n updates spread evenly over the run's steps, mid-epoch too
    assert _label_steps(monkeypatch, {"epochs": 3, "label_updates": 4})[0] == [0, 1, 3, 4]  # floor(j 6 / 4)
    assert _label_steps(monkeypatch, {"epochs": 3, "label_updates": 1})[0] == [0]
    calls, inputs = _label_steps(monkeypatch, {"epochs": 2, "label_input": "augmented"})
    assert calls == [0, 2] and inputs == [True, True]  # through the training augmentation, train mode
    assert _label_steps(monkeypatch, {"epochs": 2})[1] == []  # today: un-augmented, eval mode
    spec = deep.DEEP_METHODS["sela"]
    for bad in ({"label_updates": 0}, {"label_every": 1.5}, {"label_input": "train"}):
        with pytest.raises(deep.DeepRunError, match=f"option '{next(iter(bad))}'"):
            spec.options(bad)


def test_stopped_run_with_sela_published_schedule_resumes_to_the_identical_record(tmp_path, mnist_root):
    # label updates in mid-epoch and labels through the augmentation: the step count and streams resume
    opts = {**OPTS, "epochs": 2, "epsilon": 0.1, "label_updates": 3, "label_input": "augmented"}
    whole, part = tmp_path / "whole.json", tmp_path / "part.json"
    assert _deep_cli(mnist_root, whole, tmp_path / "whole.ckpt", "sela", opts) == 0
    assert _deep_cli(mnist_root, part, tmp_path / "part.ckpt", "sela", opts, "--stop-after-epoch", "1") == 0
    assert _deep_cli(mnist_root, part, tmp_path / "part.ckpt", "sela", opts) == 0
    a, b = json.loads(whole.read_text()), json.loads(part.read_text())
    assert comparable_record(a) == comparable_record(b) and b["info"]["resumed_at_epochs"] == [1]


@pytest.mark.parametrize(
    "section,expected",
    [
        ({"training": {"augment": "one"}}, "'deep.training.augment': 'one' is not one of ['compose', 'sample_one']"),
        ({"method_options": {"mi_d": {"mi_weights": "vat"}}},
         "'deep.method_options.mi_d': deep method 'mi_d': option 'mi_weights' must be one of ['unit', 'imsat']"),
        ({"method_options": {"cce_plus": {"lam_scale": "sum"}}},
         "'deep.method_options.cce_plus': deep method 'cce_plus': option 'lam_scale' must be one of"),
        ({"method_options": {"sela": {"label_updates": 0}}},
         "'deep.method_options.sela': deep method 'sela': option 'label_updates' must be a positive integer"),
        ({"method_options": {"sela": {"label_input": "test"}}},
         "'deep.method_options.sela': deep method 'sela': option 'label_input' must be one of"),
    ],
)
def test_config_check_names_the_key_of_a_bad_deep_option(section, expected):
    from cce.pipeline.config import ConfigError, validate_config

    config = {"clustering": {"datasets": ["digits"], "extractor": "pixels", "methods": ["kmeans"], "seeds": 1},
              "deep": {"datasets": ["mnist"], "methods": ["mi_d", "sela", "cce_plus"], "seeds": 1, **section}}
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert expected in str(err.value)


def test_config_check_names_the_key_of_a_bad_labelled_batch():
    from cce.pipeline.config import ConfigError, validate_config

    config = {"clustering": {"datasets": ["digits"], "extractor": "pixels", "methods": ["kmeans"], "seeds": 1},
              "weak": {"datasets": ["mnist"], "methods": ["mi_d"], "fractions": [0.1], "seeds": 1,
                       "training": {"labelled_batch": "mixed"}}}
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert "'weak.training.labelled_batch': 'mixed' is not one of ['separate', 'proportional']" in str(err.value)
