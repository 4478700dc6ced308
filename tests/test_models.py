"""The Table 7 networks: every layer's output shape and the parameter counts, computed by hand."""

import pytest
import torch
from torch import nn

from cce.models import ARCHITECTURES, VGG4, architecture_for, build_model, count_parameters


def _hand_count(in_ch, widths, linear_in, K):
    # 5x5 convolutions without bias, batch norm (scale + shift) after each, linear with bias
    total, c = 0, in_ch
    for w in widths:
        total += c * w * 5 * 5 + 2 * w
        c = w
    return total + linear_in * K + K


# (name, input (C, H, W), feature-map side after each conv, after each pool)
SHAPES = {
    "grey28": ((1, 28, 28), [28, 14, 7, 3], [14, 7, 3]),
    "rgb32": ((3, 32, 32), [32, 16, 8, 4], [16, 8, 4]),
    "rgb96": ((3, 96, 96), [48, 12, 3, 1], [24, 6, 1]),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_layer_output_shape(name):
    (c, h, w), conv_sides, pool_sides = SHAPES[name]
    arch = ARCHITECTURES[name]
    net = VGG4(arch, n_clusters=7).eval()
    x = torch.zeros(2, c, h, w)
    convs, pools = [], []
    for layer in net.trunk:
        x = layer(x)
        if isinstance(layer, nn.BatchNorm2d):
            convs.append(tuple(x.shape))
        if isinstance(layer, nn.MaxPool2d):
            pools.append(tuple(x.shape))
    assert convs == [(2, wd, s, s) for wd, s in zip(arch.widths, conv_sides)]
    assert pools == [(2, wd, s, s) for wd, s in zip(arch.widths[:3], pool_sides)]
    assert net.features(torch.zeros(2, c, h, w)).shape == (2, arch.widths[-1] * conv_sides[-1] ** 2)
    assert net(torch.zeros(2, c, h, w)).shape == (2, 7)


def test_parameter_counts_by_hand():
    # Table 7: linear 512*3*3, 256*4*4 and 1024*1*1 -> K
    assert count_parameters(build_model((28, 28), 10)) == _hand_count(1, (64, 128, 256, 512), 512 * 9, 10)
    assert count_parameters(build_model((32, 32, 3), 10)) == _hand_count(3, (32, 64, 128, 256), 256 * 16, 10)
    assert count_parameters(build_model((96, 96, 3), 10)) == _hand_count(3, (128, 256, 512, 1024), 1024, 10)
    assert count_parameters(build_model((32, 32, 3), 20)) == _hand_count(3, (32, 64, 128, 256), 256 * 16, 20)
    # the same numbers written out once
    assert [_hand_count(1, (64, 128, 256, 512), 4608, 10), _hand_count(3, (32, 64, 128, 256), 4096, 10),
            _hand_count(3, (128, 256, 512, 1024), 1024, 10)] == [4_350_410, 1_119_530, 17_226_890]


def test_conventions_of_the_iic_trunk():
    torch.manual_seed(0)
    net = build_model((32, 32, 3), 10)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.bias is None for m in convs)
    assert all(m.kernel_size == (5, 5) and m.padding == (2, 2) for m in convs)
    # Kaiming normal, fan-in, ReLU gain: std sqrt(2 / fan_in)
    w = convs[2].weight
    assert abs(w.std().item() / (2 / (64 * 25)) ** 0.5 - 1) < 0.05
    assert abs(net.head.weight.std().item() / 0.01 - 1) < 0.1 and not net.head.bias.any()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((m.weight == 1).all()) and not m.bias.any() for m in bns)


def test_same_seed_same_network_and_unknown_shapes_refused():
    torch.manual_seed(3)
    a = build_model((28, 28, 1), 10)
    torch.manual_seed(3)
    b = build_model((28, 28), 10)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert architecture_for((96, 96, 3)).name == "rgb96"
    with pytest.raises(ValueError, match="no Table 7 network"):
        architecture_for((8, 8))


def test_gradients_reach_every_parameter():
    net = build_model((28, 28), 4)
    net(torch.randn(3, 1, 28, 28)).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
