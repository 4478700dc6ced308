"""Why H2 collapsed in the old demo Figure 2 (grey network of Table 7, 300 images, 4 epochs, batch 20).

The old setting: Fashion-MNIST, the first 300 images of the demo's fixed subset, 500 test images, the
grey28 network (batch norm), Adam lr 1e-3, batch 20, 4 epochs, one augmented view (rotation 25 deg,
flip), labels replaced from the OTHER classes (``noise: other``), soft targets
eta * u + (1 - eta) * onehot(observed). This script re-trains that setting in its own loop (the same
library pieces as :func:`cce.training.deep.train_deep`: network, standardization, augmentation,
targets, loss), and prints, per variant:

* predictions at initialisation on the training images: mean max-softmax (confidence), the number
  of classes the arg-max uses, and the largest class's share, with batch norm in train mode (batch
  statistics, what the loss sees) and in eval mode (running statistics, what the test sees);
* H2's per-image gradient weight in the first epoch, w_i = (1 - eta) sigma_c / ((1 - eta) sigma_c +
  eta / K) (the factor by which H2's gradient is H's on the observed label c): mean, and the share of
  images with w < 0.1, in the first and last step of epoch 1 and over the whole epoch;
* after training: test accuracy and the number of classes predicted (eval-mode batch norm, as the
  demo reports), and the same with batch statistics (train mode) to see whether the running
  statistics decide it.

Variants: the old setting at eta 0.5 and 0.8 for H and H2 (seeds 0, 1), then for H2 at eta 0.8: lr 1e-4,
a warm-up of one epoch with H before H2 (``warmup_epochs``), and two more seeds (the start).

    PYTHONPATH=src python benchmarks/noisy_collapse.py --root resources/data
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from cce import data  # noqa: E402
from cce.data.augment import SelfAugmentation  # noqa: E402
from cce.models import build_network  # noqa: E402
from cce.training.deep import Standardize, _channel_stats, fixed_subset  # noqa: E402
from cce.training.deep_methods import target_loss  # noqa: E402
from cce.training.weak import corrupt_labels, soft_targets  # noqa: E402

K = 10


def _summary(probs: torch.Tensor) -> str:
    pred = probs.argmax(1)
    counts = torch.bincount(pred, minlength=probs.shape[1])
    return (f"conf {probs.max(1).values.mean():.3f} classes {int((counts > 0).sum()):2d} "
            f"largest {counts.max().item() / pred.numel():.2f}")


def _probs(model: nn.Module, x: torch.Tensor, train_mode: bool) -> torch.Tensor:
    model.train(train_mode)
    with torch.no_grad():
        # train mode: batch statistics of the whole set at once (no running-stat update matters here)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        p = torch.softmax(model(x), 1)
        model.load_state_dict(state)
    model.train()
    return p


def run(args, *, eta: float, loss: str, seed: int, lr: float, epochs: int, warmup_epochs: int = 0,
        batch_size: int = 20, network: str = "grey28", verbose: bool = True) -> dict:
    x_tr, y_tr = data.load("fashion_mnist", args.root, "train")
    x_te, y_te = data.load("fashion_mnist", args.root, "test")
    x_tr, y_tr = fixed_subset(x_tr, y_tr, args.images)
    x_te, y_te = fixed_subset(x_te, y_te, args.eval_images)
    observed, _ = corrupt_labels(y_tr, eta, K, seed, noise=args.noise)
    T = torch.from_numpy(soft_targets(observed, eta, K)).float()
    X = torch.from_numpy(x_tr[:, None].copy())
    XT = torch.from_numpy(x_te[:, None].copy())
    aug = SelfAugmentation(1, flip=True, rotation=25.0, color=False)
    torch.manual_seed(seed)
    mean, std = _channel_stats(X, 255.0)
    model = nn.Sequential(Standardize(mean, std), build_network(network, (28, 28), K))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    gen_aug = torch.Generator().manual_seed(seed + 2)
    xu, xtu = aug.to_unit(X), aug.to_unit(XT)
    out = {"init_train_bn_batch": _summary(_probs(model, xu, True)),
           "init_train_bn_running": _summary(_probs(model, xu, False))}
    obs_t = torch.from_numpy(observed)
    weights: list[torch.Tensor] = []
    step_w = []
    for epoch in range(epochs):
        order = torch.randperm(X.shape[0], generator=gen)
        for i in range(0, X.shape[0], batch_size):
            idx = order[i:i + batch_size]
            logits = model(aug(X[idx], gen_aug, 1))
            if epoch == 0:
                with torch.no_grad():
                    s_c = torch.softmax(logits, 1).gather(1, obs_t[idx, None]).squeeze(1)
                    w = (1 - eta) * s_c / ((1 - eta) * s_c + eta / K) if eta > 0 else torch.ones_like(s_c)
                weights.append(w)
                step_w.append((float(w.mean()), float((w < 0.1).float().mean())))
            name = "shannon" if epoch < warmup_epochs else loss
            batch = target_loss(logits.unsqueeze(0), T[idx], name)
            opt.zero_grad()
            batch.backward()
            opt.step()
    w_all = torch.cat(weights)
    out["w_first_step"] = step_w[0]
    out["w_last_step"] = step_w[-1]
    out["w_epoch1_mean"] = float(w_all.mean())
    out["w_epoch1_below_0.1"] = float((w_all < 0.1).float().mean())
    for mode, train_mode in (("eval_bn_running", False), ("eval_bn_batch", True)):
        p = _probs(model, xtu, train_mode)
        out[f"test_acc_{mode}"] = float((p.argmax(1).numpy() == y_te).mean())
        out[f"test_{mode}"] = _summary(p)
    if verbose:
        print(f"eta {eta:.1f} {loss:9s} seed {seed} lr {lr:g} epochs {epochs:2d} warm-up(H) {warmup_epochs} | "
              f"init: batch-BN {out['init_train_bn_batch']}; running-BN {out['init_train_bn_running']} | "
              f"H2 weight epoch 1: first step {step_w[0][0]:.3f} ({100 * step_w[0][1]:.0f}% < 0.1), "
              f"last step {step_w[-1][0]:.3f} ({100 * step_w[-1][1]:.0f}% < 0.1), "
              f"epoch mean {out['w_epoch1_mean']:.3f} | test acc {out['test_acc_eval_bn_running']:.3f} "
              f"({out['test_eval_bn_running']}), with batch stats {out['test_acc_eval_bn_batch']:.3f} "
              f"({out['test_eval_bn_batch']})", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="prepared data root (python -m cce data)")
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--eval-images", type=int, default=500)
    p.add_argument("--noise", default="other", choices=["random", "other"])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    print("# the old setting (grey28, lr 1e-3, batch 20, 4 epochs) and, for H2 at eta 0.8, a 10x lower learning rate "
          "and a warm-up of one epoch with H", flush=True)
    for seed in (0, 1):
        for eta in (0.8, 0.5):
            for loss in ("collision", "shannon"):
                run(args, eta=eta, loss=loss, seed=seed, lr=1e-3, epochs=4)
        run(args, eta=0.8, loss="collision", seed=seed, lr=1e-4, epochs=4)
        run(args, eta=0.8, loss="collision", seed=seed, lr=1e-3, epochs=4, warmup_epochs=1)
    print("# H2 at eta 0.8, other starts", flush=True)
    for seed in (2, 3):
        run(args, eta=0.8, loss="collision", seed=seed, lr=1e-3, epochs=4)
    print(f"# {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
