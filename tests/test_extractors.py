"""The dinov2 and clip extractors (timm) with random weights of their real architectures: output shape,
determinism, batch invariance, the preprocessing of the model's pretrained_cfg, weights from a local file,
and the errors without weights (offline) or without timm. No test downloads anything."""

import sys

import numpy as np
import pytest
import torch

from cce.data import backbones, features
from cce.data.image_folder import ArrayImages

timm = pytest.importorskip("timm", reason="the images extra (pip install 'cce[images]') is not installed")

# (extractor, small input size: two patches a side, embedding size, parameters of the real model but its
# position embedding, whose size follows the input size: 22,056,192 and 86,193,152 in all at 518 and 224)
MODELS = [("dinov2", 28, 384, 21_530_112), ("clip", 32, 512, 86_041_856)]


@pytest.fixture(scope="module")
def images():
    """Six images of different sizes' worth of content: grey 20x20 and RGB would both go through RGB."""
    return np.random.default_rng(0).integers(0, 256, (6, 20, 20, 3), dtype=np.uint8)


def extract(images, extractor, size, batch_size=6, seed=0):
    return features.extract(images, extractor, pretrained=False, image_size=size, seed=seed, batch_size=batch_size,
                            num_workers=0, device="cpu", progress=False)


@pytest.mark.parametrize("extractor,size,dim,n_params", MODELS)
def test_random_init_of_the_real_architecture(extractor, size, dim, n_params):
    net, config, source = backbones.timm_model(extractor, pretrained=False, image_size=size)
    assert sum(p.numel() for name, p in net.named_parameters() if name != "pos_embed") == n_params
    assert net.num_features in (384, 768) and source is None and not net.training
    assert config["input_size"] == (3, size, size)
    assert features.FEATURE_DIM[extractor] == dim
    if extractor == "dinov2":  # the weights are drawn from the seed (the smaller model: one more build)
        other, _, _ = backbones.timm_model(extractor, pretrained=False, image_size=size, seed=1)
        assert not torch.equal(other.blocks[0].attn.qkv.weight, net.blocks[0].attn.qkv.weight)


@pytest.mark.parametrize("extractor,size,dim,n_params", MODELS)
def test_shape_determinism_and_batch_invariance(images, extractor, size, dim, n_params):
    from PIL import Image

    X, how = extract(images, extractor, size)
    assert X.shape == (6, dim) and X.dtype == np.float32 and np.isfinite(X).all()
    assert how["model"] == backbones.TIMM_MODELS[extractor] and how["random_seed"] == 0
    # the model built again from the same seed, on the same preprocessed batch: the same features
    net, config, _ = backbones.timm_model(extractor, pretrained=False, image_size=size, seed=0)
    transform = timm.data.create_transform(**config, is_training=False)
    x = torch.stack([transform(Image.fromarray(img)) for img in images])
    with torch.inference_mode():
        np.testing.assert_array_equal(net(x).numpy(), X)
        one_by_one = torch.cat([net(x[i:i + 1]) for i in range(len(x))]).numpy()
        reversed_rows = net(x.flip(0)).numpy()[::-1]
    # each row is its own image's, whatever else is in the batch (up to float rounding)
    np.testing.assert_allclose(one_by_one, X, rtol=1e-4, atol=1e-5 * np.abs(X).max())
    np.testing.assert_allclose(reversed_rows, X, rtol=1e-4, atol=1e-5 * np.abs(X).max())


@pytest.mark.parametrize("extractor", ["dinov2", "clip"])
def test_preprocessing_is_the_pretrained_cfg(extractor):
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(backbones.TIMM_MODELS[extractor])
    _, config, _ = backbones.timm_model(extractor, pretrained=False, image_size=None if extractor == "dinov2" else 32)
    assert config["mean"] == cfg.mean and config["std"] == cfg.std
    assert config["interpolation"] == cfg.interpolation == "bicubic" and config["crop_pct"] == cfg.crop_pct
    if extractor == "dinov2":  # its own input size when none is given
        assert config["input_size"] == cfg.input_size == (3, 518, 518)


def test_grey_images_are_repeated_to_rgb(images):
    grey = images[..., 0]
    X_grey, _ = extract(grey, "dinov2", 28)
    X_rgb, _ = extract(np.repeat(grey[..., None], 3, axis=-1), "dinov2", 28)
    np.testing.assert_allclose(X_grey, X_rgb, rtol=1e-5, atol=1e-6)


def test_weights_from_the_named_file_are_loaded(images, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net, _, _ = backbones.timm_model("dinov2", pretrained=False, image_size=28, seed=5)
    path = backbones.timm_weights_path(backbones.TIMM_MODELS["dinov2"])
    assert path == tmp_path / "hub/checkpoints/vit_small_patch14_dinov2.lvd142m.safetensors"
    path.parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    loaded, _, source = backbones.timm_model("dinov2", image_size=28, download=False)
    assert source == "torch hub checkpoints"
    x = torch.randn(2, 3, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), net(x))
    X, how = features.extract(images, "dinov2", image_size=28, download=False, num_workers=0, progress=False)
    assert how["weights"].startswith("timm vit_small_patch14_dinov2.lvd142m") and how["random_seed"] is None


def test_offline_error_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)  # an empty HF cache
    with pytest.raises(backbones.WeightsUnavailableError) as err:
        backbones.timm_model("clip", download=False)
    message = str(err.value)
    assert "vit_base_patch16_clip_quickgelu_224.openai.safetensors" in message
    assert f"in {tmp_path / 'hub/checkpoints'}" in message
    assert "https://huggingface.co/timm/vit_base_patch16_clip_224.openai/resolve/main/model.safetensors" in message
    assert "download disabled" in message


def test_a_missing_weights_file_option_is_an_error():
    with pytest.raises(backbones.WeightsUnavailableError, match="no such file"):
        backbones.timm_model("dinov2", weights_file="/no/such/file.safetensors")


def test_without_timm_the_error_names_the_extra(monkeypatch, images):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    monkeypatch.setitem(sys.modules, "timm.data", None)
    with pytest.raises(backbones.ExtractorUnavailableError, match=r"pip install 'cce\[images\]'"):
        extract(images, "dinov2", 28)


def test_the_features_command_without_timm_is_a_user_error(monkeypatch, tmp_path, capsys):
    from cce.pipeline.cli import main

    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setitem(sys.modules, "timm.data", None)
    assert main(["features", "digits", "clip", "--out", str(tmp_path / "f.npz"),
                 "--options", '{"pretrained": false, "image_size": 32}']) == 2
    assert "cce[images]" in capsys.readouterr().err


def test_library_imports_without_timm():
    import subprocess

    code = ("import sys; sys.modules['timm'] = None; import cce, cce.data.features, cce.pipeline.images, "
            "cce.pipeline.cli; print(cce.data.features.EXTRACTORS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "dinov2" in out


def test_resnet50_streams_images_of_any_size(tmp_path):
    from PIL import Image

    from cce.data.image_folder import scan

    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(20, 30), (32, 32), (50, 24)]):
        (tmp_path / "a").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / "a" / f"{i}.png")
    X, _, meta = features.extract_folder(scan(tmp_path), "resnet50", weights=None, image_size=32, num_workers=0,
                                         batch_size=2, progress=False)
    assert X.shape == (3, 2048) and np.isfinite(X).all() and meta["image_size"] == 32
    again, _, _ = features.extract_folder(scan(tmp_path), "resnet50", weights=None, image_size=32, num_workers=0,
                                          batch_size=3, progress=False)
    np.testing.assert_allclose(again, X, rtol=1e-4, atol=1e-5 * np.abs(X).max())


def test_array_images_feed_the_stream_in_their_order(images):
    X, kept, skipped, _ = features.extract_stream(ArrayImages(images), "pixels", num_workers=0, chunk_size=4,
                                                  batch_size=3, progress=False)
    assert list(kept) == list(range(6)) and not skipped
    np.testing.assert_array_equal(X, features.pixels(images))
