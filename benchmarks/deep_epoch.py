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


# Table 8 sizes (train + test) of the four datasets of Tables 3 and 6, and their networks' inputs.
PAPER_DATASETS = {"mnist": (70000, (28, 28)), "cifar10": (60000, (32, 32, 3)), "cifar100_20": (60000, (32, 32, 3)),
                  "stl10": (13000, (96, 96, 3))}
PAPER_METHODS = 6  # Table 3's five plus L_CCE of Table 6


def paper_flops(n_views: int = 2) -> dict[str, float]:
    """Network FLOPs of Table 3 + Table 6 per dataset: every image's views trained (forward and
    backward) and every image evaluated once per epoch, 50 epochs x 6 seeds x 6 methods.

    Counted by torch's FlopCounterMode on the Table 7 networks (multiply-adds count 2).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from cce.models import build_model

    out = {}
    for name, (n_images, shape) in PAPER_DATASETS.items():
        model = build_model(shape, 10)
        x = torch.randn(2, shape[2] if len(shape) == 3 else 1, shape[0], shape[1])
        with FlopCounterMode(display=False) as train:
            model(x).sum().backward()
        with FlopCounterMode(display=False) as evaluate, torch.no_grad():
            model(x)
        per_epoch = n_images * (n_views * train.get_total_flops() + evaluate.get_total_flops()) / 2
        out[name] = per_epoch * PAPER_EPOCHS * PAPER_SEEDS * PAPER_METHODS
    return out


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

    # The whole of Tables 3 and 6 from the networks' FLOPs, for a device this script did not run on:
    # the measured epochs above give this device's sustained rate on the MNIST network.
    flops = paper_flops()
    measured = [r for r in rows if r[0] in ("mi_d", "iic")] or rows  # no pseudo-label step: the network alone
    mnist_epoch = flops["mnist"] / (PAPER_EPOCHS * PAPER_SEEDS * PAPER_METHODS) * n / FULL_SIZE
    rate = mnist_epoch / statistics.median(r[1] for r in measured)
    total = sum(flops.values())
    print("\nTable 3 + Table 6 network FLOPs (forward + backward of 2 views, one evaluation pass, per image "
          "and epoch; 50 epochs x 6 seeds x 6 methods): "
          + ", ".join(f"{k} {v / 1e15:.0f}" for k, v in flops.items()) + f", total {total / 1e15:.0f} PFLOP")
    print(f"sustained here on the MNIST network (median of {', '.join(r[0] for r in measured)}): "
          f"{rate / 1e9:.1f} GFLOP/s -> {total / rate / 3600:.0f} h for Tables 3 + 6 on {args.device}")
    for tflops in (10, 30, 100):
        print(f"  at a sustained {tflops} TFLOP/s (an assumption, not a measurement): "
              f"{total / (tflops * 1e12) / 3600:.1f} h plus the pseudo-label steps")


if __name__ == "__main__":
    main()
