"""Weakly-supervised classification (Section 5.3, Table 4) and training on noisy labels (Figure 2).

Both train a network from scratch with :func:`cce.training.deep.train_deep`, given per-image targets
(:class:`cce.training.deep.Supervision`), on a registry dataset's train split and report the test split.

Weak supervision (Table 4). A fraction of the training labels is kept per class
(:func:`labelled_subset`); the loss of a step is the mean cross-entropy H(onehot(c_i), sigma_i),
eq. (8), on labelled images plus the method's self-labeling loss on all images:
``seeds_only`` ("Only seeds": the labelled images alone), ``mi_d``, ``iic``, ``sela``,
``mi_adm``, ``cce_plus`` ("Our").

How a step mixes labelled and unlabelled images: every step takes a batch of
``batch_size`` images drawn from ALL training images (in a new random order every epoch;
they carry the self-labeling loss) and a second batch of ``labelled_batch_size`` labelled
images (default: ``batch_size``, at most the number of labelled images), which cycles
through fresh random permutations of the labelled set (they carry the cross-entropy term);
both go through one forward pass. A batch drawn at random from all images would hold few
labelled images when labels are scarce (at 1% of STL10, 50 of 5000 images: 1.6 per batch of
160 on average, none in about one batch of five), so the supervised term would be noisy and often absent; the
separate labelled batch gives every step a full supervised term of the same size at every
fraction, and cycling (rather than drawing with replacement) sees every labelled image equally
often within one, as semi-supervised codebases (FixMatch, MixMatch) do. An epoch is one
pass over all training images, the same number of steps for every method, "Only seeds"
included (which forwards only the labelled batch). At one seed and fraction the labelled
set and the sequence of labelled batches are the same for every method.

The paper says only "we use the standard cross-entropy loss for labeled data and directly add it
to the self-labeled loss" (Section 5.3), so how labelled images enter a step is an option,
``labelled_batch``: ``separate`` (above; the supervised term weighs the same at 1% of labels as
at 10%, 500 labels seen about 100 times an epoch at 1% of CIFAR10) or ``proportional``: the
labelled images are those that the batch of all images holds (each once an epoch, M/N of a batch
on average), their mean cross-entropy added to the self-labeling loss; a batch without one has
no supervised term.

Noisy labels (Figure 2). A fraction eta of the training images, per class, gets a random label
(:func:`corrupt_labels`; option ``noise``: ``random``, uniform over all K classes as the caption
says, or ``other``, uniform over the K - 1 other classes); every image is trained with the soft
target y_hat = eta * u + (1 - eta) * onehot(observed label) (:func:`soft_targets`) by Shannon's
cross-entropy H (eq. 8, ``shannon``) or the collision cross-entropy H2 (eq. 9, ``collision``),
which on these targets is forward loss correction for the uniform noise matrix, or with the
generalized cross-entropy L_q (``gce``, q = 0.7) on the observed label, and no self-labeling term.
The network is ResNet-18 (``network: resnet18``, :func:`cce.models.resnet18`), an MLP on pixels
(``mlp``, the CPU demo) or any Table 7 network.

Accuracy: the class of every output is known (it is trained on labels), so the main
metric, ``metrics["accuracy"]``, is the plain accuracy of the arg-max prediction against the
true test labels; ``metrics["hungarian_accuracy"]`` is the clustering accuracy (best
one-to-one map), beside NMI and ARI, for comparison with Tables 3 and 6.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..device import resolve_device
from ..models import NETWORKS
from ..provenance import run_record

from .deep import (
    DEEP_TRAINING_DEFAULTS, TARGET_LOSSES, DeepRunError, Supervision, fixed_subset, get_deep_method,
    subset_indices, train_deep_probs,
)
from .deep_methods import LABELLED_BATCHES

__all__ = [
    "NOISE_MODELS", "NOISY_DEFAULTS", "WEAK_DEFAULTS", "WEAK_METHODS", "check_noisy", "corrupt_labels",
    "labelled_subset", "noisy_options", "one_hot", "run_noisy", "run_weak", "soft_targets", "weak_options",
]

WEAK_METHODS = ("seeds_only", "mi_d", "iic", "sela", "mi_adm", "cce_plus")  # Table 4's rows
# Options beside those of the deep method (cce.training.deep.DEEP_TRAINING_DEFAULTS and the method's own).
WEAK_DEFAULTS: dict[str, Any] = {
    "network": "auto",  # auto (Table 7, as Table 4) | resnet18 | grey28 | rgb32 | rgb96
    "self_weight": 1.0,  # weight of the self-labeling loss; Table 4 adds it as is
    "labelled_batch_size": None,  # labelled images per step (labelled_batch: separate); None: batch_size
    "labelled_batch": "separate",  # separate | proportional: how labelled images enter a step (docstring)
    "max_eval_images": None,  # a fixed random subset of the test split (reduced runs); None: all
}
NOISY_DEFAULTS: dict[str, Any] = {
    "network": "resnet18",  # Figure 2's network
    "noise": "random",  # random: a label uniform over all K classes (the caption); other: over the K - 1 others
    "n_views": 1,  # plain supervised training: one augmented view per image and step
    "max_eval_images": None,
}
# Independent streams of one seed: the labelled subset and the label corruption.
_SUBSET_STREAM, _NOISE_STREAM = 101, 202


# ----------------------------------------------------------------------------
# Labelled subsets, label corruption, targets
# ----------------------------------------------------------------------------
def _per_class_count(n: int, fraction: float) -> int:
    # round half up, so that counts grow with the fraction (nesting) and 0.5 is not banker's-rounded
    return int(math.floor(fraction * n + 0.5))


def labelled_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the labelled images: round(fraction * n_c) of every class c, at least one.

    labels (N,) -> (M,) int64. Each class is ordered by one random permutation drawn from
    ``seed`` alone and the first images are kept, so subsets are nested across fractions
    (1% inside 5% inside 10%) and the same for every method at one seed.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), _SUBSET_STREAM])
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = members[rng.permutation(members.size)]
        keep.append(order[: max(1, _per_class_count(members.size, fraction))])
    return np.sort(np.concatenate(keep)).astype(np.int64)


NOISE_MODELS = ("random", "other")


def corrupt_labels(labels: np.ndarray, eta: float, n_classes: int, seed: int,
                   noise: str = "random") -> tuple[np.ndarray, np.ndarray]:
    """Replace the labels of round(eta * n_c) images of every class c by a random label.

    ``noise="random"`` (the caption of Figure 2: "replaced by a random label"): uniform over all K
    classes, so about 1/K of the replaced labels are the true one again; ``"other"``: uniform over
    the K - 1 other classes, so every replaced label is wrong.
    labels (N,) -> (observed (N,) int64, replaced (N,) bool). The replaced fraction of every class is
    eta within half an image; drawn from ``seed`` alone (the same images for both noise models).
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if n_classes < 2:
        raise ValueError("label noise needs at least two classes")
    if noise not in NOISE_MODELS:
        raise ValueError(f"noise must be one of {NOISE_MODELS}, got {noise!r}")
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng([int(seed), _NOISE_STREAM])
    corrupted = np.zeros(labels.shape, dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        corrupted[rng.choice(members, _per_class_count(members.size, eta), replace=False)] = True
    observed = labels.copy()
    n = int(corrupted.sum())
    if noise == "random":
        observed[corrupted] = rng.integers(0, n_classes, n)
    else:  # a shift of 1..K-1 classes: uniform over the K - 1 wrong labels
        observed[corrupted] = (labels[corrupted] + rng.integers(1, n_classes, n)) % n_classes
    return observed, corrupted


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """labels (N,) -> (N, K) float64 one-hot rows."""
    return np.eye(n_classes, dtype=np.float64)[np.asarray(labels, dtype=np.int64)]


def soft_targets(observed: np.ndarray, eta: float, n_classes: int) -> np.ndarray:
    """y_hat = eta * u + (1 - eta) * onehot(observed), u uniform over the K classes; (N,) -> (N, K).

    With these targets the collision cross-entropy is forward loss correction (Patrini et al. 2017)
    for the uniform noise matrix T = (1 - eta) I + (eta / K) 1 1^T: H2(y_hat, sigma) = -ln sum_k y_hat_k
    sigma_k = -ln((1 - eta) sigma_c + eta / K) = -ln (T^T sigma)_c, the cross-entropy of the observed
    label c under the noisy-label distribution T^T sigma the network implies. Its gradient is H's on
    the hard label c times (1 - eta) sigma_c / ((1 - eta) sigma_c + eta / K): 1 - eta at uniform
    predictions, near 0 where the network confidently contradicts c. Shannon's H(y_hat, sigma)
    instead pulls sigma towards y_hat itself (eq. 8).
    """
    return eta / n_classes + (1.0 - eta) * one_hot(observed, n_classes)


# ----------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------
def _split(method: str, options: dict[str, Any] | None, extra: dict[str, Any]) -> tuple[dict, dict]:
    """(options of the deep method, this module's options), both with defaults; unknown names refused.

    Keys of ``extra`` that are deep options (``n_views``) are this experiment's defaults for them.
    """
    options = dict(options or {})
    own_keys = [k for k in extra if k not in DEEP_TRAINING_DEFAULTS]
    own = {k: options.pop(k, extra[k]) for k in own_keys}
    if own.get("network", "auto") not in NETWORKS:  # refused here, before a run loads its data
        raise DeepRunError(f"unknown network {own['network']!r}; known: {', '.join(NETWORKS)}")
    deep_defaults = {k: v for k, v in extra.items() if k in DEEP_TRAINING_DEFAULTS}
    return get_deep_method(method).options({**deep_defaults, **options}), own


def weak_options(method: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """All options of a weak run: the deep method's and :data:`WEAK_DEFAULTS`, updated by ``options``."""
    if method not in WEAK_METHODS:
        raise DeepRunError(f"unknown weakly-supervised method {method!r}; known: {', '.join(WEAK_METHODS)}")
    deep_opts, own = _split(method, options, WEAK_DEFAULTS)
    if own["labelled_batch"] not in LABELLED_BATCHES:
        raise DeepRunError(f"option 'labelled_batch' must be one of {list(LABELLED_BATCHES)}, "
                           f"got {own['labelled_batch']!r}")
    return {**deep_opts, **own}


def noisy_options(options: dict[str, Any] | None = None) -> dict[str, Any]:
    """All options of a noisy-label run: the ``supervised`` method's and :data:`NOISY_DEFAULTS`."""
    deep_opts, own = _split("supervised", options, NOISY_DEFAULTS)
    if own["noise"] not in NOISE_MODELS:
        raise DeepRunError(f"option 'noise' must be one of {', '.join(NOISE_MODELS)}, got {own['noise']!r}")
    return {**deep_opts, **own}


def check_noisy(loss: str, eta: float) -> None:
    """Refuse a noisy-label run's loss (H ``shannon``, H2 ``collision``, L_q ``gce``) or eta outside [0, 1]."""
    if loss not in TARGET_LOSSES:
        raise DeepRunError(f"loss must be one of {TARGET_LOSSES}, got {loss!r}")
    if not 0.0 <= float(eta) <= 1.0:
        raise DeepRunError(f"eta must be in [0, 1], got {eta}")


def _train_test(dataset: str, root: Path | str, opts: dict[str, Any]):
    from .. import data

    dspec = data.get_spec(dataset)
    x_tr, y_tr = data.load(dataset, root, "train")
    x_te, y_te = data.load(dataset, root, "test")
    sizes = {"n_train_available": int(x_tr.shape[0]), "n_test_available": int(x_te.shape[0])}
    # reduced runs: fixed subsets of either split, the same for every method and seed
    x_tr, y_tr = fixed_subset(x_tr, y_tr, opts.get("max_images"))
    test_rows = subset_indices(len(x_te), opts.get("max_eval_images"))  # the predictions name them
    if test_rows.size < len(x_te):
        x_te, y_te = x_te[test_rows], y_te[test_rows]
    return dspec, x_tr, y_tr, x_te, y_te, sizes, test_rows


def _sha(indices: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(indices, dtype=np.int64).data).hexdigest()


def _train_and_record(experiment, dataset, root, method, seed, opts, own_defaults, split, sup, checkpoint,
                      stop_after_epoch, progress, config_name, predictions=None, **fields) -> dict[str, Any]:
    """Train ``method`` on the train part of ``split`` (from :func:`_train_test`) towards ``sup``, evaluate
    on its test part, and return the record with ``fields`` (fraction or eta, loss, ...) added. With
    ``predictions`` (a path), the class and confidence of every test image are saved there."""
    from ..predictions import head_confidence, make_predictions, save_predictions

    dspec, x_tr, _, x_te, y_te, sizes, test_rows = split
    deep_opts = {k: v for k, v in opts.items() if k not in own_defaults or k in DEEP_TRAINING_DEFAULTS}
    start = time.perf_counter()
    probs, info = train_deep_probs(x_tr, dspec.n_classes, method, seed, deep_opts, dataset=dataset,
                                   pixel_max=dspec.pixel_max, checkpoint=checkpoint,
                                   stop_after_epoch=stop_after_epoch, progress=progress, supervision=sup,
                                   network=opts["network"], eval_images=x_te, eval_labels=y_te)
    wall = time.perf_counter() - start
    saved = None
    if predictions is not None:
        saved = save_predictions(predictions, make_predictions(
            probs.argmax(-1), head_confidence(probs), source="test", labels=y_te,
            index=test_rows))
    # the last epoch's test scores, which train_deep computed from the same predictions
    curves = info["curves"]
    metrics = {k: curves[k][-1] for k in ("accuracy", "hungarian_accuracy", "nmi", "ari", "n_clusters_nonempty")}
    return run_record(
        experiment=experiment, dataset=dataset, method=method, seed=seed, metrics=metrics,
        n_clusters=dspec.n_classes, options=opts, info=info, wall_time_s=wall, config=config_name,
        packages=("kornia",), **fields,
        main_metric="accuracy",  # plain accuracy on the test split; hungarian_accuracy beside it
        data={"root": str(root), "n_train": int(x_tr.shape[0]), "n_test": int(x_te.shape[0]), **sizes,
              "image_shape": list(x_tr.shape[1:]), "sha256": info["data_sha256"]},
        checkpoint=str(checkpoint) if checkpoint is not None else None,
        predictions=saved,
    )


# ----------------------------------------------------------------------------
# Runs -> records
# ----------------------------------------------------------------------------
def run_weak(
    dataset: str,
    root: Path | str,
    method: str,
    seed: int,
    fraction: float,
    options: dict[str, Any] | None = None,
    experiment: str = "weak",
    config_name: str | None = None,
    checkpoint: Path | str | None = None,
    stop_after_epoch: int | None = None,
    progress: bool = True,
    predictions: Path | str | None = None,
) -> dict[str, Any]:
    """Table 4: ``method`` on the train split with ``fraction`` of its labels (per class); the record.

    The record: experiment, dataset, method, seed, fraction, loss (``shannon``: the labelled
    term is H, eq. 8), n_labelled, test metrics (``accuracy`` plain, ``hungarian_accuracy``,
    NMI, ARI), options, per-epoch test curves in ``info``, wall time, device, versions.
    """
    opts = weak_options(method, options)
    if not 0.0 < float(fraction) <= 1.0:
        raise DeepRunError(f"fraction must be in (0, 1], got {fraction}")
    resolve_device(opts["device"])  # before loading anything
    split = _train_test(dataset, root, opts)
    dspec, y_tr = split[0], split[2]
    lab = labelled_subset(y_tr, float(fraction), seed)
    mask = np.zeros(y_tr.shape[0], dtype=bool)
    mask[lab] = True
    sup = Supervision(one_hot(y_tr, dspec.n_classes), mask, "shannon", float(opts["self_weight"]),
                      opts["labelled_batch_size"], opts["labelled_batch"])
    return _train_and_record(experiment, dataset, root, method, seed, opts, WEAK_DEFAULTS, split, sup, checkpoint,
                             stop_after_epoch, progress, config_name, predictions, fraction=float(fraction),
                             loss="shannon", n_labelled=int(lab.size), labelled_sha256=_sha(lab))


def run_noisy(
    dataset: str,
    root: Path | str,
    loss: str,
    eta: float,
    seed: int,
    options: dict[str, Any] | None = None,
    experiment: str = "noisy",
    config_name: str | None = None,
    checkpoint: Path | str | None = None,
    stop_after_epoch: int | None = None,
    progress: bool = True,
    predictions: Path | str | None = None,
) -> dict[str, Any]:
    """Figure 2: train on all training images with eta of their labels replaced (option ``noise``), one loss.

    ``loss`` is ``shannon`` (H, eq. 8) or ``collision`` (H2, eq. 9) on the soft targets
    eta * u + (1 - eta) * onehot(observed), or ``gce`` (L_q, q = 0.7) on the observed label itself
    (one-hot, as Zhang and Sabuncu train it). The record: experiment, dataset, method
    (``supervised``), seed, eta, loss, noise, n_labelled (all training images), n_corrupted (labels
    replaced), n_wrong (observed label not the true one), test metrics, options, curves (per epoch),
    wall time, device, versions.
    """
    check_noisy(loss, eta)
    opts = noisy_options(options)
    resolve_device(opts["device"])  # before loading anything
    split = _train_test(dataset, root, opts)
    dspec, y_tr = split[0], split[2]
    observed, corrupted = corrupt_labels(y_tr, float(eta), dspec.n_classes, seed, opts["noise"])
    targets = (one_hot(observed, dspec.n_classes) if loss == "gce"
               else soft_targets(observed, float(eta), dspec.n_classes))
    sup = Supervision(targets, None, loss, 0.0)
    return _train_and_record(experiment, dataset, root, "supervised", seed, opts, NOISY_DEFAULTS, split, sup,
                             checkpoint, stop_after_epoch, progress, config_name, predictions, eta=float(eta),
                             loss=loss, noise=opts["noise"], n_labelled=int(y_tr.shape[0]),
                             n_corrupted=int(corrupted.sum()), n_wrong=int((observed != y_tr).sum()),
                             corrupted_sha256=_sha(np.flatnonzero(corrupted)),
                             observed_labels_sha256=_sha(observed))
