"""The deep methods of Tables 3 and 6 (and the targets-only ones of Table 4 and Figure 2): for each,
its loss and pseudo-label step, and the options of a network trained from scratch (Appendix F).

==========  =====================================================  ==========================
method      loss                                                   pseudo-labels
==========  =====================================================  ==========================
mi_d        MI-D [14]: mean H(sigma_i) - H(mean sigma), eq. (1)    none
iic         IIC [16]: -I of the two views' joint distribution      none
sela        SeLa [1]: mean H(y, sigma), eq. (4)                    Sinkhorn, whole data set
mi_adm      MI-ADM [15]: eq. (5)                                   per batch
cce         L_CCE, eq. (10)                                        PGD, per batch
cce_plus    L_CCE+, eq. (11) ("Our" of Table 3)                    EM, per batch (Algorithm 1)
==========  =====================================================  ==========================

``seeds_only`` and ``supervised`` train on targets alone (:class:`Supervision`): Table 4's
"Only seeds" and Figure 2's noisy labels. :func:`batch_loss` is one training step's loss.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from torch import Tensor

from .. import losses
from ..methods import Method, get_method, invalid_choice
from .starts import STARTS

__all__ = [
    "DEEP_CHOICES", "DEEP_METHODS", "DEEP_TRAINING_DEFAULTS", "DeepMethod", "DeepRunError", "LABELLED_BATCHES",
    "MI_WEIGHTS", "SUPERVISED_METHODS", "Supervision", "TARGET_LOSSES", "batch_loss", "get_deep_method", "target_loss",
]

# Appendix F, deep setting, plus the options of the self-augmentation and the device.
DEEP_TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 50,
    "batch_size": 250,  # 160 for STL10 (Appendix F)
    "lr": 1e-4,  # Adam
    "weight_decay": 0.0,
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "precision": "float32",  # float32 | bf16 (autocast of the network only; losses and solvers stay float32/64)
    "n_views": 2,  # augmented views per image, sigma_i = their mean softmax
    "rotation": 25.0,  # degrees, 0 disables
    "flip": "auto",  # true | false | auto (no flip for digits: mnist, digits)
    "color": "auto",  # true | false | auto (RGB images only)
    "augment": "compose",  # compose: every transform in sequence | sample_one: one per view (cce.data.augment)
    "max_images": None,  # a fixed random subset of this size (reduced runs); None: all images
    "eval_batch_size": 1000,
    "start": "plain",  # plain | balanced_bias: the network's start (cce.training.starts)
}
# Options of the linear-head training of cce.methods that the deep loop replaces.
_HEAD_ONLY = ("lr", "momentum", "weight_decay", "preprocess")
# MI-D's weights (decisiveness, fairness): mean H(sigma_i) - w_f H(mean sigma) as w_d, w_f. "unit" is eq. (1)
# as written; "imsat" is IMSAT's published code [14] (imsat_cluster.py: VAT + 0.1 (H(Y|X) - 4 H(Y)), the
# fairness term four times the decisiveness term; its 0.1 only weighs both against VAT, which is not
# here: the two views' mixture sigma_i is the consistency device the paper gives every method alike).
MI_WEIGHTS: dict[str, tuple[float, float]] = {"unit": (1.0, 1.0), "imsat": (1.0, 4.0)}
# Options of the deep loop with a fixed set of values (checked by DeepMethod.options).
DEEP_CHOICES: dict[str, tuple] = {
    "augment": ("compose", "sample_one"),
    "mi_weights": tuple(MI_WEIGHTS),
    "label_input": ("eval", "augmented"),
    "start": STARTS,
}


class DeepRunError(Exception):
    """A run that cannot start as asked (unknown method or option, no network for the images, ...)."""



@dataclass(frozen=True)
class DeepMethod:
    """One row of Table 3: either a method of :mod:`cce.methods` (pseudo-labels) or a loss on the views."""

    name: str
    title: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    base: Method | None = None  # pseudo-label step and network loss
    view_loss: Callable[[Tensor, dict[str, Any]], Tensor] | None = None  # (view logits (V, B, K), state)

    @property
    def label_scope(self) -> str | None:
        return self.base.label_scope if self.base is not None else None

    def options(self, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The method's defaults updated by ``options``; unknown names are an error."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise DeepRunError(f"deep method {self.name!r} has no option(s) {unknown}; "
                               f"allowed: {sorted(self.defaults)}")
        bad = invalid_choice(DEEP_CHOICES, options) or (
            invalid_choice(self.base.choices, options) if self.base is not None else None)
        for name in ("label_every", "label_updates"):
            value = options.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                bad = bad or f"option {name!r} must be a positive integer{' or null' * (name == 'label_updates')}, " \
                             f"got {value!r}"
        if bad:
            raise DeepRunError(f"deep method {self.name!r}: {bad}")
        return {**self.defaults, **options}

    def make_state(self, options: dict[str, Any], batch_size: int) -> dict[str, Any]:
        if self.base is not None:
            return self.base.make_state(options, batch_size)
        return dict(options)


def _mi_d(view_logits: Tensor, state: dict[str, Any]) -> Tensor:
    decisiveness, fairness = MI_WEIGHTS[state["mi_weights"]]
    # w_d (mean H(sigma_i) - (w_f / w_d) H(mean sigma)): the same minimizer; Adam's steps do not see w_d
    return decisiveness * losses.mi_d_loss(view_logits, fairness / decisiveness)


def _iic(view_logits: Tensor, state: dict[str, Any]) -> Tensor:
    # IIC pairs two views; with more, the mean over all pairs.
    V = view_logits.shape[0]
    pairs = [(s, t) for s in range(V) for t in range(s + 1, V)]
    return sum(losses.iic_loss(view_logits[s], view_logits[t], state["lamb"]) for s, t in pairs) / len(pairs)


def _from_base(name: str, title: str, extra: dict[str, Any] | None = None) -> DeepMethod:
    base = get_method(name)
    label_options = {k: v for k, v in base.defaults.items() if k not in _HEAD_ONLY and k not in DEEP_TRAINING_DEFAULTS}
    return DeepMethod(name, title, base.description + " Deep: on view-averaged predictions sigma_i.",
                      defaults={**DEEP_TRAINING_DEFAULTS, **label_options, **(extra or {})}, base=base)


DEEP_METHODS: dict[str, DeepMethod] = {
    m.name: m
    for m in (
        DeepMethod("mi_d", "MI-D",
                   "IMSAT [14]: the MI loss of eq. (1) on view-averaged predictions, minimized by Adam; "
                   "mi_weights: unit is eq. (1) as written, imsat the fairness term four times the "
                   "decisiveness term as in IMSAT's published code (MI_WEIGHTS).",
                   defaults={**DEEP_TRAINING_DEFAULTS, "mi_weights": "unit"}, view_loss=_mi_d),
        DeepMethod("iic", "IIC",
                   "IIC [16]: minus the mutual information of the symmetrized joint distribution of two "
                   "views' predictions; lamb = 1 as in IIC.",
                   defaults={**DEEP_TRAINING_DEFAULTS, "lamb": 1.0}, view_loss=_iic),
        # SeLa's labels of the whole data set (cce.training.deep._relabel_all): every `label_every` epochs
        # at the epoch's start, or `label_updates` times spread evenly over the run's steps (SeLa's
        # published cifar.py: `nopts`); from the un-augmented images in eval mode (`label_input: eval`)
        # or through the training augmentation in train mode as cifar.py does (`augmented`).
        _from_base("sela", "SeLa", {"label_every": 1, "label_updates": None, "label_input": "eval"}),
        _from_base("mi_adm", "MI-ADM"),
        _from_base("cce", "CCE (L_CCE)"),
        _from_base("cce_plus", "Our"),
    )
}


# ----------------------------------------------------------------------------
# Targets: weak supervision (Table 4) and noisy labels (Figure 2), used by cce.training.weak
# ----------------------------------------------------------------------------
# Methods without a self-labeling term: they train on the targets alone and need a Supervision.
SUPERVISED_METHODS: dict[str, DeepMethod] = {
    m.name: m
    for m in (
        DeepMethod("seeds_only", "Only seeds", "Table 4's \"Only seeds\": cross-entropy on the labelled images only.",
                   defaults=dict(DEEP_TRAINING_DEFAULTS)),
        DeepMethod("supervised", "Supervised", "Every image's target (noisy labels, Figure 2); no self-labeling.",
                   defaults=dict(DEEP_TRAINING_DEFAULTS)),
    )
}
# H (eq. 8), H2 (eq. 9), and the generalized cross-entropy L_q of Zhang and Sabuncu (2018) at their q = 0.7,
# the bounded loss for noisy labels that Figure 2 places beside H2
TARGET_LOSSES = ("shannon", "collision", "gce")
GCE_Q = 0.7
LABELLED_BATCHES = ("separate", "proportional")


@dataclass(frozen=True)
class Supervision:
    """Per-image targets for :func:`train_deep`: targets (N, K) rows on the simplex, mask (N,) bool or None (all)."""

    targets: np.ndarray
    mask: np.ndarray | None = None
    loss: str = "shannon"  # shannon: H, eq. (8); collision: H2, eq. (9)
    self_weight: float = 1.0  # weight of the method's self-labeling loss (Table 4 adds it as is)
    batch_size: int | None = None  # labelled images per step; None: the method's batch_size
    # how labelled images enter a step when only some images have targets: "separate" (a labelled batch of
    # batch_size beside the batch of all images) or "proportional" (those of the batch of all images)
    labelled_batch: str = "separate"

    def fingerprint(self) -> dict[str, Any]:
        h = hashlib.sha256(np.ascontiguousarray(self.targets, dtype=np.float64).data)
        if self.mask is not None:
            h.update(np.ascontiguousarray(self.mask, dtype=bool).data)
        out = {"targets": h.hexdigest(), "loss": self.loss, "self_weight": float(self.self_weight),
               "batch_size": self.batch_size}
        if self.labelled_batch != "separate":  # older checkpoints, all "separate", keep their identity
            out["labelled_batch"] = self.labelled_batch
        return out


def target_loss(view_logits: Tensor, targets: Tensor, loss: str = "shannon") -> Tensor:
    """Mean over V views and L images of H(y_i, sigma(t(X_i))), eq. (8), H2, eq. (9), or L_q (``gce``,
    q = :data:`GCE_Q`, :func:`cce.losses.generalized_cross_entropy_with_logits`), in log space.

    view_logits (V, L, K), targets (L, K) -> scalar. For one-hot targets H and H2 are the usual cross-entropy.
    """
    fn = {"shannon": losses.shannon_cross_entropy_with_logits,
          "collision": losses.collision_cross_entropy_with_logits,
          "gce": lambda y, logits: losses.generalized_cross_entropy_with_logits(y, logits, GCE_Q)}[loss]
    return fn(targets.to(view_logits.dtype).unsqueeze(0), view_logits).mean()


def batch_loss(spec: DeepMethod, state: dict[str, Any], view_logits: Tensor | None, y: Tensor | None = None,
               target_logits: Tensor | None = None, targets: Tensor | None = None, loss: str = "shannon",
               self_weight: float = 1.0, mixture: Tensor | None = None) -> Tensor:
    """One step's loss: target_loss(target_logits (V, L, K), targets (L, K)) + self_weight * self-labeling loss.

    The self-labeling loss is the method's on the batch of all images, view_logits (V, B, K), with
    its pseudo-labels ``y`` (B, K) where it has them; targets-only methods and ``self_weight = 0`` skip it.
    ``mixture``: :func:`cce.losses.view_mixture_logits` of view_logits, when the caller has it already.
    """
    total = target_loss(target_logits, targets, loss) if targets is not None else None
    if spec.name in SUPERVISED_METHODS or not self_weight:
        if total is None:
            raise DeepRunError(f"method {spec.name!r} without a self-labeling term needs targets")
        return total
    if spec.base is None:
        own = spec.view_loss(view_logits, state)
    else:
        if mixture is None:
            mixture = losses.view_mixture_logits(view_logits)
        own = spec.base.network_loss(mixture, y, state)
    return own if total is None else total + self_weight * own



def get_deep_method(name: str) -> DeepMethod:
    if name in SUPERVISED_METHODS:
        return SUPERVISED_METHODS[name]
    try:
        return DEEP_METHODS[name]
    except KeyError:
        raise DeepRunError(f"unknown deep method {name!r}; known: "
                           f"{', '.join([*DEEP_METHODS, *SUPERVISED_METHODS])}") from None

