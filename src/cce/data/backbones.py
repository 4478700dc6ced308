"""The pretrained networks behind the extractors of :mod:`cce.data.features`, and their weights.

ResNet-50 (torchvision): weights default to ``ResNet50_Weights.IMAGENET1K_V1``,
torchvision's original ImageNet weights (76.1% top-1), which is what
``pretrained=True`` meant when the paper was written and still maps to;
``IMAGENET1K_V2`` (newer training recipe, 80.9%) gives different features and is
available as an option. The file lives in torchvision's cache, :func:`weights_path`.

DINOv2 and CLIP, through timm (the optional extra ``pip install 'cce[images]'``;
imported only when used). ``dinov2`` is ``vit_small_patch14_dinov2.lvd142m``
(self-supervised ViT-S/14); ``clip`` is ``vit_base_patch16_clip_quickgelu_224.openai``,
OpenAI's CLIP ViT-B/16 image encoder with the QuickGELU it was trained with (timm's
note on the plain ``vit_base_patch16_clip_224.openai``: "use quickgelu model variant
for original results"; the same weight file). Weights come from timm's own download
(the Hugging Face cache) or a file put at :func:`timm_weights_path`.

Offline, :class:`WeightsUnavailableError` names the file to download and the folder to put it in.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import fetch
from .. import data

RESNET50_WEIGHTS = "IMAGENET1K_V1"
# The timm models behind the extractor names (any timm model name can be given as option `model`).
TIMM_MODELS = {"dinov2": "vit_small_patch14_dinov2.lvd142m", "clip": "vit_base_patch16_clip_quickgelu_224.openai"}
IMAGES_EXTRA = "pip install 'cce[images]'"


class WeightsUnavailableError(data.DataUnavailableError):
    """Pretrained weights are neither cached nor downloadable; the message names the file and where to put it."""


class ExtractorUnavailableError(data.DataUnavailableError):
    """An extractor needs a package that is not installed (timm: the ``images`` extra)."""


# ---------------------------------------------------------------------------
# ResNet-50 (torchvision)


def _weights_enum(weights):
    from torchvision.models import ResNet50_Weights

    if weights is None or isinstance(weights, ResNet50_Weights):
        return weights
    name = str(weights).removeprefix("ResNet50_Weights.")
    if name.lower() in ("none", "random"):
        return None
    try:
        return ResNet50_Weights[name]
    except KeyError:
        known = ", ".join(w.name for w in ResNet50_Weights)
        raise ValueError(f"unknown ResNet-50 weights {weights!r}; known: {known}, or None for random weights") from None


def weights_path(weights) -> Path:
    """Where torchvision's cache keeps ``weights``: ``$TORCH_HOME/hub/checkpoints/<file name of its URL>``."""
    import torch.hub

    return Path(torch.hub.get_dir()).resolve() / "checkpoints" / os.path.basename(_weights_enum(weights).url)


def _check_prefix(path: Path, sha256_prefix: str | None, name: str) -> None:
    if sha256_prefix is not None and not fetch.sha256(path).startswith(sha256_prefix):
        raise fetch.DataVerificationError(f"{name}: SHA-256 does not start with {sha256_prefix} "
                                          "as its file name promises")


def load_checkpoint(path: Path | str, sha256_prefix: str | None = None) -> dict:
    """State dict of a checkpoint file, after checking torchvision's hash prefix; tensors only (weights_only)."""
    import torch

    path = Path(path)
    try:
        _check_prefix(path, sha256_prefix, str(path))
    except fetch.DataVerificationError as err:
        raise fetch.DataVerificationError(f"{err}; delete it and run again") from None
    return torch.load(path, map_location="cpu", weights_only=True)


def resnet50_model(weights=RESNET50_WEIGHTS, download: bool = True, seed: int = 0):
    """torchvision's ResNet-50 in eval mode with ``fc`` = identity (2048-d pooled features).

    ``weights=None`` gives random weights drawn from ``seed`` (global RNG untouched).
    """
    import torch
    import torchvision

    w = _weights_enum(weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.resnet50(weights=None)
    if w is not None:
        import torch.hub

        path = weights_path(w)
        match = torch.hub.HASH_REGEX.search(path.name)  # torchvision names files <arch>-<sha256 prefix>.pth
        prefix = match.group(1) if match else None
        checked = False  # a download is checked before it lands; a cached file when loaded
        if not path.is_file():
            reason = "download disabled"
            if download:
                try:
                    fetch.download_file(w.url, path, verify=lambda tmp: _check_prefix(tmp, prefix, path.name))
                    checked = True
                except Exception as err:  # any failure ends in the one message below
                    reason = f"{type(err).__name__}: {err}"
            if not path.is_file():
                raise WeightsUnavailableError(
                    f"ResNet-50 weights {w} are not cached and could not be downloaded ({reason}).\n"
                    f"Download {w.url}\nand put the file {path.name} in {path.parent} "
                    f"(that is $TORCH_HOME/hub/checkpoints; set TORCH_HOME to use another cache)."
                )
        model.load_state_dict(load_checkpoint(path, None if checked else prefix))
    model.fc = torch.nn.Identity()
    return model.eval()


# ---------------------------------------------------------------------------
# timm image encoders (DINOv2, CLIP)


def import_timm():
    """timm, or :class:`ExtractorUnavailableError` saying how to install it."""
    try:
        import timm
        import timm.data
    except ImportError as err:
        raise ExtractorUnavailableError(f"the dinov2 and clip extractors need timm, which is not installed "
                                        f"({err}); install the extra: {IMAGES_EXTRA}") from None
    return timm


def timm_model_name(extractor: str, model: str | None = None) -> str:
    if model:
        return model
    try:
        return TIMM_MODELS[extractor]
    except KeyError:
        raise KeyError(f"no timm model for extractor {extractor!r}; known: {', '.join(TIMM_MODELS)}") from None


def timm_weights_path(model: str) -> Path:
    """Where a timm model's weights may be put by hand: ``$TORCH_HOME/hub/checkpoints/<model>.safetensors``
    (looked at first; beside the ResNet-50 weights)."""
    import torch.hub

    return Path(torch.hub.get_dir()).resolve() / "checkpoints" / f"{model}.safetensors"


def _timm_hub_id(model: str) -> str:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model)
    if cfg is None or not cfg.hf_hub_id:
        raise KeyError(f"timm has no pretrained weights for {model!r}")
    return cfg.hf_hub_id


def _hub_reachable() -> str | None:
    """None when the Hugging Face host resolves; else why not (offline, huggingface_hub's retries
    would take a minute to say the same)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as err:
        return f"{host} cannot be resolved ({err})"
    return None


def _timm_weights_file(model: str, weights_file, download: bool) -> tuple[str | None, str]:
    """The local weight file to load (None: let timm download into its cache) and where it came from."""
    if weights_file is not None:
        if not Path(weights_file).is_file():
            raise WeightsUnavailableError(f"weights_file {weights_file}: no such file")
        return str(weights_file), "weights_file"
    local = timm_weights_path(model)
    if local.is_file():
        return str(local), "torch hub checkpoints"
    from huggingface_hub import try_to_load_from_cache

    hub_id = _timm_hub_id(model)
    for name in ("model.safetensors", "pytorch_model.bin"):
        cached = try_to_load_from_cache(hub_id, name)
        if isinstance(cached, str):
            return cached, "Hugging Face cache"
    reason = "download disabled" if not download else _hub_reachable()
    if reason is None:
        return None, "downloaded by timm"
    raise _weights_missing(model, reason)


def _weights_missing(model: str, reason: str) -> WeightsUnavailableError:
    hub_id = _timm_hub_id(model)
    path = timm_weights_path(model)
    return WeightsUnavailableError(
        f"weights of timm model {model} are not cached and could not be downloaded ({reason}).\n"
        f"Download https://huggingface.co/{hub_id}/resolve/main/model.safetensors\n"
        f"and put it as {path.name} in {path.parent} (that is $TORCH_HOME/hub/checkpoints; set TORCH_HOME to "
        f"use another cache), or give its path as the option weights_file; with network, timm downloads it once "
        f"into the Hugging Face cache ($HF_HOME/hub)."
    )


def timm_model(extractor: str, *, model: str | None = None, pretrained: bool = True, download: bool = True,
               image_size: int | None = None, seed: int = 0, weights_file=None):
    """A timm image encoder in eval mode, its data config (timm's, from the model's ``pretrained_cfg``;
    ``image_size`` overrides the input size) and where its weights came from.

    ``pretrained=False`` gives the same architecture with random weights drawn from ``seed`` (global
    RNG untouched): what the tests run, with no download.
    """
    import torch

    timm = import_timm()
    name = timm_model_name(extractor, model)
    kwargs = {"img_size": int(image_size)} if image_size else {}
    source = None
    if not pretrained:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = timm.create_model(name, pretrained=False, **kwargs)
    else:
        path, source = _timm_weights_file(name, weights_file, download)
        overlay = {"pretrained_cfg_overlay": {"file": path}} if path else {}
        try:
            net = timm.create_model(name, pretrained=True, **overlay, **kwargs)
        except Exception as err:  # no network, a partial cache, ...: one message that says what to do
            if path is not None:
                raise WeightsUnavailableError(f"{path}: cannot load weights of timm model {name} "
                                              f"({type(err).__name__}: {err}); delete it and run again") from err
            raise _weights_missing(name, f"{type(err).__name__}: {err}") from err
    config = dict(timm.data.resolve_data_config({}, model=net))
    if image_size:
        config["input_size"] = (3, int(image_size), int(image_size))
    return net.eval(), config, source
