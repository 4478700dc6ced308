"""Self-augmentation for deep self-labeled training (Section 5.2): random views of whole batches on the device.

The paper sets sigma_i = E_t[sigma(t(X_i))] over two augmented views per image, with
transforms t sampled from horizontal flip, rotation and colour distortion. Here every
image of a batch (and each of its views) gets its own random transform, and the whole
batch is transformed at once on the training device, so no per-image Python loop or
DataLoader worker decides the epoch time; the images themselves stay on the device
as uint8.

Why kornia: ``kornia.augmentation`` samples one parameter set per sample
(``same_on_batch=False``) and applies them with batched tensor ops (``grid_sample``
for rotations, broadcast arithmetic for colour), on CPU and CUDA alike.
``torchvision.transforms.v2`` applies one parameter set per call to a batched
tensor, so per-image transforms there would need a Python loop over images.

Reproducibility: kornia draws its parameters from torch's global CPU generator. Each
call therefore draws one seed from the caller's ``torch.Generator`` and runs kornia
inside ``torch.random.fork_rng`` seeded with it: the views are a function of the
images and that generator's state alone (which the training checkpoint saves), and
the global RNG is left as it was.

Where the paper is silent, the strengths follow common self-supervised practice
(IIC's [16] colour jitter strengths): rotation uniform in +-25 degrees, horizontal
flip with probability 0.5, colour jitter (brightness, contrast, saturation 0.4,
hue 0.125) with probability 0.8. No colour distortion for grey images; no flip for
digits (a mirrored digit is another glyph), which the caller decides.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SelfAugmentation"]

_SEED_HIGH = 2**62


class SelfAugmentation:
    """Random per-image transforms of a batch: uint8 (B, C, H, W) -> float32 views in [0, 1].

    ``rotation``: maximal angle in degrees (0 disables); ``flip``: random horizontal flip;
    ``color``: colour jitter (only for C = 3). ``pixel_max`` maps the uint8 range to [0, 1]
    (255, or 16 for scikit-learn's digits).
    """

    def __init__(self, channels: int, *, flip: bool = True, rotation: float = 25.0, color: bool = True,
                 brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.125,
                 flip_p: float = 0.5, color_p: float = 0.8, pixel_max: float = 255.0):
        import kornia.augmentation as KA

        if channels not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got {channels}")
        if color and channels != 3:
            raise ValueError("colour distortion needs RGB images (channels = 3)")
        if rotation < 0:
            raise ValueError(f"rotation must be >= 0 degrees, got {rotation}")
        self.channels = channels
        self.pixel_max = float(pixel_max)
        self.settings = {"flip": bool(flip), "rotation": float(rotation), "color": bool(color)}
        ops: list[nn.Module] = []
        if flip:
            ops.append(KA.RandomHorizontalFlip(p=flip_p))
        if rotation > 0:
            ops.append(KA.RandomRotation(degrees=rotation, p=1.0))
        if color:
            ops.append(KA.ColorJitter(brightness, contrast, saturation, hue, p=color_p))
            self.settings.update(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue,
                                 color_p=color_p)
        if flip:
            self.settings["flip_p"] = flip_p
        self.pipeline = nn.Sequential(*ops)

    def to_unit(self, images: Tensor) -> Tensor:
        """uint8 (B, C, H, W) -> float32 in [0, 1], without augmentation."""
        return images.to(torch.float32) / self.pixel_max

    def __call__(self, images: Tensor, generator: torch.Generator, n_views: int = 1) -> Tensor:
        """``n_views`` random views of each image, view-major: (n_views * B, C, H, W) float32 in [0, 1].

        Rows ``t * B : (t + 1) * B`` hold view ``t`` of the batch. ``generator`` (CPU) is
        advanced by one draw per call.
        """
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(f"expected images (B, {self.channels}, H, W), got {tuple(images.shape)}")
        x = self.to_unit(images)
        if n_views > 1:
            x = x.repeat(n_views, 1, 1, 1)
        seed = int(torch.randint(0, _SEED_HIGH, (1,), generator=generator))
        if len(self.pipeline) == 0:
            return x
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.random.default_generator.manual_seed(seed)
            if devices:
                torch.cuda.manual_seed(seed)
            with torch.no_grad():
                out = self.pipeline(x)
        return out.clamp_(0.0, 1.0)

