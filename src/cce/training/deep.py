"""Deep self-labeled classification (Section 5.2, Tables 3 and 6): a Table 7 network trained from scratch.

One loop serves every method. Per batch of images (uint8, kept on the device):

1. two random views of every image (:class:`cce.data.augment.SelfAugmentation`);
2. one forward pass of both views; sigma_i = E_t[sigma(t(X_i))] is their mean softmax,
   carried in log space by :func:`cce.losses.view_mixture_logits`;
3. methods with pseudo-labels (SeLa, MI-ADM, CCE, Ours) take y from their solver in
   :mod:`cce.methods` (``Method.label_step`` on the detached sigma, per batch as in
   Algorithm 1, or on the whole data set for SeLa) and train with ``Method.network_loss``
   (the same losses as the linear head of Table 2); MI-D and IIC have their own losses
   (:func:`cce.losses.mi_d_loss`, :func:`cce.losses.iic_loss`) on the views;
4. one Adam step (Appendix F: lr 1e-4, batch 250, 160 for STL10, 50 epochs).

The methods, their losses and options are in :mod:`cce.training.deep_methods`; checkpoints in
:mod:`cce.training.checkpoints`.


After every epoch the predictions on the un-augmented images (batch norm in eval mode)
give the curves (loss, accuracy, NMI, ARI, clusters used), and a checkpoint is written
atomically: model, optimizer, every RNG state, the epoch, curves and timings. A run started
again with the same checkpoint path resumes after the last finished epoch and, on the
same device and thread count, ends with the same curves, metrics and weights as a run
that was never interrupted (on CUDA, cuDNN's non-deterministic kernels may make them differ
by round-off).

Targets (weak supervision, noisy labels; used by :mod:`cce.training.weak`): with a
:class:`Supervision`, images that carry a target distribution y_i (N, K) add the mean
H(y_i, sigma(t(X_i))) (eq. 8, ``shannon``) or H2 (eq. 9, ``collision``) over their views to
``self_weight`` times the method's self-labeling loss. When only some images carry targets,
every step draws two batches: ``batch_size`` images of all images (the self-labeling loss),
in the epoch's random order as above, and ``batch_size`` (or ``Supervision.batch_size``) of
the labelled images, cycled through fresh random permutations of the labelled set, so each
labelled image is seen equally often (within one) and every step has a full supervised
batch even when the labelled set is tiny. Both go through one forward pass. When every image
carries a target, the batch of all images is the supervised batch. The targets-only methods
(``seeds_only``, ``supervised``) skip the self-labeling term and never forward the
unlabelled batch. ``network`` picks the network (``auto``: Table 7; ``resnet18``); with
``eval_images`` the curves and predictions are those of that separate set (the test split).
"""


from __future__ import annotations

import contextlib
import hashlib
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import losses
from ..data.augment import SelfAugmentation
from ..device import DeviceUnavailableError, resolve_device
from ..models import NETWORKS, architecture_for, build_network, network_name
from ..provenance import run_record
from .checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .deep_methods import (
    DEEP_METHODS, DEEP_TRAINING_DEFAULTS, SUPERVISED_METHODS, TARGET_LOSSES, DeepMethod, DeepRunError, Supervision,
    batch_loss, get_deep_method, target_loss,
)

__all__ = [
    "DEEP_METHODS", "DEEP_TRAINING_DEFAULTS", "DeepMethod", "DeepRunError", "DeviceUnavailableError",
    "SUPERVISED_METHODS", "Supervision", "TARGET_LOSSES", "TrainingStopped", "batch_loss", "fixed_subset",
    "get_deep_method", "load_checkpoint", "run_deep", "target_loss", "train_deep",
]

CHECKPOINT_FORMAT = 1
# The images of a `max_images` subset are drawn with this seed, whatever the run's seed,
# so that every method and seed of a reduced experiment sees the same images.
SUBSET_SEED = 0
_NO_FLIP = ("mnist", "digits")


class TrainingStopped(Exception):
    """Raised by ``stop_after_epoch``: the run stopped on purpose after a checkpoint."""

    def __init__(self, epoch: int, checkpoint: Path | None):
        super().__init__(f"stopped after epoch {epoch}" + (f"; checkpoint {checkpoint}" if checkpoint else ""))
        self.epoch = epoch
        self.checkpoint = checkpoint


def fixed_subset(images: np.ndarray, labels: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` of the images (N, ...) and labels (N,), drawn with :data:`SUBSET_SEED` (the same for every
    method and seed of a reduced experiment), in their original order; all of them when ``n`` is None."""
    if n is None or int(n) >= images.shape[0]:
        return images, labels
    keep = np.sort(np.random.default_rng(SUBSET_SEED).choice(images.shape[0], int(n), replace=False))
    return images[keep], labels[keep]




# ----------------------------------------------------------------------------
# Device, data on the device, model
# ----------------------------------------------------------------------------
class Standardize(nn.Module):
    """(x - mean_c) / std_c per channel with the data set's statistics, as the network's first step."""

    def __init__(self, mean: Tensor, std: Tensor):
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).to(torch.float32))
        self.register_buffer("std", std.reshape(1, -1, 1, 1).to(torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def _channels_first(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) -> (N, C, H, W), uint8."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        return images.transpose(0, 3, 1, 2)
    raise DeepRunError(f"images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")


def _channel_stats(images: Tensor, pixel_max: float, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Mean and std per channel of uint8 images (N, C, H, W) scaled to [0, 1], in float64."""
    C = images.shape[1]
    s = torch.zeros(C, dtype=torch.float64, device=images.device)
    s2 = torch.zeros_like(s)
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].to(torch.float64) / pixel_max
        s += x.sum((0, 2, 3))
        s2 += (x * x).sum((0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = s / n
    std = (s2 / n - mean * mean).clamp(min=1e-12).sqrt()
    return mean, std


def data_fingerprint(images: np.ndarray, labels: np.ndarray | None) -> str:
    h = hashlib.sha256()
    h.update(str(images.shape).encode())
    h.update(np.ascontiguousarray(images).data)
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    return h.hexdigest()


def _amp(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def predict_probs(model: nn.Module, images: Tensor, aug: SelfAugmentation, batch_size: int,
                  precision: str = "float32") -> Tensor:
    """softmax of the network on un-augmented uint8 images (N, C, H, W) -> (N, K) float32, eval mode."""
    model.eval()
    out = []
    with torch.inference_mode(), _amp(images.device, precision):
        for i in range(0, images.shape[0], batch_size):
            out.append(torch.softmax(model(aug.to_unit(images[i : i + batch_size])).float(), -1))
    model.train()
    return torch.cat(out)


# ----------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------
def _resolve_auto(options: dict[str, Any], dataset: str | None, channels: int) -> dict[str, bool]:
    flip = options["flip"]
    if flip == "auto":
        flip = dataset not in _NO_FLIP
    color = options["color"]
    if color == "auto":
        color = channels == 3
    if not isinstance(flip, bool) or not isinstance(color, bool):
        raise DeepRunError(f"flip and color must be true, false or 'auto', got {options['flip']!r}, "
                           f"{options['color']!r}")
    return {"flip": flip, "color": color}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seeds(seed: int) -> tuple[int, int]:
    # independent streams for the data order and the augmentation
    order_seed, aug_seed = np.random.SeedSequence(seed).generate_state(2, dtype=np.uint64)
    return int(order_seed) >> 1, int(aug_seed) >> 1


def train_deep(
    images: np.ndarray,
    n_clusters: int,
    method: str,
    seed: int,
    options: dict[str, Any] | None = None,
    y_true: np.ndarray | None = None,
    *,
    dataset: str | None = None,
    pixel_max: float = 255.0,
    checkpoint: Path | str | None = None,
    stop_after_epoch: int | None = None,
    progress: bool = True,
    supervision: Supervision | None = None,
    network: str = "auto",
    eval_images: np.ndarray | None = None,
    eval_labels: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train the Table 7 network for ``images`` (N, H, W) or (N, H, W, C) uint8 with a deep method.

    ``options`` update the method's defaults (:data:`DEEP_METHODS`); ``y_true`` (N,) is used
    only for the per-epoch curves, never for training; ``dataset`` decides ``flip: auto``.
    With ``checkpoint``, the state after every epoch is saved there and an existing
    compatible checkpoint is resumed; ``stop_after_epoch`` raises :class:`TrainingStopped`
    after that epoch's checkpoint (to test and demonstrate a resume).
    ``supervision`` adds per-image targets (see the module docstring), ``network`` is
    ``auto | resnet18 | grey28 | rgb32 | rgb96``; with ``eval_images`` (M, ...) and
    ``eval_labels`` (M,) the curves and the returned predictions are of that set.
    Returns the cluster of every image (N,), or of every evaluation image (M,), and an
    info dict (curves, timing, device).
    """
    from ..metrics import clustering_scores

    spec = get_deep_method(method)
    opts = spec.options(options)
    device = resolve_device(opts["device"])
    if opts["precision"] not in ("float32", "bf16"):
        raise DeepRunError(f"precision must be 'float32' or 'bf16', got {opts['precision']!r}")
    if int(opts["n_views"]) < 1 or (spec.name == "iic" and int(opts["n_views"]) < 2):
        raise DeepRunError(f"n_views must be >= 1 (>= 2 for iic), got {opts['n_views']}")
    if images.dtype != np.uint8:
        raise DeepRunError(f"images must be uint8, got {images.dtype}")
    arch_shape = images.shape[1:]
    if network not in NETWORKS:
        raise DeepRunError(f"unknown network {network!r}; known: {', '.join(NETWORKS)}")
    try:
        if network != "resnet18":
            architecture_for(arch_shape)
    except ValueError as err:
        raise DeepRunError(str(err)) from None
    sup = _check_supervision(spec, supervision, images.shape[0], n_clusters)
    if eval_images is not None and (eval_images.shape[1:] != arch_shape or eval_images.dtype != np.uint8):
        raise DeepRunError(f"eval_images must be uint8 of shape (M, {', '.join(map(str, arch_shape))}), "
                           f"got {eval_images.dtype} {eval_images.shape}")

    X_np = np.ascontiguousarray(_channels_first(images))
    N, C = X_np.shape[:2]
    fingerprint = data_fingerprint(images, y_true)
    auto = _resolve_auto(opts, dataset, C)
    aug = SelfAugmentation(C, flip=auto["flip"], rotation=float(opts["rotation"]), color=auto["color"],
                           pixel_max=pixel_max)
    X = torch.from_numpy(X_np).to(device)  # uint8 on the device: 47 MB for MNIST, 184 MB for CIFAR10
    batch_size = min(int(opts["batch_size"]), N)
    V = int(opts["n_views"])

    torch.manual_seed(seed)
    mean, std = _channel_stats(X, pixel_max)
    try:
        net = build_network(network, arch_shape, n_clusters)
    except ValueError as err:
        raise DeepRunError(str(err)) from None
    model = nn.Sequential(Standardize(mean, std), net).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"])
    state = spec.make_state(opts, batch_size)
    order_seed, aug_seed = _seeds(seed)
    generators = {"order": torch.Generator().manual_seed(order_seed),
                  "augment": torch.Generator().manual_seed(aug_seed)}

    identity = {"method": spec.name, "seed": int(seed), "n_clusters": int(n_clusters), "data": fingerprint,
                "options": {k: v for k, v in opts.items() if k != "device"}}
    # --- targets, network, evaluation set (only in the identity when used: old checkpoints stay valid)
    EX, Ey = X, y_true
    labelled, L = None, 0  # indices of the images with targets when only some have them; per step
    if eval_images is not None:
        EX = torch.from_numpy(np.ascontiguousarray(_channels_first(eval_images))).to(device)
        Ey = eval_labels
        identity["eval_data"] = data_fingerprint(eval_images, eval_labels)
    if network != "auto":
        identity["network"] = network
    if sup is not None:
        identity["supervision"] = sup.fingerprint()
        T = torch.from_numpy(np.asarray(sup.targets, dtype=np.float32)).to(device)
        if sup.mask is not None:
            labelled = torch.from_numpy(np.flatnonzero(sup.mask)).to(device)
            L = min(int(sup.batch_size or opts["batch_size"]), labelled.numel())
        # the labelled stream's own generator: "seeds_only" and the self-labeling methods see the same
        # labelled batches at one seed; seeded from the data order's seed, shifted
        generators["labelled"] = torch.Generator().manual_seed(order_seed ^ 0x5EED)
    own_term = spec.name not in SUPERVISED_METHODS and (sup is None or sup.self_weight != 0)
    # ---
    curves: dict[str, list] = {"epoch": [], "loss": [], "label_iterations": [], "n_clusters_nonempty": []}
    if Ey is not None:
        curves.update(accuracy=[], nmi=[], ari=[])
        if sup is not None:
            curves["hungarian_accuracy"] = []
    timing: dict[str, list] = {"epoch_s": [], "augment_s": [], "label_s": [], "network_s": [], "eval_s": []}
    start_epoch, train_time, resumed_at = 0, 0.0, []
    y_all: Tensor | None = None

    if checkpoint is not None and Path(checkpoint).is_file():
        # on the CPU first: load_state_dict moves each tensor to its parameter's device (Adam's
        # step counters stay on the CPU, as Adam expects), the RNG states must be CPU tensors
        ck = load_checkpoint(checkpoint)
        if ck.get("format") != CHECKPOINT_FORMAT or ck.get("identity") != identity:
            print(f"checkpoint {checkpoint} belongs to another run (method, seed, options or data differ); "
                  "starting from scratch", file=sys.stderr)
        else:
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            set_rng_state(ck["rng"], generators)
            curves, timing = ck["curves"], ck["timing"]
            start_epoch, train_time = int(ck["epoch"]), float(ck["train_time_s"])
            resumed_at = list(ck["resumed_at"]) + [start_epoch]
            y_all = ck["y_all"].to(device) if ck["y_all"] is not None else None
            if progress:
                print(f"resuming {spec.name} seed {seed} from {checkpoint} after epoch {start_epoch}",
                      file=sys.stderr, flush=True)

    probs: Tensor | None = None  # predictions of the current model on all images, when known
    eval_probs: Tensor | None = None  # on the evaluation images, after the last epoch that ran
    n_steps = sum(1 for i in range(0, N, batch_size) if min(batch_size, N - i) >= 2)  # steps per epoch
    amp = _amp(device, opts["precision"])
    label_every = int(opts.get("label_every", 1))
    model.train()
    for epoch in range(start_epoch, opts["epochs"]):
        _sync(device)
        t_epoch = time.perf_counter()
        t_aug = t_label = 0.0
        if spec.label_scope == "epoch" and (y_all is None or epoch % label_every == 0):
            t0 = time.perf_counter()
            if probs is None:
                probs = predict_probs(model, X, aug, int(opts["eval_batch_size"]), opts["precision"])
            y_all, _ = spec.base.label_step(probs, state)
            _sync(device)
            t_label += time.perf_counter() - t0
        order = torch.randperm(N, generator=generators["order"]).to(device)
        if sup is not None and labelled is not None:
            # the epoch's labelled batches: fresh permutations of the labelled set, back to back
            n_perm = -(-n_steps * L // labelled.numel())
            lab_order = torch.cat([torch.randperm(labelled.numel(), generator=generators["labelled"])
                                   for _ in range(n_perm)]).to(device)
        batch_losses, label_iters = [], []
        for step, i in enumerate(range(0, N, batch_size)):
            idx = order[i : i + batch_size]
            B = idx.numel()
            if B < 2:  # a lone image cannot express fairness
                continue
            lab = None if sup is None else idx if labelled is None else labelled[lab_order[step * L:(step + 1) * L]]
            # one forward pass: the batch of all images (unless no term uses it), then a separate labelled one
            parts = ([idx] if own_term or labelled is None else []) + ([lab] if labelled is not None else [])
            sizes = [p.numel() for p in parts]
            t0 = time.perf_counter()
            views = aug(X[torch.cat(parts)], generators["augment"], V)
            _sync(device)
            t_aug += time.perf_counter() - t0
            with amp:
                logits = model(views)
            all_logits = logits.float().view(V, sum(sizes), n_clusters)
            view_logits = all_logits[:, : sizes[0]] if own_term or labelled is None else None
            target_logits = None if sup is None else all_logits[:, -sizes[-1]:]
            y = mixture = None
            if own_term and spec.base is not None:
                if spec.label_scope == "batch":
                    t0 = time.perf_counter()
                    mixture = losses.view_mixture_logits(view_logits)  # the labels' and the loss's sigma
                    y, label_info = spec.base.label_step(mixture.detach().exp(), state)
                    _sync(device)
                    t_label += time.perf_counter() - t0
                    label_iters.append(label_info.get("iterations", 0))
                else:
                    y = y_all[idx]
            loss = batch_loss(spec, state, view_logits, y, target_logits, None if sup is None else T[lab],
                              "shannon" if sup is None else sup.loss, 1.0 if sup is None else sup.self_weight,
                              mixture=mixture)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            batch_losses.append(loss.detach())
        _sync(device)
        t_train = time.perf_counter() - t_epoch

        t0 = time.perf_counter()
        eval_probs = predict_probs(model, EX, aug, int(opts["eval_batch_size"]), opts["precision"])
        probs = eval_probs if eval_images is None else None  # SeLa's labels need the training images'
        pred = eval_probs.argmax(-1).cpu().numpy()
        t_eval = time.perf_counter() - t0
        curves["epoch"].append(epoch + 1)
        curves["loss"].append(float(torch.stack(batch_losses).double().mean()) if batch_losses else math.nan)
        curves["label_iterations"].append(float(np.mean(label_iters)) if label_iters else 0.0)
        curves["n_clusters_nonempty"].append(int(np.unique(pred).size))
        if Ey is not None:
            scores = clustering_scores(Ey, pred)
            if sup is not None:  # trained on labels: the classes are known, accuracy needs no matching
                scores = {**scores, "hungarian_accuracy": scores["accuracy"],
                          "accuracy": float(np.mean(pred == np.asarray(Ey)))}
                curves["hungarian_accuracy"].append(scores["hungarian_accuracy"])
            for key in ("accuracy", "nmi", "ari"):
                curves[key].append(scores[key])
        timing["epoch_s"].append(t_train + t_eval)
        timing["augment_s"].append(t_aug)
        timing["label_s"].append(t_label)
        timing["network_s"].append(t_train - t_aug - t_label)
        timing["eval_s"].append(t_eval)
        train_time += t_train + t_eval
        if progress:
            line = (f"{spec.name} seed {seed} epoch {epoch + 1}/{opts['epochs']} loss {curves['loss'][-1]:.4f} "
                    f"clusters {curves['n_clusters_nonempty'][-1]}")
            if Ey is not None:
                line += f" acc {curves['accuracy'][-1]:.4f}"
            line += (f" {t_train + t_eval:.1f} s (augment {t_aug:.1f}, labels {t_label:.1f}, "
                     f"network {t_train - t_aug - t_label:.1f}, eval {t_eval:.1f})")
            print(line, file=sys.stderr, flush=True)
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "identity": identity, "epoch": epoch + 1,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": rng_state(generators), "curves": curves, "timing": timing,
                "y_all": y_all.cpu() if y_all is not None else None,
                "train_time_s": train_time, "resumed_at": resumed_at,
            })
        if stop_after_epoch is not None and epoch + 1 == stop_after_epoch and epoch + 1 < opts["epochs"]:
            raise TrainingStopped(epoch + 1, Path(checkpoint) if checkpoint is not None else None)

    if eval_probs is None:  # resumed from a finished checkpoint: no epoch ran here
        eval_probs = predict_probs(model, EX, aug, int(opts["eval_batch_size"]), opts["precision"])
    pred = eval_probs.argmax(-1).cpu().numpy()
    info = {
        "device": str(device),
        "precision": opts["precision"],
        "torch_threads": torch.get_num_threads(),
        "curves": curves,
        "timing": timing,
        "losses": {"network_loss": curves["loss"][-1] if curves["loss"] else math.nan},
        "train_time_s": train_time,
        "resumed_at_epochs": resumed_at,
        "lam_effective": state.get("lam"),
        "augmentation": aug.settings,
        "architecture": network_name(model[1]),
        "data_sha256": fingerprint,
    }
    return pred, info


def _check_supervision(spec: DeepMethod, sup: Supervision | None, N: int, K: int) -> Supervision | None:
    if sup is None:
        if spec.name in SUPERVISED_METHODS:
            raise DeepRunError(f"method {spec.name!r} trains on targets only: give a Supervision")
        return None
    if sup.loss not in TARGET_LOSSES:
        raise DeepRunError(f"target loss must be one of {TARGET_LOSSES}, got {sup.loss!r}")
    t = np.asarray(sup.targets)
    if t.shape != (N, K) or not np.all(t >= 0) or not np.allclose(t.sum(1), 1.0, atol=1e-5):
        raise DeepRunError(f"targets must be (N, K) = ({N}, {K}) rows on the simplex, got shape {t.shape}")
    if sup.batch_size is not None and int(sup.batch_size) < 1:
        raise DeepRunError(f"the labelled batch size must be positive, got {sup.batch_size}")
    mask = None if sup.mask is None else np.asarray(sup.mask, dtype=bool)
    if mask is not None and (mask.shape != (N,) or not mask.any()):
        raise DeepRunError(f"the target mask must be (N,) = ({N},) bool with at least one labelled image")
    if mask is not None and mask.all():  # every image labelled: the batch of all images is the supervised one
        mask = None
    return Supervision(t, mask, sup.loss, sup.self_weight, sup.batch_size)


# ----------------------------------------------------------------------------
# One run -> its record
# ----------------------------------------------------------------------------
def run_deep(
    dataset: str,
    root: Path | str,
    method: str,
    seed: int,
    options: dict[str, Any] | None = None,
    experiment: str = "deep",
    config_name: str | None = None,
    checkpoint: Path | str | None = None,
    stop_after_epoch: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``method`` on every image of the prepared ``dataset`` (train + test, Table 8); return the record.

    The record has the fields of :func:`cce.pipeline.runs.run_clustering`'s (metrics by Hungarian
    matching, NMI, ARI, clusters used; options; per-epoch curves in ``info``; wall time;
    device; versions) with ``data`` in place of ``features``.
    """
    from .. import data
    from ..metrics import clustering_scores

    spec = get_deep_method(method)
    if spec.name in SUPERVISED_METHODS:
        raise DeepRunError(f"method {spec.name!r} trains on labels: run it with cce.training.weak "
                           "(python -m cce weak or noisy)")
    opts = spec.options(options)
    resolve_device(opts["device"])  # before loading anything
    dspec = data.get_spec(dataset)
    images, labels = data.load(dataset, root, "all")
    n_total = int(images.shape[0])
    images, labels = fixed_subset(images, labels, opts["max_images"])

    start = time.perf_counter()
    pred, info = train_deep(images, dspec.n_classes, method, seed, opts, y_true=labels, dataset=dataset,
                            pixel_max=dspec.pixel_max, checkpoint=checkpoint, stop_after_epoch=stop_after_epoch,
                            progress=progress)
    wall = time.perf_counter() - start
    return run_record(
        experiment=experiment, dataset=dataset, method=method, seed=seed, metrics=clustering_scores(labels, pred),
        n_clusters=dspec.n_classes, options=opts, info=info, wall_time_s=wall, config=config_name,
        packages=("kornia",),
        data={
            "root": str(root),
            "n_examples": int(images.shape[0]),
            "n_available": n_total,
            "image_shape": list(images.shape[1:]),
            "sha256": info["data_sha256"],
        },
        checkpoint=str(checkpoint) if checkpoint is not None else None,
    )
