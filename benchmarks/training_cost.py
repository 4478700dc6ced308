"""What CCE+ training costs against MI-GD and KMeans, on the same data, from one run.

Both methods train the same linear head with the same options (batch 250, lr 0.1, weight decay
1e-3, the method's own y-step settings unless --options says otherwise); CCE+ also solves its
pseudo-label problem on every batch (by default the interior point; EM of Section 4 with
--options '{"solver": "em"}'). The y-step is timed by wrapping the method's
solver, so its share of each epoch is measured, not estimated, and every y-step that stopped at
max_iter without meeting the tolerance is counted.

    .venv/bin/python benchmarks/training_cost.py                              # digits, 50 epochs
    .venv/bin/python benchmarks/training_cost.py --datasets fashion --epochs 5
    .venv/bin/python benchmarks/training_cost.py --options '{"solver": "em"}'   # the EM y-step

Data sets: digits (1797 x 64, pixels / 16, from scikit-learn); fashion (Fashion-MNIST train+test,
70,000 x 784, pixels / 255, from /usr/share/datasets/fashion-mnist: Debian's dataset-fashion-mnist).

Prints, per data set: for CCE+ and MI-GD the median, first and total epoch time, the y-step's
share of an epoch (median over epochs after the first), its median time and iterations (of the
interior point, or EM iterations), the y-steps that hit max_iter, the final objective and accuracy; KMeans(n_init=1) wall time and accuracy; and the
ratios CCE+ / MI-GD per epoch and CCE+ (all epochs) / KMeans.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return (X / 16.0).astype(np.float32), y
    if name == "fashion":
        from cce.data.formats import load_mnist_like

        X, y = load_mnist_like(FASHION_DIR, "all")
        return X.reshape(len(X), -1).astype(np.float32) / 255.0, y.astype(np.int64)
    raise ValueError(f"unknown data set {name!r} (digits, fashion)")


class SolveClock:
    """Wraps a method's pseudo-label solver: the time and iterations of every y-step."""

    def __init__(self):
        self.times: list[float] = []
        self.iterations: list[int] = []

    def wrap(self, solver):
        def timed(sigma, state):
            start = time.perf_counter()
            y, info = solver(sigma, state)
            self.times.append(time.perf_counter() - start)
            self.iterations.append(int(info.get("iterations", 0)))
            return y, info

        return timed


def train(name: str, X, y, K: int, seed: int, options: dict) -> dict:
    import torch

    from cce.methods import get_method
    from cce.metrics import clustering_scores
    from cce.training import predict_logits, train_head

    spec = get_method(name)
    clock = SolveClock()
    if spec.label_solver is not None:
        spec = dataclasses.replace(spec, label_solver=clock.wrap(spec.label_solver))
    opts = spec.options(options)
    epoch_ends: list[float] = []
    solves_at_end: list[int] = []

    def on_epoch(epoch):
        epoch_ends.append(time.perf_counter())
        solves_at_end.append(len(clock.times))

    start = time.perf_counter()
    head, pre, info = train_head(X, K, spec, seed, opts, progress=False, on_epoch=on_epoch)
    # The clock sees the y-steps of training only: the final objective calls the solver directly.
    train_s = epoch_ends[-1] - start
    labels = predict_logits(head, torch.from_numpy(pre.transform(X))).argmax(-1).numpy()
    epoch_s = np.diff([start, *epoch_ends])
    ystep_s = np.array([sum(clock.times[a:b]) for a, b in zip([0, *solves_at_end], solves_at_end)])
    # The first epoch also pays one-off costs (torch's optimizer imports, numba's compiled code
    # loaded from its cache): the share is the median over the later epochs, where there are any.
    later = slice(1, None) if len(epoch_s) > 1 else slice(None)
    return {
        "method": name,
        "epochs": opts["epochs"],
        "epoch_median_s": float(np.median(epoch_s)),
        "first_epoch_s": float(epoch_s[0]),
        "train_s": train_s,
        "ystep_share": float(np.median(ystep_s[later] / epoch_s[later])),
        "ystep_ms_median": float(np.median(clock.times) * 1e3) if clock.times else 0.0,
        "ysteps": info["label_steps"],
        "ystep_iterations_median": float(np.median(clock.iterations)) if clock.iterations else 0.0,
        "ysteps_at_max_iter": info["label_steps_at_max_iter"],
        "objective": info["losses"]["objective"],
        "accuracy": clustering_scores(y, labels)["accuracy"],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="digits", help="comma-separated: digits, fashion")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--options", type=json.loads, default={},
                        help="JSON: options of cce_plus over its defaults (e.g. tol, max_iter)")
    args = parser.parse_args(argv)

    import torch
    from sklearn.cluster import KMeans

    from cce.metrics import clustering_scores

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
          f"device {args.device}, seed {args.seed}, epochs {args.epochs}, cce_plus options {args.options or 'defaults'}")
    common = {"epochs": args.epochs, "device": args.device}
    for name in args.datasets.split(","):
        X, y = load(name)
        K = int(np.unique(y).size)
        print(f"\n{name}: {X.shape[0]} x {X.shape[1]}, K = {K}", flush=True)
        rows = [train("cce_plus", X, y, K, args.seed, {**common, **args.options}),
                train("mi_gd", X, y, K, args.seed, common)]
        start = time.perf_counter()
        km = KMeans(K, n_init=1, random_state=args.seed).fit(X)
        km_s = time.perf_counter() - start
        header = (f"{'method':9} {'epoch (median) s':>16} {'1st epoch s':>11} {'train s':>8} {'y-step share':>12} "
                  f"{'y-steps':>7} {'y-step ms (med.)':>16} {'y-step it. (med.)':>17} {'at max_iter':>11} "
                  f"{'objective':>10} {'accuracy':>8}")
        print(header)
        for r in rows:
            print(f"{r['method']:9} {r['epoch_median_s']:16.4f} {r['first_epoch_s']:11.2f} {r['train_s']:8.1f} "
                  f"{r['ystep_share']:12.1%} {r['ysteps']:7d} {r['ystep_ms_median']:16.2f} "
                  f"{r['ystep_iterations_median']:17.0f} {r['ysteps_at_max_iter']:11d} "
                  f"{r['objective']:10.5f} {r['accuracy']:8.4f}")
        print(f"{'kmeans':9} {'':16} {'':11} {km_s:8.1f} {'':12} {'':7} {'':16} {'':17} {'':11} {'':10} "
              f"{clustering_scores(y, km.labels_)['accuracy']:8.4f}")
        cce, mi = rows
        print(f"CCE+ / MI-GD per epoch (medians): {cce['epoch_median_s'] / mi['epoch_median_s']:.1f}x;  "
              f"CCE+ ({cce['epochs']} epochs) / KMeans(n_init=1): {cce['train_s'] / km_s:.1f}x", flush=True)


if __name__ == "__main__":
    main()
