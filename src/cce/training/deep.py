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

Where things live in this module, in the order :func:`train_deep_probs` (and :func:`train_deep`, its argmax) calls them:

- the run's settings, read only: :class:`RunSetup` (:func:`_setup`: input checks, images on the
  device, augmentation, the identity that a checkpoint must match);
- the run's state, what a checkpoint holds: :class:`RunState` (:func:`initial_state`,
  :func:`build_model`, :func:`_resume`, :meth:`RunState.checkpoint`). A start of the network
  (an initialization that reads the data) acts on the first training batch's logits in :func:`_train_step`
  (no extra forward pass, which would move batch norm's running statistics);
- the label step: :func:`_labels_due` (SeLa's schedule: ``label_every``, ``label_updates``),
  :func:`_relabel_all` (labels of every image; ``label_input``) and :func:`_batch_labels`
  (Algorithm 1's y-step on a batch; ``lam_scale`` acts through the method's state);
- one epoch of steps: :func:`train_epoch`, which cuts the epoch into batches (:func:`_epoch_batches`:
  the data order and Table 4's labelled images, ``labelled_batch``) and takes one :func:`_train_step`
  per batch (views from :class:`cce.data.augment.SelfAugmentation`, ``augment``; the loss from
  :func:`cce.training.deep_methods.batch_loss`, MI-D's ``mi_weights``);
- evaluation and the record: :func:`_evaluate` (curves, timings), :func:`_progress_line`, :func:`_info`.

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
from dataclasses import dataclass, field
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
from .starts import start_first_batch
from .deep_methods import (
    DEEP_METHODS, DEEP_TRAINING_DEFAULTS, LABELLED_BATCHES, SUPERVISED_METHODS, TARGET_LOSSES, DeepMethod,
    DeepRunError, Supervision,
    batch_loss, get_deep_method, target_loss,
)

__all__ = [
    "DEEP_METHODS", "DEEP_TRAINING_DEFAULTS", "DeepMethod", "DeepRunError", "DeviceUnavailableError",
    "SUPERVISED_METHODS", "Supervision", "TARGET_LOSSES", "TrainingStopped", "batch_loss", "fixed_subset",
    "get_deep_method", "load_checkpoint", "run_deep", "subset_indices", "target_loss", "train_deep",
    "train_deep_probs",
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


def subset_indices(n_total: int, n: int | None) -> np.ndarray:
    """The rows (sorted) that :func:`fixed_subset` keeps of ``n_total`` images."""
    if n is None or int(n) >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(SUBSET_SEED).choice(n_total, int(n), replace=False))


def fixed_subset(images: np.ndarray, labels: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` of the images (N, ...) and labels (N,), drawn with :data:`SUBSET_SEED` (the same for every
    method and seed of a reduced experiment), in their original order; all of them when ``n`` is None."""
    keep = subset_indices(images.shape[0], n)
    return (images, labels) if keep.size == images.shape[0] else (images[keep], labels[keep])


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
# The run's settings (read only) and its state (what a checkpoint holds)
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


@dataclass
class Targets:
    """Per-image targets on the device (Table 4, Figure 2) and how a step draws the labelled images."""

    supervision: Supervision
    targets: Tensor  # (N, K) float32
    labelled: Tensor | None  # (M,) indices of the labelled images; None: every image carries a target
    per_step: int  # labelled images of a step's separate labelled batch (0: none, see labelled_batch)
    mask: Tensor | None = None  # (N,) bool, the labelled images; None: every image carries a target

    @property
    def separate(self) -> bool:
        """A labelled batch of its own beside the batch of all images (``labelled_batch: separate``)."""
        return self.labelled is not None and self.supervision.labelled_batch == "separate"


@dataclass
class RunSetup:
    """What a run reads and never changes: the method and its options, the data on the device, the identity."""

    spec: DeepMethod
    opts: dict[str, Any]
    seed: int
    n_clusters: int
    device: torch.device
    network: str
    image_shape: tuple[int, ...]  # (H, W) or (H, W, C), as the network registry reads it
    X: Tensor  # (N, C, H, W) uint8 training images
    aug: SelfAugmentation
    eval_X: Tensor  # the images of the curves: X, or the separate evaluation set
    eval_y: np.ndarray | None
    targets: Targets | None
    identity: dict[str, Any]  # method, seed, options, data: a checkpoint of another run is refused
    progress: bool

    @property
    def batch_size(self) -> int:
        return min(int(self.opts["batch_size"]), self.X.shape[0])

    @property
    def n_views(self) -> int:
        return int(self.opts["n_views"])

    @property
    def own_term(self) -> bool:
        """Whether the method's self-labeling loss is trained (not for targets-only methods, self_weight 0)."""
        t = self.targets
        return self.spec.name not in SUPERVISED_METHODS and (t is None or t.supervision.self_weight != 0)

    def predict(self, model: nn.Module, images: Tensor) -> Tensor:
        return predict_probs(model, images, self.aug, int(self.opts["eval_batch_size"]), self.opts["precision"])


@dataclass
class RunState:
    """What changes during a run; :meth:`checkpoint` is what a resumed run needs to continue identically."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    generators: dict[str, torch.Generator]  # order, augment (and labelled): the run's own random streams
    method_state: dict[str, Any]  # the solvers' settings (lam as they read it); rebuilt from the options
    curves: dict[str, list]
    timing: dict[str, list]
    epoch: int = 0  # finished epochs
    step: int = 0  # finished steps, over all epochs
    train_time: float = 0.0
    resumed_at: list[int] = field(default_factory=list)
    y_all: Tensor | None = None  # epoch-scope labels of every training image (SeLa), (N, K)
    probs: Tensor | None = None  # the current model's predictions on the training images, when known

    def checkpoint(self, identity: dict[str, Any]) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "identity": identity, "epoch": self.epoch, "step": self.step,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": rng_state(self.generators), "curves": self.curves, "timing": self.timing,
                "y_all": self.y_all.cpu() if self.y_all is not None else None,
                "train_time_s": self.train_time, "resumed_at": self.resumed_at}

    def restore(self, ck: dict[str, Any], device: torch.device) -> None:
        # load_state_dict moves each tensor to its parameter's device (Adam's step counters stay on the
        # CPU, as Adam expects); the RNG states are CPU tensors
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        set_rng_state(ck["rng"], self.generators)
        self.curves, self.timing = ck["curves"], ck["timing"]
        self.epoch, self.train_time = int(ck["epoch"]), float(ck["train_time_s"])
        self.step = int(ck.get("step", 0))
        self.resumed_at = list(ck["resumed_at"]) + [self.epoch]
        self.y_all = ck["y_all"].to(device) if ck["y_all"] is not None else None


def _setup(images: np.ndarray, n_clusters: int, method: str, seed: int, options: dict[str, Any] | None,
           y_true: np.ndarray | None, dataset: str | None, pixel_max: float, supervision: Supervision | None,
           network: str, eval_images: np.ndarray | None, eval_labels: np.ndarray | None,
           progress: bool) -> RunSetup:
    """Check the inputs, put the images on the device, build the augmentation and the run's identity."""
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
    auto = _resolve_auto(opts, dataset, X_np.shape[1])
    aug = SelfAugmentation(X_np.shape[1], flip=auto["flip"], rotation=float(opts["rotation"]), color=auto["color"],
                           pixel_max=pixel_max, mode=opts["augment"])
    X = torch.from_numpy(X_np).to(device)  # uint8 on the device: 47 MB for MNIST, 184 MB for CIFAR10
    identity = {"method": spec.name, "seed": int(seed), "n_clusters": int(n_clusters),
                "data": data_fingerprint(images, y_true),
                "options": {k: v for k, v in opts.items() if k != "device"}}
    # targets, network, evaluation set: in the identity only when used, so older checkpoints stay valid
    eval_X, eval_y = X, y_true
    if eval_images is not None:
        eval_X = torch.from_numpy(np.ascontiguousarray(_channels_first(eval_images))).to(device)
        eval_y = eval_labels
        identity["eval_data"] = data_fingerprint(eval_images, eval_labels)
    if network != "auto":
        identity["network"] = network
    targets = None
    if sup is not None:
        identity["supervision"] = sup.fingerprint()
        targets = _targets_on_device(sup, opts, device)
    return RunSetup(spec, opts, int(seed), int(n_clusters), device, network, tuple(arch_shape), X, aug, eval_X,
                    eval_y, targets, identity, progress)


def _targets_on_device(sup: Supervision, opts: dict[str, Any], device: torch.device) -> Targets:
    T = torch.from_numpy(np.asarray(sup.targets, dtype=np.float32)).to(device)
    if sup.mask is None:
        return Targets(sup, T, None, 0)
    labelled = torch.from_numpy(np.flatnonzero(sup.mask)).to(device)
    mask = torch.from_numpy(np.asarray(sup.mask, dtype=bool)).to(device)
    return Targets(sup, T, labelled, min(int(sup.batch_size or opts["batch_size"]), labelled.numel()), mask)


def build_model(setup: RunSetup) -> nn.Module:
    """The network of ``setup.network`` for the images, behind the data set's standardization; seeded by the run."""
    torch.manual_seed(setup.seed)
    mean, std = _channel_stats(setup.X, setup.aug.pixel_max)
    try:
        net = build_network(setup.network, setup.image_shape, setup.n_clusters)
    except ValueError as err:
        raise DeepRunError(str(err)) from None
    return nn.Sequential(Standardize(mean, std), net).to(setup.device)


def initial_state(setup: RunSetup) -> RunState:
    """A fresh run: the model (:func:`build_model`), Adam (Appendix F), the random streams, an empty record.

    A start of the network (an initialization that reads the data) is not applied here but on the first
    training batch (:func:`_train_step`, :mod:`cce.training.starts`).
    """
    model = build_model(setup)
    opts = setup.opts
    optimizer = torch.optim.Adam(model.parameters(), lr=opts["lr"], weight_decay=opts["weight_decay"])
    order_seed, aug_seed = _seeds(setup.seed)
    generators = {"order": torch.Generator().manual_seed(order_seed),
                  "augment": torch.Generator().manual_seed(aug_seed)}
    if setup.targets is not None:
        # the labelled stream's own generator: "seeds_only" and the self-labeling methods see the same
        # labelled batches at one seed; seeded from the data order's seed, shifted
        generators["labelled"] = torch.Generator().manual_seed(order_seed ^ 0x5EED)
    curves: dict[str, list] = {"epoch": [], "loss": [], "label_iterations": [], "n_clusters_nonempty": []}
    if setup.eval_y is not None:
        curves.update(accuracy=[], nmi=[], ari=[])
        if setup.targets is not None:
            curves["hungarian_accuracy"] = []
    timing: dict[str, list] = {"epoch_s": [], "augment_s": [], "label_s": [], "network_s": [], "eval_s": []}
    return RunState(model, optimizer, generators, setup.spec.make_state(opts, setup.batch_size), curves, timing)


def _resume(setup: RunSetup, state: RunState, checkpoint: Path | str) -> None:
    """Continue from ``checkpoint`` if it is this run's; another run's is ignored with a message."""
    ck = load_checkpoint(checkpoint)  # on the CPU first
    if ck.get("format") != CHECKPOINT_FORMAT or ck.get("identity") != setup.identity:
        print(f"checkpoint {checkpoint} belongs to another run (method, seed, options or data differ); "
              "starting from scratch", file=sys.stderr)
        return
    state.restore(ck, setup.device)
    if setup.progress:
        print(f"resuming {setup.spec.name} seed {setup.seed} from {checkpoint} after epoch {state.epoch}",
              file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# The label step: pseudo-labels of the whole data set (SeLa) or of a batch (Algorithm 1)
# ----------------------------------------------------------------------------
def _labels_due(setup: RunSetup, state: RunState, step_in_epoch: int, steps_per_epoch: int) -> bool:
    """Whether SeLa's labels of every image are renewed before this step.

    ``label_updates: n`` (SeLa's published ``nopts``): before the steps floor(j S / n), j = 0 .. n - 1, of
    the run's S steps, spread evenly as cifar.py spreads them; otherwise (null) at the start of every
    ``label_every``-th epoch. Always before the first step a run (or a resumed run without labels) takes.
    """
    if setup.spec.label_scope != "epoch":
        return False
    if state.y_all is None:
        return True
    n = setup.opts.get("label_updates")
    if n is not None:
        total = steps_per_epoch * int(setup.opts["epochs"])
        return any(j * total // int(n) == state.step for j in range(int(n)))
    return step_in_epoch == 0 and state.epoch % int(setup.opts.get("label_every", 1)) == 0


def _relabel_all(setup: RunSetup, state: RunState) -> float:
    """SeLa's labels of every training image from the current model (hard labels of a Sinkhorn plan); seconds.

    ``label_input: eval``: the un-augmented images, batch norm in eval mode (the predictions of the curves);
    ``augmented``: one view of the training augmentation, the network in train mode, as SeLa's cifar.py
    labels its training loader's images in the middle of training.
    """
    t0 = time.perf_counter()
    if setup.opts.get("label_input", "eval") == "augmented":
        probs = _predict_augmented(setup, state)
    else:
        if state.probs is None:
            state.probs = setup.predict(state.model, setup.X)
        probs = state.probs
    state.y_all, _ = setup.spec.base.label_step(probs, state.method_state)
    _sync(setup.device)
    return time.perf_counter() - t0


def _predict_augmented(setup: RunSetup, state: RunState) -> Tensor:
    """softmax of the network in train mode on one augmented view of every training image: (N, K)."""
    out, B = [], int(setup.opts["eval_batch_size"])
    with torch.no_grad(), _amp(setup.device, setup.opts["precision"]):
        for i in range(0, setup.X.shape[0], B):
            views = setup.aug(setup.X[i : i + B], state.generators["augment"], 1)
            out.append(torch.softmax(state.model(views).float(), -1))
    return torch.cat(out)


def _batch_labels(setup: RunSetup, state: RunState, view_logits: Tensor) -> tuple[Tensor, Tensor, int]:
    """Algorithm 1's y-step on a batch: (y (B, K), the view mixture's log sigma (B, K), solver iterations)."""
    mixture = losses.view_mixture_logits(view_logits)  # the labels' and the loss's sigma
    y, info = setup.spec.base.label_step(mixture.detach().exp(), state.method_state)
    return y, mixture, int(info.get("iterations", 0))


# ----------------------------------------------------------------------------
# One epoch of training steps
# ----------------------------------------------------------------------------
@dataclass
class EpochStats:
    losses: list = field(default_factory=list)  # each step's loss (detached)
    label_iterations: list = field(default_factory=list)  # each batch y-step's solver iterations
    augment_s: float = 0.0
    label_s: float = 0.0
    train_s: float = 0.0  # the whole epoch of steps, label and augmentation time included


def _epoch_batches(setup: RunSetup, state: RunState) -> list[tuple[Tensor, Tensor | None]]:
    """The epoch's steps: (indices of a batch of all images (B,), indices of its targets' images or None).

    A new random order of all images every epoch; a lone last image is dropped (it cannot express
    fairness). With a labelled subset, every step also gets ``per_step`` labelled images cycled through
    fresh permutations of the labelled set, back to back (the module docstring says why), or, under
    ``labelled_batch: proportional``, the labelled images that the batch of all images holds.
    """
    N, B = setup.X.shape[0], setup.batch_size
    order = torch.randperm(N, generator=state.generators["order"]).to(setup.device)
    batches = [order[i : i + B] for i in range(0, N, B) if min(B, N - i) >= 2]
    t = setup.targets
    if t is None:
        return [(idx, None) for idx in batches]
    if t.labelled is None:
        return [(idx, idx) for idx in batches]
    if not t.separate:  # proportional: the labelled images among the batch of all images
        return [(idx, idx[t.mask[idx]]) for idx in batches]
    L, M = t.per_step, t.labelled.numel()
    n_perm = -(-len(batches) * L // M)
    lab_order = torch.cat([torch.randperm(M, generator=state.generators["labelled"])
                           for _ in range(n_perm)]).to(setup.device)
    return [(idx, t.labelled[lab_order[s * L : (s + 1) * L]]) for s, idx in enumerate(batches)]


def _train_step(setup: RunSetup, state: RunState, idx: Tensor, lab: Tensor | None, stats: EpochStats) -> None:
    """One Adam step on the batch ``idx`` (and the targets of the images ``lab``), in one forward pass."""
    spec, t, V, K = setup.spec, setup.targets, setup.n_views, setup.n_clusters
    separate = t is not None and t.separate  # a labelled batch beside the batch of all images
    proportional = t is not None and t.labelled is not None and not separate
    if proportional and not setup.own_term:
        parts = [lab]  # targets only: forward just the labelled images of the batch
    else:
        parts = ([idx] if setup.own_term or not separate else []) + ([lab] if separate else [])
    sizes = [p.numel() for p in parts]
    if sum(sizes) == 0:  # proportional batches of a targets-only method: none of the batch is labelled
        return  # (at step 0 this skips the start too: it acts on step 0's logits only)
    t0 = time.perf_counter()
    views = setup.aug(setup.X[torch.cat(parts)], state.generators["augment"], V)
    _sync(setup.device)
    stats.augment_s += time.perf_counter() - t0
    with _amp(setup.device, setup.opts["precision"]):
        logits = state.model(views)
    if state.step == 0:  # a fresh run's first batch; a resumed run has the start in its checkpoint
        logits = start_first_batch(setup.opts["start"], state.model, logits)
    all_logits = logits.float().view(V, sum(sizes), K)
    view_logits = all_logits[:, : sizes[0]] if setup.own_term or not separate else None
    target_logits = None if t is None else all_logits[:, -sizes[-1]:]
    if proportional and setup.own_term:
        target_logits = all_logits[:, t.mask[idx]]  # the labelled images among the batch of all images
    has_targets = t is not None and lab.numel() > 0
    y = mixture = None
    if setup.own_term and spec.base is not None:
        if spec.label_scope == "batch":
            t0 = time.perf_counter()
            y, mixture, iterations = _batch_labels(setup, state, view_logits)
            _sync(setup.device)
            stats.label_s += time.perf_counter() - t0
            stats.label_iterations.append(iterations)
        else:
            y = state.y_all[idx]
    sup = None if t is None else t.supervision
    loss = batch_loss(spec, state.method_state, view_logits, y, target_logits if has_targets else None,
                      t.targets[lab] if has_targets else None, "shannon" if sup is None else sup.loss,
                      1.0 if sup is None else sup.self_weight, mixture=mixture)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    state.probs = None  # the model changed
    stats.losses.append(loss.detach())


def train_epoch(setup: RunSetup, state: RunState) -> EpochStats:
    """One pass over the training images: SeLa's label step when due, then one Adam step per batch."""
    _sync(setup.device)
    t_epoch = time.perf_counter()
    stats = EpochStats()
    state.model.train()
    batches = _epoch_batches(setup, state)
    for step_in_epoch, (idx, lab) in enumerate(batches):
        if _labels_due(setup, state, step_in_epoch, len(batches)):
            stats.label_s += _relabel_all(setup, state)
        _train_step(setup, state, idx, lab, stats)
        state.step += 1
    _sync(setup.device)
    stats.train_s = time.perf_counter() - t_epoch
    return stats


# ----------------------------------------------------------------------------
# Evaluation and the record
# ----------------------------------------------------------------------------
def _evaluate(setup: RunSetup, state: RunState, stats: EpochStats) -> Tensor:
    """The epoch's predictions on the evaluation images (N_eval, K), appended to the curves and timings."""
    from ..metrics import clustering_scores

    t0 = time.perf_counter()
    eval_probs = setup.predict(state.model, setup.eval_X)
    state.probs = eval_probs if setup.eval_X is setup.X else None  # SeLa's labels need the training images'
    pred = eval_probs.argmax(-1).cpu().numpy()
    t_eval = time.perf_counter() - t0
    curves, timing = state.curves, state.timing
    curves["epoch"].append(state.epoch + 1)
    curves["loss"].append(float(torch.stack(stats.losses).double().mean()) if stats.losses else math.nan)
    curves["label_iterations"].append(float(np.mean(stats.label_iterations)) if stats.label_iterations else 0.0)
    curves["n_clusters_nonempty"].append(int(np.unique(pred).size))
    if setup.eval_y is not None:
        scores = clustering_scores(setup.eval_y, pred)
        if setup.targets is not None:  # trained on labels: the classes are known, accuracy needs no matching
            scores = {**scores, "hungarian_accuracy": scores["accuracy"],
                      "accuracy": float(np.mean(pred == np.asarray(setup.eval_y)))}
            curves["hungarian_accuracy"].append(scores["hungarian_accuracy"])
        for key in ("accuracy", "nmi", "ari"):
            curves[key].append(scores[key])
    timing["epoch_s"].append(stats.train_s + t_eval)
    timing["augment_s"].append(stats.augment_s)
    timing["label_s"].append(stats.label_s)
    timing["network_s"].append(stats.train_s - stats.augment_s - stats.label_s)
    timing["eval_s"].append(t_eval)
    state.train_time += stats.train_s + t_eval
    state.epoch += 1
    return eval_probs


def _progress_line(setup: RunSetup, state: RunState) -> str:
    c, t = state.curves, state.timing
    line = (f"{setup.spec.name} seed {setup.seed} epoch {state.epoch}/{setup.opts['epochs']} loss {c['loss'][-1]:.4f} "
            f"clusters {c['n_clusters_nonempty'][-1]}")
    if setup.eval_y is not None:
        line += f" acc {c['accuracy'][-1]:.4f}"
    return line + (f" {t['epoch_s'][-1]:.1f} s (augment {t['augment_s'][-1]:.1f}, labels {t['label_s'][-1]:.1f}, "
                   f"network {t['network_s'][-1]:.1f}, eval {t['eval_s'][-1]:.1f})")


def _info(setup: RunSetup, state: RunState) -> dict[str, Any]:
    c = state.curves
    return {
        "device": str(setup.device),
        "precision": setup.opts["precision"],
        "torch_threads": torch.get_num_threads(),
        "curves": c,
        "timing": state.timing,
        "losses": {"network_loss": c["loss"][-1] if c["loss"] else math.nan},
        "train_time_s": state.train_time,
        "resumed_at_epochs": state.resumed_at,
        "lam_effective": state.method_state.get("lam"),
        "augmentation": setup.aug.settings,
        "architecture": network_name(state.model[1]),
        "data_sha256": setup.identity["data"],
    }


# ----------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------
def train_deep_probs(
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
    Returns the network's predictions after the last epoch, softmax (N, K) or (M, K) float32,
    and an info dict (curves, timing, device).
    """
    setup = _setup(images, n_clusters, method, seed, options, y_true, dataset, pixel_max, supervision, network,
                   eval_images, eval_labels, progress)
    state = initial_state(setup)
    if checkpoint is not None and Path(checkpoint).is_file():
        _resume(setup, state, checkpoint)
    eval_probs = None  # on the evaluation images, after the last epoch that ran here
    while state.epoch < setup.opts["epochs"]:
        stats = train_epoch(setup, state)  # label step when due, one Adam step per batch
        eval_probs = _evaluate(setup, state, stats)  # curves and timings of the epoch
        if progress:
            print(_progress_line(setup, state), file=sys.stderr, flush=True)
        if checkpoint is not None:
            save_checkpoint(checkpoint, state.checkpoint(setup.identity))
        if stop_after_epoch is not None and state.epoch == stop_after_epoch and state.epoch < setup.opts["epochs"]:
            raise TrainingStopped(state.epoch, Path(checkpoint) if checkpoint is not None else None)
    if eval_probs is None:  # resumed from a finished checkpoint: no epoch ran here
        eval_probs = setup.predict(state.model, setup.eval_X)
    return eval_probs.float().cpu().numpy(), _info(setup, state)


def train_deep(images: np.ndarray, n_clusters: int, method: str, seed: int, options: dict[str, Any] | None = None,
               y_true: np.ndarray | None = None, **kwargs) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`train_deep_probs` (the same arguments) returning the cluster of every image (N,), or of
    every evaluation image (M,), in place of the predictions, and the info dict."""
    probs, info = train_deep_probs(images, n_clusters, method, seed, options, y_true, **kwargs)
    return probs.argmax(-1), info


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
    if sup.labelled_batch not in LABELLED_BATCHES:
        raise DeepRunError(f"option 'labelled_batch' must be one of {list(LABELLED_BATCHES)}, "
                           f"got {sup.labelled_batch!r}")
    return Supervision(t, mask, sup.loss, sup.self_weight, sup.batch_size, sup.labelled_batch)


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
    predictions: Path | str | None = None,
) -> dict[str, Any]:
    """Train ``method`` on every image of the prepared ``dataset`` (train + test, Table 8); return the record.

    The record has the fields of :func:`cce.pipeline.runs.run_clustering`'s (metrics by Hungarian
    matching, NMI, ARI, clusters used; options; per-epoch curves in ``info``; wall time;
    device; versions) with ``data`` in place of ``features``. With ``predictions`` (a path), the
    cluster and confidence of every image (rows of the dataset's ``all`` split) are saved there.
    """
    from .. import data
    from ..metrics import clustering_scores
    from ..predictions import head_confidence, make_predictions, save_predictions

    spec = get_deep_method(method)
    if spec.name in SUPERVISED_METHODS:
        raise DeepRunError(f"method {spec.name!r} trains on labels: run it with cce.training.weak "
                           "(python -m cce weak or noisy)")
    opts = spec.options(options)
    resolve_device(opts["device"])  # before loading anything
    dspec = data.get_spec(dataset)
    images, labels = data.load(dataset, root, "all")
    n_total = int(images.shape[0])
    rows = subset_indices(n_total, opts["max_images"])  # the fixed subset; the predictions name its rows
    if rows.size < n_total:
        images, labels = images[rows], labels[rows]

    start = time.perf_counter()
    probs, info = train_deep_probs(images, dspec.n_classes, method, seed, opts, y_true=labels, dataset=dataset,
                                   pixel_max=dspec.pixel_max, checkpoint=checkpoint,
                                   stop_after_epoch=stop_after_epoch, progress=progress)
    wall = time.perf_counter() - start
    pred = probs.argmax(-1)
    saved = None
    if predictions is not None:
        saved = save_predictions(predictions, make_predictions(
            pred, head_confidence(probs), source="all", labels=labels, index=rows))
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
        predictions=saved,
    )
