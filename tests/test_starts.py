"""The deep runs' ``start`` option (cce.training.starts): what each start does, every method takes it once, resume."""

import pytest
import torch

from cce.models import build_model, build_network
from cce.training import deep, starts
from data_fixtures import halves_images

N, BATCH = 16, 8
OPTS = {"epochs": 2, "batch_size": BATCH, "device": "cpu", "eval_batch_size": 8}
TOL = 1e-5  # float32 logits of order 1: the balanced means agree to rounding


def _spread(logits: torch.Tensor) -> float:
    m = logits.detach().reshape(-1, logits.shape[-1]).double().mean(0)
    return float(m.max() - m.min())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balanced_bias_equalizes_the_mean_logit_per_class_over_the_batch(seed):
    torch.manual_seed(seed)
    model = build_model((28, 28, 1), 10).train()
    x = torch.rand(64, 1, 28, 28)
    weight = model.head.weight.clone()
    before = model(x)
    # the untrained network favours some classes: its ReLU features have a positive mean
    assert _spread(before) > 10 * TOL
    trained_on = starts.start_first_batch("balanced_bias", model, before)
    after = model(x)  # train mode: batch norm normalizes with this batch's own statistics again
    assert _spread(after) < TOL and _spread(trained_on) < TOL
    torch.testing.assert_close(trained_on, after, atol=TOL, rtol=0)
    # only the bias moved, by a shift with mean zero (the softmax is unchanged by a common offset)
    assert torch.equal(model.head.weight, weight)
    assert abs(float(model.head.bias.detach().double().sum())) < TOL


def test_plain_changes_nothing_and_a_bad_start_names_the_key():
    torch.manual_seed(0)
    model = build_model((28, 28, 1), 10).train()
    logits = model(torch.rand(8, 1, 28, 28))
    assert starts.start_first_batch("plain", model, logits) is logits
    assert torch.equal(model.head.bias, torch.zeros(10))
    with pytest.raises(ValueError, match="start must be one of plain, balanced_bias"):
        starts.check_start("zero_bias")


def test_the_head_of_resnet18_and_of_the_mlp_is_found():
    torch.manual_seed(0)
    net = build_network("resnet18", (32, 32, 3), 4)
    assert starts.head_layer(torch.nn.Sequential(torch.nn.Identity(), net)) is net.fc
    mlp = build_network("mlp", (28, 28), 10)
    assert starts.head_layer(mlp) is mlp.layers[-1] and mlp.layers[-1].out_features == 10


def _spy(monkeypatch):
    calls = []
    real = deep.start_first_batch

    def spy(start, model, logits):
        out = real(start, model, logits)
        calls.append((start, _spread(logits), _spread(out)))
        return out

    monkeypatch.setattr(deep, "start_first_batch", spy)
    return calls


@pytest.mark.parametrize("method", list(deep.DEEP_METHODS))
def test_every_method_takes_the_start_once_on_its_first_batch(method, monkeypatch):
    calls = _spy(monkeypatch)
    images, labels = halves_images(N)
    opts = {**OPTS, "epochs": 1}
    _, plain = deep.train_deep(images, 4, method, 0, opts, y_true=labels, progress=False)
    _, bal = deep.train_deep(images, 4, method, 0, {**opts, "start": "balanced_bias"}, y_true=labels,
                             progress=False)
    # once per run (of two steps), on its first step
    assert [c[0] for c in calls] == ["plain", "balanced_bias"]
    assert calls[1][1] > 10 * TOL and calls[1][2] < TOL  # the first step trains on balanced logits
    assert plain["curves"]["loss"] != bal["curves"]["loss"]


def test_a_resumed_run_keeps_the_start_and_gives_the_identical_record(tmp_path, monkeypatch):
    calls = _spy(monkeypatch)
    images, labels = halves_images(N)
    opts = {**OPTS, "start": "balanced_bias"}
    _, whole = deep.train_deep(images, 4, "cce_plus", 1, opts, y_true=labels, progress=False)
    ck = tmp_path / "run.ckpt"
    with pytest.raises(deep.TrainingStopped):
        deep.train_deep(images, 4, "cce_plus", 1, opts, y_true=labels, checkpoint=ck, stop_after_epoch=1,
                        progress=False)
    _, resumed = deep.train_deep(images, 4, "cce_plus", 1, opts, y_true=labels, checkpoint=ck, progress=False)
    assert len(calls) == 2  # the resumed run loads the shifted bias and never shifts it again
    assert resumed["resumed_at_epochs"] == [1]
    assert resumed["curves"] == whole["curves"]
    # a checkpoint of the plain start is another run's
    _, plain = deep.train_deep(images, 4, "cce_plus", 1, OPTS, y_true=labels, checkpoint=ck, progress=False)
    assert plain["resumed_at_epochs"] == [] and plain["curves"] != whole["curves"]


def test_a_bad_start_is_a_run_error_naming_the_key():
    images, _ = halves_images(N)
    with pytest.raises(deep.DeepRunError, match="start"):
        deep.train_deep(images, 2, "mi_d", 0, {**OPTS, "start": "zero"}, progress=False)
    assert deep.DEEP_METHODS["cce_plus"].defaults["start"] == "plain"  # none silently on
    assert all(m.defaults["start"] == "plain" for m in deep.DEEP_METHODS.values())


def test_the_config_refuses_a_bad_start_with_its_key():
    from cce.pipeline.config import ConfigError, validate_config

    config = {"clustering": {"datasets": ["digits"], "extractor": "pixels", "methods": ["kmeans"], "seeds": 1},
              "deep": {"datasets": ["mnist"], "methods": ["cce_plus"], "seeds": 1, "training": {"start": "zero"}}}
    with pytest.raises(ConfigError, match=r"'deep.training.start': 'zero' is not one of \['plain', 'balanced_bias'\]"):
        validate_config(config)
    config["deep"]["training"]["start"] = "balanced_bias"
    validate_config(config)
