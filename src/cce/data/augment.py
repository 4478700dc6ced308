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

How the transforms make a view (``mode``), a reading the paper leaves open ("we generate two
augmentations sampled from 'horizontal flip', 'rotation' and 'color distortion'", Section 5.2):
``compose`` applies every enabled transform in sequence, each with its probability (flip 0.5,
rotation always, colour 0.8), as most self-supervised codebases do; ``sample_one`` samples ONE of
the enabled transforms per image and view, uniformly, and applies it (probability 1), the
sentence read literally.

Where the paper is silent, the strengths follow common self-supervised practice
(IIC's [16] colour jitter strengths): rotation uniform in +-25 degrees, horizontal
flip with probability 0.5, colour jitter (brightness, contrast, saturation 0.4,
hue 0.125) with probability 0.8. No colour distortion for grey images; no flip for
digits (a mirrored digit is another glyph), which the caller decides.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["AUGMENT_MODES", "SelfAugmentation"]

AUGMENT_MODES = ("compose", "sample_one")

_SEED_HIGH = 2**62


class SelfAugmentation:
    """Random per-image transforms of a batch: uint8 (B, C, H, W) -> float32 views in [0, 1].

    ``rotation``: maximal angle in degrees (0 disables); ``flip``: random horizontal flip;
    ``color``: colour jitter (only for C = 3). ``pixel_max`` maps the uint8 range to [0, 1]
    (255, or 16 for scikit-learn's digits). ``mode``: ``compose`` (every transform in sequence)
    or ``sample_one`` (one of them per image and view; the module docstring says why both).
    """

    def __init__(self, channels: int, *, flip: bool = True, rotation: float = 25.0, color: bool = True,
                 brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.125,
                 flip_p: float = 0.5, color_p: float = 0.8, pixel_max: float = 255.0, mode: str = "compose"):
        import kornia.augmentation as KA

        if mode not in AUGMENT_MODES:
            raise ValueError(f"augment must be one of {list(AUGMENT_MODES)}, got {mode!r}")
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
        self.mode = mode
        if mode == "sample_one":
            self.settings["mode"] = mode
        self.pipeline = nn.Sequential(*ops)
        # sample_one: the same transforms, each applied with certainty when it is the one sampled
        self.transforms: dict[str, nn.Module] = {}
        if flip:
            self.transforms["flip"] = KA.RandomHorizontalFlip(p=1.0)
        if rotation > 0:
            self.transforms["rotation"] = KA.RandomRotation(degrees=rotation, p=1.0)
        if color:
            self.transforms["color"] = KA.ColorJitter(brightness, contrast, saturation, hue, p=1.0)

    def to_unit(self, images: Tensor) -> Tensor:
        """uint8 (B, C, H, W) -> float32 in [0, 1], without augmentation."""
        return images.to(torch.float32) / self.pixel_max

    def __call__(self, images: Tensor, generator: torch.Generator, n_views: int = 1) -> Tensor:
        """``n_views`` random views of each image, view-major: (n_views * B, C, H, W) float32 in [0, 1].

        Rows ``t * B : (t + 1) * B`` hold view ``t`` of the batch. ``generator`` (CPU) is
        advanced by one draw per call.
        """
        return self.views(images, generator, n_views)[0]

    def views(self, images: Tensor, generator: torch.Generator, n_views: int = 1) -> tuple[Tensor, Tensor | None]:
        """As ``__call__``, with the transform each row got under ``sample_one``: an index (n_views * B,)
        into ``list(self.transforms)``; None under ``compose``."""
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ValueError(f"expected images (B, {self.channels}, H, W), got {tuple(images.shape)}")
        x = self.to_unit(images)
        if n_views > 1:
            x = x.repeat(n_views, 1, 1, 1)
        seed = int(torch.randint(0, _SEED_HIGH, (1,), generator=generator))
        if len(self.pipeline) == 0:
            return x, None
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.random.default_generator.manual_seed(seed)
            if devices:
                torch.cuda.manual_seed(seed)
            with torch.no_grad():
                if self.mode == "compose":
                    out, chosen = self.pipeline(x), None
                else:
                    out, chosen = self._sample_one(x)
        return out.clamp_(0.0, 1.0), chosen

    def _sample_one(self, x: Tensor) -> tuple[Tensor, Tensor]:
        chosen = torch.randint(0, len(self.transforms), (x.shape[0],)).to(x.device)
        out = x.clone()
        for k, transform in enumerate(self.transforms.values()):
            rows = chosen == k
            if rows.any():
                out[rows] = transform(x[rows])
        return out, chosen

