"""Sizing Figure 2's demo: final test accuracy of H, H2 and GCE on label noise against images, epochs, eta.

Runs :func:`cce.training.weak.run_noisy` (the demo's own code path, no record written) for every
combination of the given sizes, losses, etas and seeds, on one CPU thread, and prints one line per
run: the final test accuracy, its peak over the epochs and the epoch of the peak (H fitting the
replaced labels shows as a fall from an early peak), and the wall time. Timings are of a shared
CPU: compare ratios within one invocation.

    PYTHONPATH=src python benchmarks/noisy_regime.py --root resources/data --images 5000 --epochs 15 \\
        --etas 0 0.8 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from cce.training.weak import run_noisy  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="prepared data root (python -m cce data)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--network", default="mlp")
    p.add_argument("--images", type=int, nargs="+", default=[5000])
    p.add_argument("--epochs", type=int, nargs="+", default=[15])
    p.add_argument("--batch-size", type=int, nargs="+", default=[250])
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-images", type=int, default=2000)
    p.add_argument("--losses", nargs="+", default=["shannon", "collision", "gce"])
    p.add_argument("--etas", type=float, nargs="+", default=[0.0, 0.8])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--noise", default="random", choices=["random", "other"])
    p.add_argument("--augment", action="store_true", help="keep rotation and flip (default: none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jsonl", default=None, help="append one JSON line per run here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for n in args.images:
        for epochs in args.epochs:
            for bs in args.batch_size:
                for eta in args.etas:
                    for loss in args.losses:
                        for seed in args.seeds:
                            opts = {"network": args.network, "max_images": n, "max_eval_images": args.eval_images,
                                    "epochs": epochs, "batch_size": bs, "lr": args.lr, "device": "cpu",
                                    "noise": args.noise}
                            if not args.augment:
                                opts.update(rotation=0.0, flip=False)
                            t0 = time.perf_counter()
                            r = run_noisy(args.dataset, args.root, loss, eta, seed, opts, progress=False)
                            wall = time.perf_counter() - t0
                            acc = r["info"]["curves"]["accuracy"]
                            row = {"images": n, "epochs": epochs, "batch_size": bs, "eta": eta, "loss": loss,
                                   "seed": seed, "final": acc[-1], "peak": max(acc),
                                   "peak_epoch": acc.index(max(acc)) + 1, "wall_s": round(wall, 1),
                                   "train_s": round(r["info"]["train_time_s"], 1), "curve": [round(a, 4) for a in acc]}
                            print(f"n {n:6d} ep {epochs:3d} bs {bs:4d} eta {eta:.2f} {loss:9s} seed {seed} "
                                  f"final {acc[-1]:.4f} peak {max(acc):.4f}@{row['peak_epoch']:2d} "
                                  f"wall {wall:6.1f} s", flush=True)
                            if args.jsonl:
                                with open(args.jsonl, "a") as f:
                                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
