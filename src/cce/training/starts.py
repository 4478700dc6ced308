"""How a deep run's network starts: named options of every deep method (the ``start`` option).

The untrained Table 7 network predicts few classes: its trunk's ReLU features have a positive
mean, so the head adds an image-independent offset to every class's logit, and that offset
varies more across classes than the logits vary across images. Under L_CCE+ the gradient of
H2(y, sigma) on class k's logit scales with sigma_k (eq. 9), so a class the network starts
without gets little push even where the balanced pseudo-labels point to it, and it may
stay empty (config/README.md, "Empty classes and the network's start"; benchmarks/empty_classes.py).

==============  ===========================================================================
start           what it does
==============  ===========================================================================
plain           nothing: the network's own initialization (models.VGG4.reset_parameters)
balanced_bias   once, on the first training batch of a fresh run, the head's bias is shifted
                so that every class has the same mean logit over that batch (its views
                included); the weights and the trunk are untouched
==============  ===========================================================================

The shift is applied to the logits of that first forward pass too (logits - c equals the
output of the shifted head), so the first step already trains from the balanced start and no
extra forward pass moves batch norm's running statistics. A resumed run loads the shifted
bias from its checkpoint and never applies the start again.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["STARTS", "balance_head_bias", "check_start", "head_layer", "start_first_batch"]

STARTS = ("plain", "balanced_bias")


def check_start(start: str) -> str:
    if start not in STARTS:
        raise ValueError(f"start must be one of {', '.join(STARTS)}, got {start!r}")
    return start


def head_layer(model: nn.Module) -> nn.Linear:
    """The last linear layer (the one that gives the K logits) of a Table 7 network, ResNet-18 or the MLP.

    ``model`` may be wrapped in an ``nn.Sequential`` (the deep loop's Standardize + network).
    """
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ValueError(f"no linear layer in {type(model).__name__}: nothing gives the logits")
    return linear[-1]


@torch.no_grad()
def balance_head_bias(model: nn.Module, logits: Tensor) -> Tensor:
    """Shift the head's bias by c = m - mean(m), m the mean logit per class of ``logits`` (..., K).

    Returns c (K,). The head must have a bias (the Table 7 head and ResNet's fc do).
    """
    head = head_layer(model)
    if head.bias is None:
        raise ValueError("the balanced_bias start needs a head with a bias")
    m = logits.detach().reshape(-1, logits.shape[-1]).double().mean(0)
    shift = (m - m.mean()).to(head.bias.dtype)
    head.bias.sub_(shift.to(head.bias.device))
    return shift


def start_first_batch(start: str, model: nn.Module, logits: Tensor) -> Tensor:
    """The deep loop's hook, called once with the logits (..., K) of a fresh run's first training batch.

    Returns the logits the first step trains on: unchanged under ``plain``; under
    ``balanced_bias`` the head's bias is shifted (:func:`balance_head_bias`) and the same shift is
    taken off these logits, so they equal the shifted network's output (to rounding).
    """
    if check_start(start) == "plain":
        return logits
    shift = balance_head_bias(model, logits)
    return logits - shift.to(logits.dtype)
