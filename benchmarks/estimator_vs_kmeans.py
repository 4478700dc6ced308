"""SelfLabelingClassifier (cce_plus) against scikit-learn's KMeans on small real data sets.

The claim measured: on well-separated real data a user of
``cce.SelfLabelingClassifier`` gets clusters at least as good as KMeans gives.
Both get the same features and the same number of restarts (``--n-init``; each
keeps its own best restart: lowest self-labeling objective / lowest inertia), over
several random states. Labels are used only to score.

    .venv/bin/python benchmarks/estimator_vs_kmeans.py                      # iris, wine, digits
    .venv/bin/python benchmarks/estimator_vs_kmeans.py --datasets iris,wine,cancer,digits,elongated \
        --inits random,both
    .venv/bin/python benchmarks/estimator_vs_kmeans.py --datasets fashion --fashion-n 5000

Data sets (scikit-learn ships the first three):
  iris     150 x 4,    3 classes, standardized
  wine     178 x 13,   3 classes, standardized
  cancer   569 x 30,   2 classes (breast cancer), standardized
  digits   1797 x 64, 10 classes, pixels / 16 (in [0, 1])
  elongated  600 x 2, 3 classes: Gaussian clusters with standard deviations 6 and 0.5, centers 3
           apart along the short axis (linearly separable, far from k-means' round cells)
  fashion  Fashion-MNIST pixels / 255 (784), 10 classes, a random subset of --fashion-n
           images of train+test, read from /usr/share/datasets/fashion-mnist

Prints one row per (data set, method): mean and std over the random states of
Hungarian accuracy, NMI and ARI, and the mean wall time of one fit (all restarts).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def load(name: str, fashion_n: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler

    if name == "iris":
        X, y = datasets.load_iris(return_X_y=True)
        return StandardScaler().fit_transform(X), y
    if name == "wine":
        X, y = datasets.load_wine(return_X_y=True)
        return StandardScaler().fit_transform(X), y
    if name == "cancer":
        X, y = datasets.load_breast_cancer(return_X_y=True)
        return StandardScaler().fit_transform(X), y
    if name == "elongated":
        rng = np.random.default_rng(0)
        y = np.repeat(np.arange(3), 200)
        X = rng.normal(size=(600, 2)) * np.array([6.0, 0.5]) + np.c_[np.zeros(600), 3.0 * y]
        return X, y
    if name == "digits":
        X, y = datasets.load_digits(return_X_y=True)
        return X / 16.0, y
    if name == "fashion":
        from cce.data.formats import load_mnist_like

        X, y = load_mnist_like(FASHION_DIR, "all")  # train then test
        idx = np.random.RandomState(0).choice(len(X), size=min(fashion_n, len(X)), replace=False)
        return X[idx].reshape(len(idx), -1).astype(np.float32) / 255.0, y[idx].astype(np.int64)
    raise ValueError(f"unknown data set {name!r}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="iris,wine,digits")
    parser.add_argument("--seeds", type=int, default=5, help="random states 0 .. seeds-1")
    parser.add_argument("--n-init", type=int, default=3, help="restarts, both methods")
    parser.add_argument("--epochs", type=int, default=50, help="SelfLabelingClassifier epochs (paper: 50)")
    parser.add_argument("--fashion-n", type=int, default=5000)
    parser.add_argument("--inits", default="random",
                        help="comma-separated SelfLabelingClassifier inits to compare (random, kmeans, both)")
    args = parser.parse_args(argv)

    import torch
    from sklearn.cluster import KMeans

    from cce import SelfLabelingClassifier
    from cce.metrics import clustering_scores

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
          f"n_init={args.n_init}, random states 0..{args.seeds - 1}, cce_plus epochs={args.epochs} "
          f"(batch 250, lr 0.1, wd 1e-3, lam 100)")
    rows = []
    for name in args.datasets.split(","):
        X, y = load(name, args.fashion_n)
        K = int(np.unique(y).size)
        print(f"\n{name}: {X.shape[0]} x {X.shape[1]}, K={K}", flush=True)
        makers = {"KMeans": lambda s: KMeans(K, n_init=args.n_init, random_state=s)}
        for init in args.inits.split(","):
            label = "cce_plus" if init == "random" else f"cce+/{init}"
            makers[label] = (lambda init: lambda s: SelfLabelingClassifier(
                K, method="cce_plus", n_init=args.n_init, init=init, epochs=args.epochs, random_state=s))(init)
        for label, make in makers.items():
            scores, times = [], []
            for seed in range(args.seeds):
                t = time.perf_counter()
                pred = make(seed).fit(X).labels_
                times.append(time.perf_counter() - t)
                scores.append(clustering_scores(y, pred))
                print(f"  {label:8s} seed {seed}: acc {scores[-1]['accuracy']:.3f} nmi {scores[-1]['nmi']:.3f} "
                      f"ari {scores[-1]['ari']:.3f} clusters {scores[-1]['n_clusters_nonempty']} "
                      f"({times[-1]:.1f}s)", flush=True)
            rows.append((name, label, {k: np.array([s[k] for s in scores]) for k in ("accuracy", "nmi", "ari")},
                         float(np.mean(times))))

    print(f"\n{'data':9s} {'method':11s} {'accuracy':>15s} {'NMI':>15s} {'ARI':>15s} {'fit time':>9s}")
    for name, label, sc, t in rows:
        cells = " ".join(f"{sc[k].mean():.3f} +- {sc[k].std():.3f}" for k in ("accuracy", "nmi", "ari"))
        print(f"{name:9s} {label:11s} {cells} {t:8.1f}s")
    print("\nminus KMeans (mean accuracy / NMI / ARI), and fit time / KMeans:")
    by = {(n, m): sc for n, m, sc, _ in rows}
    fit = {(n, m): t for n, m, _, t in rows}
    for name, label, _, _ in rows:
        if label == "KMeans":
            continue
        d = [by[name, label][k].mean() - by[name, "KMeans"][k].mean() for k in ("accuracy", "nmi", "ari")]
        ratio = fit[name, label] / fit[name, "KMeans"]
        print(f"  {name:9s} {label:11s} {d[0]:+.3f} / {d[1]:+.3f} / {d[2]:+.3f}   time x{ratio:.1f}")


if __name__ == "__main__":
    main()
