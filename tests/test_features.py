"""Feature extractors (pixels, ResNet-50 with random weights) and the feature file format."""

from __future__ import annotations

import json
import urllib.error

import numpy as np
import pytest
import torch

from cce import data
from cce.data import backbones, features, fetch
from data_fixtures import fake_mnist, spec_for, write_files


class Payload:
    """Not a tensor: a weights_only load must refuse it."""


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)


def run(images, **kw):
    kw = {"weights": None, "progress": False, "num_workers": 0, **kw}
    return features.resnet50(images, **kw)


@pytest.fixture(scope="module")
def reference(images):
    return run(images, batch_size=64)


def test_resnet50_shape_dtype_and_determinism(images, reference):
    X, how = reference
    assert X.shape == (4, 2048) and X.dtype == np.float32
    assert np.isfinite(X).all() and (X >= 0).all()  # after ReLU and average pooling
    X2, _ = run(images, batch_size=64, num_workers=1)  # through a DataLoader worker
    np.testing.assert_array_equal(X, X2)
    assert how["extractor"] == "resnet50" and how["weights"] is None and how["image_size"] == 224
    assert "grey repeated to 3 channels" in how["preprocessing"]


def test_resnet50_batch_size_invariant(images, reference):
    X64, _ = reference
    X1, _ = run(images, batch_size=1)
    X3, _ = run(images, batch_size=3)  # a last batch of 1
    scale = np.abs(X64).max()
    np.testing.assert_allclose(X1, X64, rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(X3, X64, rtol=0, atol=1e-4 * scale)


def test_resnet50_equals_unmodified_torchvision_model(images, reference, monkeypatch):
    # The extractor folds BatchNorm into the convolutions and runs channels_last: the same
    # function as torchvision's model with fc removed, up to float rounding.
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.resnet50(weights=None)
    model.fc = torch.nn.Identity()
    model.eval()
    # Random weights give BatchNorm running stats of 0 / 1: perturb them so folding is tested.
    gen = torch.Generator().manual_seed(1)
    stats = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            stats[name] = (m.running_mean.clone(), m.running_var.clone())
    with torch.inference_mode():
        expected = model(features.preprocess(images).contiguous()).numpy()

    def perturbed(*a, **kw):
        m = original(*a, **kw)
        for name, bn in m.named_modules():
            if name in stats:
                bn.running_mean.copy_(stats[name][0])
                bn.running_var.copy_(stats[name][1])
        return m

    original = backbones.resnet50_model
    monkeypatch.setattr(backbones, "resnet50_model", perturbed)
    X, _ = run(images, batch_size=2)
    np.testing.assert_allclose(X, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    X_default_stats, _ = reference
    assert np.abs(X - X_default_stats).max() > 1e-2 * np.abs(expected).max()  # the stats did matter


def test_resnet50_grey_equals_repeated_rgb(images):
    grey = images[..., 0]
    Xg, _ = run(grey)
    Xrgb, _ = run(np.repeat(grey[..., None], 3, axis=-1))
    np.testing.assert_allclose(Xg, Xrgb, rtol=0, atol=1e-5 * np.abs(Xrgb).max())
    assert not np.allclose(Xg[0], Xg[1])  # different images, different features


def test_random_weights_follow_seed(images):
    a, _ = run(images[:1], seed=0, image_size=64)
    state = torch.random.get_rng_state()
    b, _ = run(images[:1], seed=1, image_size=64)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched
    assert not np.allclose(a, b)


def test_preprocess_matches_torchvision_pipeline(images):
    """Our batched preprocessing equals torchvision's v2 transforms per image (resize to 224, normalize)."""
    from torchvision.transforms import v2

    pipeline = v2.Compose([
        v2.ToDtype(torch.float32, scale=True),
        v2.Resize((224, 224), antialias=True),
        v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    ours = features.preprocess(images)
    assert ours.shape == (4, 3, 224, 224) and ours.is_contiguous(memory_format=torch.channels_last)
    for i in range(len(images)):
        theirs = pipeline(torch.from_numpy(images[i]).permute(2, 0, 1))
        torch.testing.assert_close(ours[i], theirs, atol=1e-5, rtol=0)


def test_bad_inputs(images):
    with pytest.raises(ValueError, match="expected uint8 images"):
        run(images.astype(np.float32))
    with pytest.raises(ValueError, match="unknown ResNet-50 weights 'IMAGENET1K_V3'"):
        run(images, weights="IMAGENET1K_V3")
    with pytest.raises(KeyError, match="unknown extractor 'resnet18'; known extractors: pixels, resnet50"):
        features.extract(images, "resnet18")
    assert features.EXTRACTORS == ("pixels", "resnet50", "dinov2", "clip")


# ---------------------------------------------------------------------------
# Pretrained weights (cce.data.backbones): cache, offline message, weights_only


def test_weights_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = (tmp_path / "torch" / "hub" / "checkpoints").resolve()
    assert backbones.weights_path("IMAGENET1K_V1") == checkpoints / "resnet50-0676ba61.pth"
    with pytest.raises(backbones.WeightsUnavailableError) as err:
        backbones.resnet50_model("IMAGENET1K_V1", download=False)
    message = str(err.value)
    assert "download disabled" in message
    assert f"put the file resnet50-0676ba61.pth in {checkpoints}" in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message

    def offline(url, dest, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(fetch, "download_file", offline)
    with pytest.raises(data.DataUnavailableError, match="Temporary failure in name resolution") as err:
        backbones.resnet50_model("IMAGENET1K_V2")
    assert f"put the file resnet50-11ad3fa6.pth in {checkpoints}" in str(err.value)


def test_weights_download_verified_before_it_lands(tmp_path, monkeypatch):
    """A download whose SHA-256 does not match the prefix in the file name never appears in the cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    bogus = tmp_path / "bogus.pth"
    torch.save({"w": torch.zeros(2)}, bogus)
    real_download = fetch.download_file
    monkeypatch.setattr(
        fetch, "download_file", lambda url, dest, *a, **kw: real_download(bogus.as_uri(), dest, *a, **kw)
    )
    with pytest.raises(backbones.WeightsUnavailableError, match="SHA-256 does not start with 0676ba61"):
        backbones.resnet50_model("IMAGENET1K_V1")
    assert list((tmp_path / "torch" / "hub" / "checkpoints").iterdir()) == []


def test_cached_weights_with_wrong_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = backbones.weights_path("IMAGENET1K_V1")
    path.parent.mkdir(parents=True)
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(data.DataVerificationError, match="delete it and run again"):
        backbones.resnet50_model("IMAGENET1K_V1", download=False)


def test_load_checkpoint_weights_only(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), good)
    prefix = fetch.sha256(good)[:8]
    state = backbones.load_checkpoint(good, prefix)
    assert set(state) == {"weight", "bias"}

    evil = tmp_path / "evil.pth"
    torch.save({"weight": Payload()}, evil)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        backbones.load_checkpoint(evil)


# ---------------------------------------------------------------------------
# Datasets to feature files


@pytest.fixture
def tiny_mnist(tmp_path, monkeypatch):
    files, images, labels, sizes = fake_mnist()
    monkeypatch.setitem(data.DATASETS, "mnist", spec_for("mnist", files, {}, sizes))
    local = write_files(tmp_path / "local", files)
    data.prepare("mnist", tmp_path / "data", local_dir=local, download=False)
    return tmp_path / "data", images, labels


def test_extract_dataset_resnet50_and_feature_file(tiny_mnist, tmp_path):
    root, images, labels = tiny_mnist
    X, y, meta = features.extract_dataset(
        "mnist", root, "resnet50", weights=None, batch_size=3, num_workers=1, device="cpu", image_size=64, progress=False
    )
    assert X.shape == (len(images), 2048)
    np.testing.assert_array_equal(y, labels)
    assert meta["extractor"] == "resnet50" and meta["weights"] is None and meta["n_examples"] == len(images)
    assert meta["X_sha256"] == features.array_checksum(X)
    assert {"torch", "torchvision", "numpy"} <= set(meta["versions"])
    assert "preprocessing" in meta and meta["image_size"] == 64

    path = tmp_path / "out" / "resnet50.npz"
    features.save_features(path, X, y, meta)
    X2, y2, meta2 = features.load_features(path)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    assert meta2 == json.loads(json.dumps(meta))
    assert features.array_checksum(X2) == meta2["X_sha256"]


def test_extract_dataset_pixels_ignores_runtime_options(tiny_mnist):
    root, images, _ = tiny_mnist
    X, _, meta = features.extract_dataset("mnist", root, "pixels", batch_size=7, num_workers=2, device="auto")
    np.testing.assert_allclose(X, images.reshape(len(images), -1) / 255.0, rtol=1e-6)
    assert meta["extractor"] == "pixels"
    with pytest.raises(TypeError, match="image_size"):
        features.extract_dataset("mnist", root, "pixels", image_size=64)


def test_array_checksum_sees_dtype_shape_and_values():
    a = np.arange(6, dtype=np.float32)
    assert features.array_checksum(a) != features.array_checksum(a.reshape(2, 3))
    assert features.array_checksum(a) != features.array_checksum(a.astype(np.float64))
    b = a.copy()
    b[3] += 1e-3
    assert features.array_checksum(a) != features.array_checksum(b)
    assert features.array_checksum(a) == features.array_checksum(a.copy())
