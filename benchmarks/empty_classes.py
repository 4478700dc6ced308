"""Why L_CCE+ leaves classes empty from a random start, and what the ``start`` option changes.

Trains the deep methods with :func:`cce.training.deep.train_deep` (the Table 7 grey network,
Adam 1e-4, batch 250, two views) on a fixed subset of Fashion-MNIST's training images,
evaluated on test images after every epoch, and records at every training step, per class k,
on that step's batch (before its Adam step; step 0 is the network at initialisation):

- ``sigma``: the network's mean sigma_k over the batch (sigma_i the mean softmax of the views);
- ``label``: the pseudo-labels' share, mean_i y_ik (methods with pseudo-labels);
- ``push_h2`` and ``push_h``: minus the gradient of sum_i H2(y_i, sigma_i) (eq. 9), and of
  sum_i H(y_i, sigma_i) (eq. 8), with the same y, with respect to the views' logits, summed
  over views and images: how much the step raises class k's logit (they sum to 0 over k);
- ``push_own``: the same for the method's own loss (B times its batch mean);
- ``used``: the classes that the batch's argmax sigma_i uses.

The records come from a wrapper of ``cce.training.deep.batch_loss`` (the one call every step
makes), which computes these on detached copies and returns the loss unchanged.

    python benchmarks/empty_classes.py run --methods cce_plus mi_d --seeds 0 1 2 --starts plain balanced_bias \\
        --images 1000 --eval-images 2000 --epochs 5 --out results/empty_classes/runs.jsonl
    python benchmarks/empty_classes.py report results/empty_classes/runs.jsonl [--figure fig.png]

Images: Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist) or --raw DIR of the IDX files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
METHODS = ("mi_d", "iic", "sela", "mi_adm", "cce", "cce_plus")


def load_split(raw: Path, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed subset (:func:`cce.training.deep.fixed_subset`) of ``n`` images of one split."""
    from cce.data.formats import load_mnist_like
    from cce.training.deep import fixed_subset

    return fixed_subset(*load_mnist_like(raw, split), n)


def step_record(spec, state, view_logits, y) -> dict:
    """Per-class diagnostics of one step's batch: view_logits (V, B, K), y (B, K) or None."""
    from cce import losses
    from cce.training.deep_methods import batch_loss

    z = view_logits.detach().float().requires_grad_(True)
    B = z.shape[1]

    def push(fn) -> list[float]:
        (g,) = torch.autograd.grad(fn(z), z)
        return (-g.sum((0, 1))).tolist()

    with torch.no_grad():
        sig = losses.view_mixture_logits(z).exp()
    K = sig.shape[1]
    rec = {"sigma": sig.mean(0).tolist(),
           "used": int(torch.unique(sig.argmax(1)).numel()),
           "push_own": push(lambda v: B * batch_loss(spec, state, v, y))}
    if y is not None:
        yd = y.detach().float()
        rec["label"] = yd.mean(0).tolist()
        rec["label_argmax"] = torch.bincount(yd.argmax(1), minlength=K).tolist()
        rec["push_h2"] = push(lambda v: losses.collision_cross_entropy_with_logits(
            yd, losses.view_mixture_logits(v)).sum())
        rec["push_h"] = push(lambda v: losses.shannon_cross_entropy_with_logits(
            yd, losses.view_mixture_logits(v)).sum())
    return rec


class _InitRecorded(Exception):
    """Stops a run after its first step's record (``--init-only``)."""


def run(args: argparse.Namespace) -> None:
    import cce.training.deep as deep

    torch.set_num_threads(1)
    X, y = load_split(args.raw, "train", args.images)
    EX, Ey = load_split(args.raw, "test", args.eval_images)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.is_file():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["method"], r["seed"], r["start"]))
    original = deep.batch_loss
    for start in args.starts:
        for seed in args.seeds:
            for method in args.methods:
                if (method, seed, start) in done:
                    continue
                steps: list[dict] = []

                def recording(spec, state, view_logits, y=None, *rest, mixture=None, **kw):
                    steps.append(step_record(spec, state, view_logits, y))
                    if args.init_only:
                        raise _InitRecorded
                    return original(spec, state, view_logits, y, *rest, mixture=mixture, **kw)

                deep.batch_loss = recording
                t0, c0 = time.perf_counter(), time.process_time()
                info = {"curves": None, "timing": None}
                try:
                    _, info = deep.train_deep(X, 10, method, seed, {"epochs": args.epochs, "device": "cpu",
                                                                     "start": start, **json.loads(args.options)},
                                              y_true=y, dataset="fashion_mnist", eval_images=EX, eval_labels=Ey,
                                              progress=args.progress)
                except _InitRecorded:
                    pass
                finally:
                    deep.batch_loss = original
                wall = time.perf_counter() - t0
                cpu = time.process_time() - c0
                rec = {"method": method, "seed": seed, "start": start, "images": int(X.shape[0]),
                       "eval_images": int(EX.shape[0]), "epochs": args.epochs, "wall_s": wall, "cpu_s": cpu,
                       "threads": torch.get_num_threads(), "curves": info["curves"], "timing": info["timing"],
                       "steps": steps}
                with out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
                c = info["curves"]
                if c is None:
                    print(f"{start:14s} {method:9s} seed {seed}: first batch recorded", flush=True)
                    continue
                print(f"{start:14s} {method:9s} seed {seed}: used {c['n_clusters_nonempty']} "
                      f"acc {[round(a, 3) for a in c['accuracy']]} {wall:.0f} s", flush=True)


def _fmt(xs, scale=1.0, digits=2) -> str:
    return " ".join(f"{scale * x:6.{digits}f}" for x in xs)


def report(args: argparse.Namespace) -> None:
    runs = [json.loads(line) for line in Path(args.records).read_text().splitlines()]
    init = [r for r in runs if r["method"] == "cce_plus" and r["start"] == "plain" and r["curves"] is None]
    init = init or [r for r in runs if r["method"] == "cce_plus" and r["start"] == "plain"]
    print("## At initialisation: cce_plus's first batch, plain start (sigma, label: shares in %; pushes: "
          "-d(sum_i loss_i)/d logit_k)")
    for r in sorted(init, key=lambda r: r["seed"]):
        s = r["steps"][0]
        print(f"seed {r['seed']}  classes used by argmax sigma: {s['used']}")
        print("  class      " + " ".join(f"{k:6d}" for k in range(len(s["sigma"]))))
        print("  sigma %    " + _fmt(s["sigma"], 100, 1))
        print("  label %    " + _fmt(s["label"], 100, 1))
        print("  argmax y   " + " ".join(f"{k:6d}" for k in s["label_argmax"]))
        print("  push H2    " + _fmt(s["push_h2"], 1, 1))
        print("  push H     " + _fmt(s["push_h"], 1, 1))
    print("\n## The first batch per start: classes used by argmax sigma, smallest and largest sigma share (%), "
          "smallest push of H2 and of H on a class")
    for r in sorted((r for r in runs if r["method"] == "cce_plus"), key=lambda r: (r["start"], r["seed"])):
        s = r["steps"][0]
        print(f"{r['start']:14s} seed {r['seed']}: used {s['used']:2d}, sigma {100 * min(s['sigma']):4.1f} .. "
              f"{100 * max(s['sigma']):4.1f}, min push H2 {min(s['push_h2']):6.1f}, H {min(s['push_h']):6.1f}")
    runs = [r for r in runs if r["curves"] is not None]
    print("\n## Per start and method: classes used (test predictions) after epoch 1 and at the end, "
          "accuracy mean +- std over seeds, wall time")
    print("| start | method | seeds | classes epoch 1 | classes end | batch classes end | accuracy end | "
          "accuracy epoch 1 | wall s (median) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    keys = sorted({(r["start"], r["method"]) for r in runs}, key=lambda k: (k[0] != "plain", k[0], METHODS.index(k[1])))
    for start, method in keys:
        rs = sorted((r for r in runs if r["start"] == start and r["method"] == method), key=lambda r: r["seed"])
        c1 = [r["curves"]["n_clusters_nonempty"][0] for r in rs]
        ce = [r["curves"]["n_clusters_nonempty"][-1] for r in rs]
        a1 = np.array([r["curves"]["accuracy"][0] for r in rs])
        ae = np.array([r["curves"]["accuracy"][-1] for r in rs])
        wall = np.median([r["wall_s"] for r in rs])
        cb = [r["steps"][-1]["used"] for r in rs]  # the last step's batch, train mode (batch norm on the batch)
        print(f"| {start} | {method} | {len(rs)} | {', '.join(map(str, c1))} | {', '.join(map(str, ce))} | "
              f"{', '.join(map(str, cb))} | "
              f"{ae.mean():.3f} +- {ae.std(ddof=1) if len(ae) > 1 else 0:.3f} | {a1.mean():.3f} | {wall:.0f} |")
    print("\n## Per epoch (test predictions): classes used / accuracy")
    for r in sorted(runs, key=lambda r: (r["start"], METHODS.index(r["method"]), r["seed"])):
        c = r["curves"]
        print(f"{r['start']:14s} {r['method']:9s} seed {r['seed']}: "
              + " ".join(f"{u}/{a:.3f}" for u, a in zip(c["n_clusters_nonempty"], c["accuracy"])))
    steps = [len(r["steps"]) for r in runs]
    per_step = [r["wall_s"] / max(1, len(r["steps"])) for r in runs]
    print(f"\nseconds per step (wall incl. evaluation / steps): median {np.median(per_step):.2f} "
          f"({min(steps)}-{max(steps)} steps a run)")
    if args.figure:
        figure(runs, args.figure)


def figure(runs: list[dict], path: str) -> None:
    """Left: classes used by the batch's argmax against step, per method and start (mean over seeds).
    Right: test accuracy against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    colors = dict(zip(METHODS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for start, ls in (("plain", "-"), ("balanced_bias", "--")):
        for method in METHODS:
            rs = [r for r in runs if r["start"] == start and r["method"] == method]
            if not rs:
                continue
            n = min(len(r["steps"]) for r in rs)
            used = np.mean([[s["used"] for s in r["steps"][:n]] for r in rs], 0)
            ax1.plot(np.arange(n), used, ls, color=colors[method], label=f"{method} {start}")
            e = min(len(r["curves"]["accuracy"]) for r in rs)
            acc = np.mean([r["curves"]["accuracy"][:e] for r in rs], 0)
            ax2.plot(np.arange(1, e + 1), acc, ls, marker="o", color=colors[method])
    ax1.set(xlabel="training step", ylabel="classes used in the batch (argmax sigma)", ylim=(0, 10.5))
    ax2.set(xlabel="epoch", ylabel="test accuracy (Hungarian)")
    ax2.xaxis.get_major_locator().set_params(integer=True)
    ax1.legend(fontsize=6, ncol=2)
    fig.suptitle("solid: start plain, dashed: start balanced_bias (mean over seeds)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--starts", nargs="+", default=["plain", "balanced_bias"])
    r.add_argument("--images", type=int, default=1000)
    r.add_argument("--eval-images", type=int, default=2000)
    r.add_argument("--epochs", type=int, default=5)
    r.add_argument("--options", default="{}", help="JSON of further deep options, e.g. '{\"lam\": 100}'")
    r.add_argument("--raw", type=Path, default=FASHION_DIR)
    r.add_argument("--out", required=True)
    r.add_argument("--progress", action="store_true")
    r.add_argument("--init-only", action="store_true", help="record the first batch only, train nothing")
    s = sub.add_parser("report")
    s.add_argument("records")
    s.add_argument("--figure")
    args = p.parse_args(argv)
    if args.command == "run" and not args.raw.is_dir():
        sys.exit(f"no Fashion-MNIST in {args.raw}: apt-get install dataset-fashion-mnist or pass --raw")
    {"run": run, "report": report}[args.command](args)


if __name__ == "__main__":
    main()
