"""Training a linear softmax head on fixed features with a self-labeling loss (Section 5.1, App. F).

One loop serves every method of :mod:`cce.methods`: per batch, the method's
pseudo-label step estimates y from the current predictions (detached), then
SGD takes one step on the method's network loss. Methods whose labels are
estimated on the whole data set (SeLa) do it once at the start of each epoch.

Appendix F: one linear layer, Kaiming init, zero bias, SGD lr 0.1, batch 250,
L2 weight decay per dataset, lam = 100.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm  # tqdm.auto warns in a notebook kernel without ipywidgets; bars go to logs

from ..device import resolve_device
from ..predictions import head_confidence, kmeans_confidence

PREPROCESS = ("none", "center")


class ConvergenceWarning(UserWarning):
    """A pseudo-label solver stopped at its iteration cap before meeting its tolerance."""


class LinearHead(torch.nn.Module):
    """sigma(v^T x), eq. (3): one linear layer, Kaiming-normal weights, zero bias (App. F)."""

    def __init__(self, n_features: int, n_clusters: int):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, n_clusters)
        torch.nn.init.kaiming_normal_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@dataclass
class Preprocessor:
    """Feature preprocessing fitted on the training data and reused for prediction."""

    kind: str = "center"
    mean: np.ndarray | None = None

    def fit(self, X: np.ndarray) -> "Preprocessor":
        if self.kind not in PREPROCESS:
            raise ValueError(f"preprocess must be one of {PREPROCESS}, got {self.kind!r}")
        self.mean = X.mean(axis=0, dtype=np.float64).astype(np.float32) if self.kind == "center" else None
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        return X - self.mean if self.mean is not None else X


def predict_logits(head: LinearHead, X: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([head(X[i : i + batch_size]) for i in range(0, X.shape[0], batch_size)])


def fit_predict(method, X: np.ndarray, n_clusters: int, seed: int, options: dict[str, Any] | None = None,
                y_true: np.ndarray | None = None, progress: bool = True
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Cluster X (N, D) with ``method`` (a :class:`cce.methods.Method`): clusters (N,), their confidence
    (N,) in [0, 1] (:mod:`cce.predictions`) and an info dict.

    ``options`` update the method's defaults. K-means runs its own fit; every other method
    trains a linear head (:func:`train_head`) and labels each point by its argmax.
    """
    opts = method.options(options)
    if method.fit_fn is not None:
        clusters, info = method.fit_fn(X, n_clusters, seed, **opts)
        return np.asarray(clusters), kmeans_confidence(X, clusters, n_clusters), info
    head, pre, info = train_head(X, n_clusters, method, seed, opts, y_true=y_true, progress=progress)
    Xt = torch.from_numpy(pre.transform(X)).to(next(head.parameters()).device)
    logits = predict_logits(head, Xt).float()
    return logits.argmax(-1).cpu().numpy(), head_confidence(torch.softmax(logits, -1).cpu().numpy()), info


def fit(method, X: np.ndarray, n_clusters: int, seed: int, options: dict[str, Any] | None = None,
        y_true: np.ndarray | None = None, progress: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """Cluster X (N, D) with ``method``: labels (N,) and an info dict (:func:`fit_predict` without confidences)."""
    labels, _, info = fit_predict(method, X, n_clusters, seed, options, y_true=y_true, progress=progress)
    return labels, info


def train_head(
    X: np.ndarray,
    n_clusters: int,
    method,
    seed: int,
    options: dict[str, Any],
    y_true: np.ndarray | None = None,
    progress: bool = True,
    on_epoch: Callable[[int], None] | None = None,
    init: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[LinearHead, Preprocessor, dict[str, Any]]:
    """Train a linear head on X (N, D) with ``method`` (a :class:`cce.methods.Method`).

    ``options`` holds the method's complete options (its ``defaults`` updated by
    the caller). ``y_true`` is used only to log accuracy per epoch, never to train.
    Returns the head, the fitted preprocessor and an info dict with per-epoch
    curves, the final objective and timings.
    """
    from ..metrics import clustering_scores

    device = resolve_device(options["device"])
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    pre = Preprocessor(options["preprocess"]).fit(X)
    Xt = torch.from_numpy(pre.transform(X)).to(device)
    N = Xt.shape[0]
    batch_size = min(options["batch_size"], N)
    head = LinearHead(Xt.shape[1], n_clusters).to(device)
    if init is not None:
        with torch.no_grad():
            head.linear.weight.copy_(torch.as_tensor(np.asarray(init[0]), dtype=torch.float32))
            head.linear.bias.copy_(torch.as_tensor(np.asarray(init[1]), dtype=torch.float32))
    optimizer = torch.optim.SGD(head.parameters(), lr=options["lr"], momentum=options.get("momentum", 0.0),
                                weight_decay=options["weight_decay"])
    state = method.make_state(options, batch_size)

    curves: dict[str, list] = {"epoch": [], "loss": [], "label_iterations": [], "label_steps_at_max_iter": [],
                               "n_clusters_nonempty": []}
    if y_true is not None:
        curves["accuracy"] = []
    label_steps = 0
    start = time.perf_counter()
    epochs = tqdm(range(options["epochs"]), desc=f"{method.name} seed {seed}", file=sys.stderr,
                  disable=not progress, mininterval=5.0)
    for epoch in epochs:
        head.train()
        if method.label_scope == "epoch":
            sigma_all = torch.softmax(predict_logits(head, Xt), -1)
            y_all, label_info = method.label_step(sigma_all, state)
            epoch_label_iters = [label_info.get("iterations", 0)]
            epoch_capped = int(not label_info.get("converged", True))
        else:
            epoch_label_iters = []
            epoch_capped = 0
        order = torch.randperm(N, generator=generator).to(device)
        losses = []
        for i in range(0, N, batch_size):
            idx = order[i : i + batch_size]
            if idx.numel() < 2:  # a lone point cannot express fairness
                continue
            logits = head(Xt[idx])
            if method.label_scope == "batch":
                y, label_info = method.label_step(torch.softmax(logits.detach(), -1), state)
                epoch_label_iters.append(label_info.get("iterations", 0))
                epoch_capped += not label_info.get("converged", True)
            elif method.label_scope == "epoch":
                y = y_all[idx]
            else:
                y = None
            loss = method.network_loss(logits, y, state)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())  # no .item() here: it would wait for the device every batch

        head.eval()
        pred = predict_logits(head, Xt).argmax(-1).cpu().numpy()
        curves["epoch"].append(epoch + 1)
        curves["loss"].append(float(np.mean(torch.stack(losses).cpu().numpy().astype(np.float64)))
                              if losses else math.nan)
        curves["label_iterations"].append(float(np.mean(epoch_label_iters)) if epoch_label_iters else 0.0)
        curves["label_steps_at_max_iter"].append(int(epoch_capped))
        label_steps += len(epoch_label_iters)
        curves["n_clusters_nonempty"].append(int(np.unique(pred).size))
        postfix = {"loss": f"{curves['loss'][-1]:.4f}", "clusters": curves["n_clusters_nonempty"][-1]}
        if y_true is not None:
            curves["accuracy"].append(clustering_scores(y_true, pred)["accuracy"])
            postfix["acc"] = f"{curves['accuracy'][-1]:.4f}"
        epochs.set_postfix(postfix, refresh=False)
        if progress and not sys.stderr.isatty():
            print(f"epoch {epoch + 1}/{options['epochs']} " + " ".join(f"{k} {v}" for k, v in postfix.items()),
                  file=sys.stderr, flush=True)
        if on_epoch is not None:
            on_epoch(epoch + 1)

    train_time = time.perf_counter() - start
    sigma_all = torch.softmax(predict_logits(head, Xt), -1)
    objective = method.objective_value(sigma_all, state)
    info = {
        "device": str(device),
        "curves": curves,
        "losses": {"network_loss": curves["loss"][-1] if curves["loss"] else math.nan, "objective": objective},
        "train_time_s": train_time,
        "lam_effective": state.get("lam"),
        # y-steps (pseudo-label solves) of training, and those that stopped at max_iter before
        # meeting tol: their y is not the minimizer the method's objective assumes.
        "label_steps": label_steps,
        "label_steps_at_max_iter": int(sum(curves["label_steps_at_max_iter"])),
    }
    if info["label_steps_at_max_iter"]:
        warnings.warn(
            f"{method.name}: {info['label_steps_at_max_iter']} of {label_steps} pseudo-label steps stopped at "
            f"max_iter={state.get('max_iter', state.get('n_iter'))} before meeting tol={state.get('tol')}; "
            "raise max_iter (or loosen tol) for the minimizer the objective assumes",
            ConvergenceWarning, stacklevel=2)
    return head, pre, info
