"""Throughput of cce.data.features.resnet50 vs a plain loop over torchvision's ResNet-50.

Both get the same images, the same random weights (offline) and the same
preprocessing (cce.data.features.preprocess); the plain loop runs the model in
torch.no_grad on default-layout batches in the main process, the extractor adds
inference_mode, channels_last and DataLoader workers. Each timing includes
building the model. Repeats alternate the two; the medians and their ratio are
printed. Images: the first N Fashion-MNIST test images from Debian's
dataset-fashion-mnist when installed, otherwise random 32x32 RGB images.

    python benchmarks/features.py [--n-images 2000] [--repeats 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from cce import data
from cce.data import backbones, features
from cce.device import resolve_device

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def load_images(n: int) -> tuple[np.ndarray, str]:
    if FASHION.is_file():
        return np.array(data.read_idx(FASHION)[:n]), f"Fashion-MNIST test images from {FASHION}"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), "random 32x32 RGB images"


def plain_loop(images: np.ndarray, batch_size: int, device: str, image_size: int) -> np.ndarray:
    # torchvision's model as it comes (fc = identity), with the weights features.resnet50(weights=None, seed=0) uses
    model = backbones.resnet50_model(None, seed=0).to(device)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = features.preprocess(images[start : start + batch_size], image_size).contiguous()
            out.append(model(x.to(device)).cpu().numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = str(resolve_device(args.device))
    workers = features.default_workers() if args.num_workers is None else args.num_workers
    images, what = load_images(args.n_images)
    print(f"{len(images)} {what}, shape {images.shape[1:]}, resized to {args.image_size}; device {device}, "
          f"{torch.get_num_threads()} torch threads; batch size {args.batch_size}, {workers} worker(s); "
          f"torch {torch.__version__}, torchvision {torchvision.__version__}", flush=True)

    rates: dict[str, list[float]] = {"plain loop": [], "cce.data.features": []}
    for r in range(args.repeats):
        t = time.perf_counter()
        ref = plain_loop(images, args.batch_size, device, args.image_size)
        rates["plain loop"].append(len(images) / (time.perf_counter() - t))
        t = time.perf_counter()
        X, _ = features.resnet50(images, weights=None, batch_size=args.batch_size, num_workers=workers,
                                 device=device, image_size=args.image_size, progress=False)
        rates["cce.data.features"].append(len(images) / (time.perf_counter() - t))
        diff = float(np.abs(X - ref).max() / np.abs(ref).max())
        print(f"repeat {r + 1}: plain loop {rates['plain loop'][-1]:.2f} images/s, "
              f"cce.data.features {rates['cce.data.features'][-1]:.2f} images/s (max relative difference {diff:.1e})", flush=True)

    plain, ours = (statistics.median(rates[k]) for k in ("plain loop", "cce.data.features"))
    print(f"median over {args.repeats} repeats: plain loop {plain:.2f} images/s, cce.data.features {ours:.2f} images/s, "
          f"ratio {ours / plain:.2f}")


if __name__ == "__main__":
    main()
