"""The VGG-style networks of Table 7 (paper appendix D/E) for deep self-labeled classification.

Three trunks of four 5x5 convolutions, each followed by batch normalization and
ReLU, with 2x2 max-pooling (stride 2) between them, and one linear layer to K
logits:

=========  ===========  ==========================  ======================
name       input        convolutions (stride)       linear
=========  ===========  ==========================  ======================
grey28     28x28x1      @64, @128, @256, @512 (1)   512*3*3 -> K  (MNIST)
rgb32      32x32x3      @32, @64, @128, @256 (1)    256*4*4 -> K  (CIFAR)
rgb96      96x96x3      @128, @256, @512, @1024 (2) 1024*1*1 -> K (STL10)
=========  ===========  ==========================  ======================

Padding is 2 everywhere. Where the paper is silent we follow the VGG trunk of
IIC [16] (which Table 7 is adapted from): convolutions carry no bias (the batch
norm that follows has its own shift), convolution weights are Kaiming-normal
(fan-in, ReLU gain), batch-norm scales 1 and shifts 0, the linear layer
N(0, 0.01) with zero bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["ARCHITECTURES", "Architecture", "MLP", "MLP_WIDTHS", "NETWORKS", "VGG4", "architecture_for", "build_model",
           "build_network", "count_parameters", "get_architecture", "network_name", "resnet18"]


@dataclass(frozen=True)
class Architecture:
    """One column of Table 7: input (H, W, C), conv widths and stride, spatial size before the linear layer."""

    name: str
    input_shape: tuple[int, int, int]  # (H, W, C)
    widths: tuple[int, int, int, int]
    stride: int
    final_hw: int  # side of the last feature map, the linear layer's input is widths[-1] * final_hw**2
    datasets: str


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("grey28", (28, 28, 1), (64, 128, 256, 512), 1, 3, "MNIST, Fashion-MNIST"),
        Architecture("rgb32", (32, 32, 3), (32, 64, 128, 256), 1, 4, "CIFAR10, CIFAR100-20"),
        Architecture("rgb96", (96, 96, 3), (128, 256, 512, 1024), 2, 1, "STL10"),
    )
}


class VGG4(nn.Module):
    """Table 7's "VGG-4": x (B, C, H, W) float -> logits (B, K).

    ``features(x)`` returns the flattened trunk output (B, widths[-1] * final_hw**2).
    """

    def __init__(self, arch: Architecture | str, n_clusters: int):
        super().__init__()
        if isinstance(arch, str):
            arch = get_architecture(arch)
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be positive, got {n_clusters}")
        self.arch = arch
        layers: list[nn.Module] = []
        in_ch = arch.input_shape[2]
        for i, width in enumerate(arch.widths):
            if i > 0:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            layers += [
                nn.Conv2d(in_ch, width, kernel_size=5, stride=arch.stride, padding=2, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            in_ch = width
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(arch.widths[-1] * arch.final_hw**2, n_clusters)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.bias)

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}") from None


def architecture_for(image_shape: tuple[int, ...]) -> Architecture:
    """The Table 7 column for images of shape (H, W) or (H, W, C)."""
    shape = tuple(image_shape) if len(image_shape) == 3 else (*image_shape, 1)
    for arch in ARCHITECTURES.values():
        if arch.input_shape == shape:
            return arch
    known = ", ".join(f"{a.name} {a.input_shape}" for a in ARCHITECTURES.values())
    raise ValueError(f"no Table 7 network takes images of shape {shape} (H, W, C); known: {known}")


def build_model(image_shape: tuple[int, ...], n_clusters: int) -> VGG4:
    """The Table 7 network for images (H, W) or (H, W, C) with ``n_clusters`` outputs.

    Initialized from torch's global RNG: seed it first for a reproducible network.
    """
    return VGG4(architecture_for(image_shape), n_clusters)


# ----------------------------------------------------------------------------
# ResNet-18 and an MLP (the label-noise experiment) and the choice of network by name
# ----------------------------------------------------------------------------
NETWORKS = ("auto", "resnet18", "mlp", *ARCHITECTURES)
MLP_WIDTHS = (1024, 1024)  # hidden layers of ``mlp``


class MLP(nn.Module):
    """A fully connected network on pixels: x (B, C, H, W) -> flatten -> [Linear, ReLU] x 2 -> logits (B, K).

    784-1024-1024-10 on 28x28 grey images: 1.86 M parameters and no batch norm, enough to memorise
    thousands of images within tens of epochs, the regime where label noise separates H from H2
    (Figure 2). torch's default ``nn.Linear`` initialisation (from torch's global RNG).
    """

    def __init__(self, image_shape: tuple[int, ...], n_classes: int, widths: tuple[int, ...] = MLP_WIDTHS):
        super().__init__()
        d = 1
        for side in image_shape:
            d *= int(side)
        layers: list[nn.Module] = [nn.Flatten(1)]
        for width in widths:
            layers += [nn.Linear(d, width), nn.ReLU(inplace=True)]
            d = width
        layers.append(nn.Linear(d, n_classes))
        self.layers = nn.Sequential(*layers)
        self.network_name = "mlp"

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def resnet18(image_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """torchvision's ResNet-18 (random init) for images (H, W) or (H, W, C): x (B, C, H, W) -> logits (B, K).

    Small images (side <= 64: 28x28 grey, 32x32 RGB) get the usual CIFAR adaptation: conv1
    3x3, stride 1, padding 1, and no max-pool, so the last stage still sees a 4x4 (3x3 for
    28x28) map instead of 1x1; larger ones keep ImageNet's 7x7 stride-2 stem. Grey images get
    conv1 with one input channel. A replaced conv1 is Kaiming-initialized as torchvision does.
    Initialized from torch's global RNG.
    """
    from torchvision.models import resnet18 as tv_resnet18

    H, W, C = tuple(image_shape) if len(image_shape) == 3 else (*image_shape, 1)
    model = tv_resnet18(weights=None, num_classes=n_classes)
    small = max(H, W) <= 64
    if small or C != 3:
        conv = (nn.Conv2d(C, 64, kernel_size=3, stride=1, padding=1, bias=False) if small
                else nn.Conv2d(C, 64, kernel_size=7, stride=2, padding=3, bias=False))
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        model.conv1 = conv
    if small:
        model.maxpool = nn.Identity()
    model.network_name = "resnet18"
    return model


def build_network(network: str, image_shape: tuple[int, ...], n_classes: int) -> nn.Module:
    """``auto`` (the Table 7 network for the shape), ``resnet18``, ``mlp`` (:class:`MLP`), or a Table 7 name that
    must fit the shape."""
    if network == "auto":
        return build_model(image_shape, n_classes)
    if network == "resnet18":
        return resnet18(image_shape, n_classes)
    if network == "mlp":
        return MLP(image_shape, n_classes)
    if network in ARCHITECTURES:
        arch = architecture_for(image_shape)
        if arch.name != network:
            raise ValueError(f"network {network!r} takes {ARCHITECTURES[network].input_shape} (H, W, C) images, "
                             f"these are {arch.input_shape}; use 'auto' or {arch.name!r}")
        return VGG4(arch, n_classes)
    raise ValueError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")


def network_name(model: nn.Module) -> str:
    """The name :func:`build_network` knows a network by (a Table 7 column, ``resnet18`` or ``mlp``)."""
    return model.arch.name if isinstance(model, VGG4) else getattr(model, "network_name", type(model).__name__)


@torch.no_grad()
def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (batch-norm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
