"""Seconds per epoch of every deep method (Table 3/6) on the MNIST network of Table 7, and where they go.

One run of this script trains each method for a few epochs on the same subset of
Fashion-MNIST (28x28 grey, the MNIST network "grey28") and prints, per method, the median
seconds per epoch (over the epochs after the first, which carries one-off warm-up) and
the share of an epoch spent in the self-augmentation, the pseudo-label step, the network
(forward, loss, backward, Adam step) and the evaluation pass that gives the per-epoch
curves. It then scales the epoch time to the full data set (70000 images) and to Table 3's
MNIST column (50 epochs x 6 seeds).

    .venv/bin/python benchmarks/deep_epoch.py                         # CPU, 1000 images
    .venv/bin/python benchmarks/deep_epoch.py --device cuda --images 70000 --epochs 2

Images: the first of --root (a prepared data root, `python -m cce data fashion_mnist`) or
/usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist); a fixed random subset
of --images of train + test. On CUDA the timers synchronize the device at each boundary.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FULL_SIZE, PAPER_EPOCHS, PAPER_SEEDS = 70000, 50, 6


def load_images(root: Path | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    from cce import data
    from cce.data.formats import load_mnist_like

    if root is not None:
        images, labels = data.load("fashion_mnist", root, "all")
    elif FASHION_DIR.is_dir():
        images, labels = load_mnist_like(FASHION_DIR, "all")
    else:
        sys.exit(f"no Fashion-MNIST: pass --root of a prepared data root or install Debian's "
                 f"dataset-fashion-mnist ({FASHION_DIR})")
    keep = np.sort(np.random.default_rng(0).choice(len(images), min(n, len(images)), replace=False))
    return images[keep], labels[keep]


def main(argv=None) -> None:
    from cce.training.deep import DEEP_METHODS, train_deep

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per method (the first is not counted)")
    parser.add_argument("--methods", default=",".join(DEEP_METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32", choices=["float32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    images, labels = load_images(args.root, args.images)
    n = len(images)
    print(f"Fashion-MNIST subset of {n} images (28x28 grey, network grey28), batch {args.batch_size}, "
          f"2 views per image, {args.epochs} epochs per method, device {args.device}, precision "
          f"{args.precision}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}")
    rows = []
    for method in args.methods.split(","):
        opts = {"epochs": args.epochs, "batch_size": args.batch_size, "device": args.device,
                "precision": args.precision}
        _, info = train_deep(images, 10, method, 0, opts, y_true=labels, dataset="fashion_mnist", progress=False)
        t = info["timing"]
        counted = slice(1, None) if args.epochs > 1 else slice(None)
        epoch_s = statistics.median(t["epoch_s"][counted])
        share = {k: sum(t[k][counted]) / sum(t["epoch_s"][counted]) for k in ("augment_s", "label_s", "network_s",
                                                                            "eval_s")}
        rows.append((method, epoch_s, share, info["curves"]["label_iterations"][-1]))
        print(f"  {method:9s} {epoch_s:8.2f} s/epoch", file=sys.stderr, flush=True)

    print(f"\n{'method':10s} {'s/epoch':>9s} {'augment':>8s} {'labels':>7s} {'network':>8s} {'eval':>6s} "
          f"{'label it.':>9s} {'s/epoch @70000':>15s} {'h, 50 ep x 6 seeds':>19s}")
    total_h = 0.0
    for method, epoch_s, share, iters in rows:
        full = epoch_s * FULL_SIZE / n
        hours = full * PAPER_EPOCHS * PAPER_SEEDS / 3600
        total_h += hours
        print(f"{method:10s} {epoch_s:9.2f} {share['augment_s']:8.1%} {share['label_s']:7.1%} "
              f"{share['network_s']:8.1%} {share['eval_s']:6.1%} {iters:9.1f} {full:15.1f} {hours:19.2f}")
    print(f"\nMNIST column of Table 3 + Table 6 (these methods, 50 epochs, 6 seeds, 70000 images), "
          f"scaled linearly from {n} images: {total_h:.1f} h on {args.device}")


if __name__ == "__main__":
    main()
