"""make gpu-check: one command that proves the CUDA path and times it, for a short GPU lease.

Parts, in this order, each timed; a part (or the rest of one) is skipped with the reason when the
time budget (``--budget-s``, wall clock from the start) is spent:

1. ``environment``   GPU, memory, torch / CUDA / cuDNN versions, the library's commit, carried packages;
2. ``cuda_tests``    every test marked ``cuda`` (``CUDA_TEST_FILES``), run by pytest, and its outcome;
3. ``ystep``         the y-step (``interior_point``, L_CCE+ at lam = 100, tol 1e-6, the ``cce_plus``
                     defaults) on the device against the compiled CPU path on the same batches, at
                     (M, K) = (250, 10), (160, 10), (250, 20), (250, 100), float32 and float64 sigma:
                     ms per y-step, iterations, the largest relative difference of the objectives;
4. ``deep_epochs``   one epoch of every deep method of Tables 3 and 6 on all 70,000 Fashion-MNIST
                     images (Table 7's grey 28x28 network, batch 250, two views), each after a
                     warm-up run on a few images: seconds per epoch, the shares of augmentation,
                     y-step, network and evaluation, images per second, GPU memory peak; float32, then bf16;
5. ``networks``      one epoch of the 32x32 and 96x96 networks and of ResNet-18 on random uint8
                     images of CIFAR10's (60,000) and STL10's (13,000) size, method ``mi_d`` (no y-step);
6. ``estimates``     from these epochs: the wall time of the paper config's Tables 3 + 6, Table 4 and
                     Figure 2 on this device, and the memory peak measured for each;
7. ``empty_class_remedy``  the decisive run on empty classes: ``cce_plus`` for 50 epochs on the 60,000 training
                     images, without and with ``EMPTY_CLASS_REMEDY`` (options of the deep method), two
                     seeds; the four runs advance together in chunks of epochs, so that a budget cut
                     leaves them at the same epoch.

``gpu_check.json`` and ``gpu_check.md`` are written to ``--out`` after every part (a command killed
at its limit still leaves the parts that finished) and the markdown is printed at the end.
``--size quick`` (a few dozen images, a few batches) runs the same code on the CPU in seconds:
tests/test_gpu_check.py runs it in ``make test``. docs/gpu.md says how to run it on a lent GPU.

    make gpu-check FMNIST_DIR=gpu/fashion-mnist OUT=$OUT
    python benchmarks/gpu_check.py --size quick --fmnist-dir /usr/share/datasets/fashion-mnist --out /tmp/gc
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# POT (SeLa's Sinkhorn) imports jax, cupy and tensorflow at its import where they are installed (a GPU
# image has jax and cupy): seconds of imports for backends the library never uses. Inherited by the tests' pytest.
for _key in ("POT_BACKEND_DISABLE_JAX", "POT_BACKEND_DISABLE_CUPY", "POT_BACKEND_DISABLE_TENSORFLOW"):
    os.environ.setdefault(_key, "1")

# The options of the deep method (cce_plus) that fight empty classes at the network's start,
# e.g. {"start": "..."}; None: the part is skipped ("remedy not defined").
EMPTY_CLASS_REMEDY: dict[str, Any] | None = {"start": "balanced_bias"}  # cce.training.starts

# Every test file holding tests marked `cuda` (tests/test_gpu_check.py checks this list against tests/).
CUDA_TEST_FILES = ("tests/test_cuda.py", "tests/test_interior_point.py")

YSTEP_SHAPES = ((250, 10), (160, 10), (250, 20), (250, 100))
FASHION_MNIST_ALL, FASHION_MNIST_TRAIN = 70000, 60000

# Per size: images of the deep epochs (None: all), warm-up images (0: none), batch size; y-step batches per
# shape; random images per network, their precisions; the remedy's images, epochs, epochs per chunk.
SIZES: dict[str, dict[str, Any]] = {
    "full": {"deep_images": None, "warmup_images": 1000, "batch": 250, "ystep_batches": 10,
             "network_images": {"rgb32": 60000, "rgb96": 13000, "resnet18": 60000}, "network_batch": None,
             "network_precisions": ("float32", "bf16"),
             "remedy_images": None, "remedy_epochs": 50, "remedy_chunk": 5},
    "quick": {"deep_images": 8, "warmup_images": 0, "batch": 4, "ystep_batches": 1,
              "network_images": {"rgb32": 8, "rgb96": 4, "resnet18": 4}, "network_batch": 4,
              "network_precisions": ("float32",), "remedy_images": 8, "remedy_epochs": 2, "remedy_chunk": 1},
}
CUDA_TESTS_TIMEOUT_S = 240  # the pytest run of the cuda-marked tests, at either size
# (name, network, image shape (H, W, C), batch size of Appendix F, the dataset it stands for)
NETWORK_RUNS = (("rgb32", "auto", (32, 32, 3), 250, "cifar10"),
                ("rgb96", "auto", (96, 96, 3), 160, "stl10"),
                ("resnet18", "resnet18", (32, 32, 3), 250, "cifar10"))
# The least time a part needs to start with; below it the part is skipped.
PART_MIN_S = {"environment": 0, "cuda_tests": 20, "ystep": 10, "deep_epochs": 30, "networks": 20, "estimates": 0,
              "empty_class_remedy": 60}


# ----------------------------------------------------------------------------
# Budget, device helpers
# ----------------------------------------------------------------------------
class Budget:
    """Wall-clock budget of the whole check, from its start."""

    def __init__(self, seconds: float):
        self.total = float(seconds)
        self.start = time.perf_counter()

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.start)

    def spent_reason(self, need: float) -> str:
        return (f"time budget spent: {max(self.left(), 0):.0f} s left of {self.total:.0f} s, "
                f"about {need:.0f} s needed")


class PartSkipped(Exception):
    """A part that does not run here, with the reason."""


def _torch():
    import torch

    return torch


def _sync(device) -> None:
    torch = _torch()
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> None:
    if device.type == "cuda":
        _torch().cuda.reset_peak_memory_stats(device)


def _peak_mib(device) -> float | None:
    if device.type != "cuda":
        return None  # not measured on the CPU
    return _torch().cuda.max_memory_allocated(device) / 2**20


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _commit() -> dict[str, Any]:
    """The library's commit (:func:`cce.provenance.git_commit`, else CCE_COMMIT), and a hash of src/cce/**/*.py
    that identifies the code where the working tree travelled without .git."""
    from cce.provenance import git_commit

    h = hashlib.sha256()
    for path in sorted((REPO / "src" / "cce").rglob("*.py")):
        h.update(path.relative_to(REPO).as_posix().encode())
        h.update(path.read_bytes())
    commit = git_commit(REPO / "src" / "cce" / "__init__.py")
    return {"source_sha256": h.hexdigest()[:16],
            "commit": commit.removesuffix("-dirty") if commit else os.environ.get("CCE_COMMIT") or None,
            "dirty": commit.endswith("-dirty") if commit else None}


# ----------------------------------------------------------------------------
# 1. Environment
# ----------------------------------------------------------------------------
def part_environment(ctx: dict[str, Any]) -> dict[str, Any]:
    torch = _torch()
    device = ctx["device"]
    env: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "host": socket.gethostname(), "python": platform.python_version(), "platform": platform.platform(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device), "size": ctx["size"], "budget_s": ctx["budget"].total,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "tf32_conv": bool(torch.backends.cudnn.allow_tf32), "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "packages": {name: _version(name) for name in ("numpy", "scipy", "numba", "kornia", "kornia_rs", "pot",
                                                       "scikit-learn", "pandas", "pytest", "hypothesis")},
        **_commit(),
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                   multiprocessors=p.multi_processor_count)
    else:
        env["gpu"] = None
    return env


def md_environment(r: dict[str, Any]) -> list[str]:
    gpu = (f"{r['gpu']}, {r['gpu_memory_gib']} GiB, compute capability {r['capability']}" if r.get("gpu")
           else "none (CPU run)")
    pk = ", ".join(f"{k} {v or 'missing'}" for k, v in r["packages"].items())
    commit = r["commit"] or "unknown"
    return [f"- device: {r['device']}; GPU: {gpu}",
            f"- torch {r['torch']} (CUDA {r['torch_cuda']}, cuDNN {r['cudnn']}), Python {r['python']}, "
            f"{r['cpu_count']} CPUs, {r['torch_threads']} torch threads; TF32 convolutions {r['tf32_conv']}, "
            f"matmul {r['tf32_matmul']}, cudnn.benchmark {r['cudnn_benchmark']}",
            f"- library commit {commit}{' (src modified)' if r['dirty'] else ''}, src sha256 {r['source_sha256']}",
            f"- {pk}",
            f"- {r['date_utc']} UTC on {r['host']}, size {r['size']}, budget {r['budget_s']:.0f} s"]


# ----------------------------------------------------------------------------
# 2. Tests marked cuda
# ----------------------------------------------------------------------------
def part_cuda_tests(ctx: dict[str, Any]) -> dict[str, Any]:
    timeout = min(CUDA_TESTS_TIMEOUT_S, max(ctx["budget"].left() - 5, 10))
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rA", "-p", "no:cacheprovider",
               f"--junitxml={junit}", *CUDA_TEST_FILES]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
            rc, out = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            rc, out = None, f"pytest stopped after {timeout:.0f} s\n" + ((err.stdout or b"").decode(errors="replace")
                                                                       if isinstance(err.stdout, bytes)
                                                                       else (err.stdout or ""))
        seconds = time.perf_counter() - t0
        tests = _junit_outcomes(junit) if junit.is_file() else []
    counts: dict[str, int] = {}
    for t in tests:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
    return {"command": " ".join(["python", *cmd[1:]]).replace(
                f"--junitxml={junit}", "--junitxml=..."),
            "returncode": rc, "seconds": seconds, "counts": counts, "tests": tests,
            "output_tail": out[-3000:]}


def _junit_outcomes(path: Path) -> list[dict[str, Any]]:
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                message = (el.get("message") or el.text or "").strip()[:500]
                break
        out.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                    "seconds": float(case.get("time") or 0), "message": message})
    return out


def md_cuda_tests(r: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{n} {k}" for k, n in sorted(r["counts"].items())) or "none collected"
    lines = [f"- `{r['command']}`: {counts} in {r['seconds']:.1f} s (pytest exit code {r['returncode']})"]
    skipped = sorted({t["message"] for t in r["tests"] if t["outcome"] == "skipped"})
    lines += [f"- skipped: {m}" for m in skipped]
    lines += [f"- **{t['outcome']}** `{t['test']}`: {t['message'][:300]}" for t in r["tests"]
              if t["outcome"] in ("failed", "error")]
    return lines


# ----------------------------------------------------------------------------
# 3. y-step: device against the compiled CPU path
# ----------------------------------------------------------------------------
@contextlib.contextmanager
def _torch_path_on_cpu():
    """Without CUDA, the device side is the torch implementation (the code CUDA runs) on the CPU:
    interior_point dispatches CPU tensors to the compiled functions, so those are swapped here."""
    from cce.pseudolabels import _interior_point as ip

    saved = ip._primal_dual_compiled, ip._barrier_compiled
    ip._primal_dual_compiled, ip._barrier_compiled = ip._primal_dual, ip._barrier
    try:
        yield
    finally:
        ip._primal_dual_compiled, ip._barrier_compiled = saved


def _ystep_batches(M: int, K: int, n: int, seed: int):
    """n batches of sigma (M, K): softmax of N(0, s^2) logits, s from 1 (an early network) to 6 (a confident one)."""
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    scales = np.linspace(1.0, 6.0, n) if n > 1 else [3.0]
    return [torch.softmax(float(s) * torch.randn(M, K, generator=g, dtype=torch.float64), 1) for s in scales]


def part_ystep(ctx: dict[str, Any]) -> dict[str, Any]:
    torch = _torch()
    from cce.methods import get_method
    from cce.pseudolabels import interior_point

    device, budget = ctx["device"], ctx["budget"]
    d = get_method("cce_plus").defaults
    lam, tol, max_iter = float(d["lam"]), float(d["tol"]), int(d["max_iter"])

    def solve(sigma):
        return interior_point(sigma, lam, fairness="reverse_kl", tol=tol, max_iter=max_iter)

    on_device = contextlib.nullcontext if device.type == "cuda" else _torch_path_on_cpu
    warm = _ystep_batches(250, 10, 1, 99)[0]
    t0 = time.perf_counter()
    solve(warm)  # numba compiles (or loads its cache) on the first call
    first_call_s = time.perf_counter() - t0
    with on_device():
        solve(warm.to(device))
    _sync(device)
    rows, skipped = [], []
    for seed, (M, K) in enumerate(YSTEP_SHAPES):
        for dtype in (torch.float32, torch.float64):
            name = f"M={M} K={K} {str(dtype).replace('torch.', '')}"
            need = 2 * (rows[-1]["cpu_ms"] + rows[-1]["device_ms"]) / 1000 * rows[-1]["batches"] + 2 if rows else 0
            if rows and budget.left() < need:
                skipped.append(f"{name}: {budget.spent_reason(need)}")
                continue
            batches = [b.to(dtype) for b in _ystep_batches(M, K, ctx["sizes"]["ystep_batches"], seed)]
            cpu_s = dev_s = 0.0
            cpu_it, dev_it, diffs, objectives = [], [], [], []
            for sigma in batches:
                t0 = time.perf_counter()
                _, info_c = solve(sigma)
                cpu_s += time.perf_counter() - t0
                s_dev = sigma.to(device)
                _sync(device)
                with on_device():
                    t0 = time.perf_counter()
                    y_d, info_d = solve(s_dev)
                    _sync(device)
                    dev_s += time.perf_counter() - t0
                f_c, f_d = info_c["objective"][-1], info_d["objective"][-1]
                cpu_it.append(info_c["iterations"])
                dev_it.append(info_d["iterations"])
                diffs.append(abs(f_d - f_c) / max(abs(f_c), 1e-12))
                objectives.append(f_c)
                if y_d.device.type != device.type or y_d.dtype != dtype:
                    raise AssertionError(f"{name}: y on {y_d.device} {y_d.dtype}, expected {device.type} {dtype}")
            n = len(batches)
            rows.append({"shape": [M, K], "dtype": str(dtype).replace("torch.", ""), "batches": n,
                         "cpu_ms": 1000 * cpu_s / n, "device_ms": 1000 * dev_s / n,
                         "cpu_iterations": float(np.mean(cpu_it)), "device_iterations": float(np.mean(dev_it)),
                         "max_rel_objective_diff": float(max(diffs)), "objectives": objectives})
    return {"lam": lam, "tol": tol, "fairness": "reverse_kl", "solver_precision": "float64 inside the solver",
            "device_side": str(device) if device.type == "cuda" else
            "cpu: the torch implementation that CUDA runs (no CUDA here)",
            "cpu_first_call_s": first_call_s, "rows": rows, "skipped": skipped}


def md_ystep(r: dict[str, Any]) -> list[str]:
    lines = [f"interior_point (L_CCE+, lam {r['lam']:g}, tol {r['tol']:g}); device side: {r['device_side']}; "
             f"compiled CPU path's first call (numba compile or cache load) {r['cpu_first_call_s']:.1f} s",
             "", "| M | K | sigma dtype | batches | CPU compiled ms | device ms | CPU it. | device it. | "
             "max rel. objective diff |", "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        M, K = row["shape"]
        lines.append(f"| {M} | {K} | {row['dtype']} | {row['batches']} | {row['cpu_ms']:.2f} | {row['device_ms']:.2f} "
                     f"| {row['cpu_iterations']:.1f} | {row['device_iterations']:.1f} | "
                     f"{row['max_rel_objective_diff']:.1e} |")
    lines += [f"- skipped {s}" for s in r["skipped"]]
    return lines


# ----------------------------------------------------------------------------
# 4. One deep epoch of every method on Fashion-MNIST
# ----------------------------------------------------------------------------
def load_fashion_mnist(directory: Path, split: str, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The IDX files of ``directory`` (Debian's layout), ``split`` all | train; a fixed subset of ``n``."""
    from cce.data.formats import load_mnist_like

    if not (directory / "train-images-idx3-ubyte.gz").is_file():
        raise PartSkipped(f"no Fashion-MNIST IDX files in {directory} (FMNIST_DIR): copy "
                          "/usr/share/datasets/fashion-mnist there (docs/gpu.md)")
    from cce.training.deep import fixed_subset

    return fixed_subset(*load_mnist_like(directory, split), n)


def _epoch_record(info: dict[str, Any], n_images: int, device) -> dict[str, Any]:
    t = info["timing"]
    epoch_s = float(t["epoch_s"][-1])
    parts = {k: float(t[k][-1]) for k in ("augment_s", "label_s", "network_s", "eval_s") if k in t}
    c = info["curves"]
    return {"epoch_s": epoch_s, **parts,
            "shares": {k[:-2]: v / epoch_s for k, v in parts.items()} if epoch_s > 0 else {},
            "images_per_s": n_images / epoch_s if epoch_s > 0 else None,
            "label_iterations": float(c["label_iterations"][-1]) if c.get("label_iterations") else None,
            "accuracy": float(c["accuracy"][-1]) if c.get("accuracy") else None,
            "clusters": int(c["n_clusters_nonempty"][-1]) if c.get("n_clusters_nonempty") else None,
            "memory_peak_mib": _peak_mib(device)}


def _timed_epoch(images, labels, n_clusters, method, options, ctx, *, network="auto", dataset=None
                 ) -> dict[str, Any]:
    """A warm-up run on a few images, then one timed epoch of ``method`` on ``images``."""
    from cce.training.deep import train_deep

    device = ctx["device"]
    opts = {"epochs": 1, "device": str(device), **options}
    n_w = min(ctx["sizes"]["warmup_images"], len(images))
    if n_w:
        train_deep(images[:n_w], n_clusters, method, 0, opts, y_true=labels[:n_w], dataset=dataset, progress=False,
                   network=network)
    _sync(device)
    _reset_peak(device)
    t0 = time.perf_counter()
    _, info = train_deep(images, n_clusters, method, 0, opts, y_true=labels, dataset=dataset, progress=False,
                         network=network)
    _sync(device)
    rec = _epoch_record(info, len(images), device)
    rec["call_s"] = time.perf_counter() - t0  # with the setup: data to the device, statistics, the model
    return rec


def part_deep_epochs(ctx: dict[str, Any]) -> dict[str, Any]:
    from cce.training.deep_methods import DEEP_METHODS

    budget, sizes = ctx["budget"], ctx["sizes"]
    images, labels = load_fashion_mnist(ctx["fmnist_dir"], "all", sizes["deep_images"])
    runs, skipped = [], []
    for precision in ("float32", "bf16"):
        for method in DEEP_METHODS:
            need = 1.5 * max((r["call_s"] for r in runs), default=0.0) + 2
            if runs and budget.left() < need:
                skipped.append(f"{method} {precision}: {budget.spent_reason(need)}")
                continue
            rec = _timed_epoch(images, labels, 10, method, {"batch_size": sizes["batch"], "precision": precision},
                               ctx, dataset="fashion_mnist")
            runs.append({"method": method, "precision": precision, **rec})
            print(f"  deep {method} {precision}: {rec['epoch_s']:.2f} s/epoch", file=sys.stderr, flush=True)
    return {"images": len(images), "batch_size": sizes["batch"], "network": "grey28", "n_views": 2,
            "warmup_images": sizes["warmup_images"], "runs": runs, "skipped": skipped}


def _warmup(r: dict[str, Any]) -> str:
    w = r.get("warmup_images")
    return f"one epoch after a warm-up run on {w} images" if w else "one epoch, no warm-up"


def _epoch_table(runs: list[dict[str, Any]], key: str) -> list[str]:
    lines = [f"| {key} | precision | s/epoch | augment | y-step | network | eval | images/s | y-step it. | "
             "acc. | clusters | GPU peak MiB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r["shares"]
        peak = f"{r['memory_peak_mib']:.0f}" if r["memory_peak_mib"] is not None else "n/a (CPU)"
        it = f"{r['label_iterations']:.1f}" if r["label_iterations"] else "-"
        acc = f"{r['accuracy']:.3f}" if r.get("accuracy") is not None else "-"
        lines.append(f"| {r[key]} | {r['precision']} | {r['epoch_s']:.2f} | {s.get('augment', 0):.0%} | "
                     f"{s.get('label', 0):.0%} | {s.get('network', 0):.0%} | {s.get('eval', 0):.0%} | "
                     f"{r['images_per_s']:.0f} | {it} | {acc} | {r.get('clusters', '-')} | {peak} |")
    return lines


def md_deep_epochs(r: dict[str, Any]) -> list[str]:
    lines = [f"{r['images']} Fashion-MNIST images, network {r['network']}, batch {r['batch_size']}, "
             f"{r['n_views']} views; {_warmup(r)}; shares of the epoch (eval: the per-epoch prediction of "
             "every image)", ""]
    return lines + _epoch_table(r["runs"], "method") + [f"- skipped {s}" for s in r["skipped"]]


# ----------------------------------------------------------------------------
# 5. The other networks on random images
# ----------------------------------------------------------------------------
def part_networks(ctx: dict[str, Any]) -> dict[str, Any]:
    budget, sizes = ctx["budget"], ctx["sizes"]
    runs, skipped = [], []
    rng = np.random.default_rng(0)
    for precision in sizes["network_precisions"]:
        for name, network, shape, batch, dataset in NETWORK_RUNS:
            need = 1.5 * max((r["call_s"] for r in runs), default=0.0) + 2
            if runs and budget.left() < need:
                skipped.append(f"{name} {precision}: {budget.spent_reason(need)}")
                continue
            n = sizes["network_images"][name]
            images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
            labels = rng.integers(0, 10, n)
            rec = _timed_epoch(images, labels, 10, "mi_d",
                               {"batch_size": sizes["network_batch"] or batch, "precision": precision}, ctx,
                               network=network, dataset=dataset)
            runs.append({"network": name, "stands_for": dataset, "images": n, "batch_size": sizes["network_batch"]
                         or batch, "precision": precision, **rec})
            print(f"  network {name} {precision}: {rec['epoch_s']:.2f} s/epoch", file=sys.stderr, flush=True)
    return {"method": "mi_d", "n_views": 2, "warmup_images": sizes["warmup_images"], "runs": runs,
            "skipped": skipped}


def md_networks(r: dict[str, Any]) -> list[str]:
    lines = [f"random uint8 images, method {r['method']} (no y-step), {r['n_views']} views, {_warmup(r)}; " + ", ".join(sorted({f"{x['network']}: {x['images']} images, batch {x['batch_size']}"
                                                for x in r["runs"]})), ""]
    return lines + _epoch_table(r["runs"], "network") + [f"- skipped {s}" for s in r["skipped"]]


# ----------------------------------------------------------------------------
# 6. Estimates of the paper config's deep experiments
# ----------------------------------------------------------------------------
def _paper_config() -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        raise PartSkipped("pyyaml is missing: config/config.yaml cannot be read") from None
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def _per_image(run: dict[str, Any]) -> dict[str, float]:
    """Seconds per image of one measured epoch: training (augmentation + network) and evaluation."""
    n = run["images"]
    return {"train": (run["epoch_s"] - run.get("eval_s", 0) - run.get("label_s", 0)) / n,
            "eval": run.get("eval_s", 0) / n}


def _batch_size(training: dict[str, Any], dataset: str) -> int:
    b = training.get("batch_size", 250)
    return int(b.get(dataset, b.get("default", 250))) if isinstance(b, dict) else int(b)


def part_estimates(ctx: dict[str, Any]) -> dict[str, Any]:
    from cce import data

    results = ctx["results"]
    deep = (results.get("deep_epochs") or {}).get("result") or {}
    nets = (results.get("networks") or {}).get("result") or {}
    if not deep.get("runs") or not nets.get("runs"):
        raise PartSkipped("needs the measured epochs of deep_epochs and networks")
    cfg = _paper_config()
    ystep = {tuple(r["shape"]): r["device_ms"] for r in ((results.get("ystep") or {}).get("result") or {})
             .get("rows", []) if r["dtype"] == "float64"}
    out: dict[str, Any] = {"assumptions": [], "experiments": {}}
    for precision in ("float32", "bf16"):
        by_method = {r["method"]: r for r in deep["runs"] if r["precision"] == precision}
        by_net = {r["network"]: r for r in nets["runs"] if r["precision"] == precision}
        if not by_method or not {"rgb32", "rgb96", "resnet18"} <= set(by_net):
            out["experiments"][precision] = {"skipped": f"{precision}: not every epoch was measured"}
            continue
        n_mnist, b_mnist = deep["images"], deep["batch_size"]
        mnist_unit = {m: _per_image({**r, "images": n_mnist}) for m, r in by_method.items()}
        net_unit = {k: _per_image(r) for k, r in by_net.items()}

        def label_s(method: str, n_train: int, batch: int, K: int) -> float:
            r = by_method.get(method)
            if r is None or not r.get("label_s"):
                return 0.0
            if method == "sela":  # the whole data set once per epoch: scales with the images
                return r["label_s"] * n_train / n_mnist
            per_batch = r["label_s"] / math.ceil(n_mnist / b_mnist)
            ratio = ystep.get((batch, K), ystep.get((250, 10), 1.0)) / ystep.get((250, 10), 1.0) if ystep else 1.0
            return per_batch * math.ceil(n_train / batch) * ratio

        def unit(dataset: str, network: str | None, method: str) -> dict[str, float]:
            if dataset in ("mnist", "fashion_mnist") and network in (None, "auto", "grey28"):
                return mnist_unit.get(method) or mnist_unit["mi_d"]
            name = {"cifar10": "rgb32", "cifar100_20": "rgb32", "stl10": "rgb96"}[dataset]
            return net_unit["resnet18" if network == "resnet18" else name]

        exps: dict[str, Any] = {}
        # Tables 3 + 6: every image of train + test, each method, seed; 50 epochs
        d = cfg["deep"]
        seconds = 0.0
        for ds in d["datasets"]:
            spec = data.get_spec(ds)
            n, batch, K = sum(spec.split_sizes.values()), _batch_size(d["training"], ds), spec.n_classes
            for m in d["methods"]:
                u = unit(ds, None, m)
                epoch = n * (u["train"] + u["eval"]) + label_s(m, n, batch, K)
                seconds += epoch * int(d["training"]["epochs"]) * int(d["seeds"])
        peaks = [r["memory_peak_mib"] for r in [*by_method.values(), by_net["rgb32"], by_net["rgb96"]]]
        exps["tables_3_6"] = _estimate(seconds, peaks, f"{len(d['datasets'])} datasets x {len(d['methods'])} "
                                       f"methods x {d['seeds']} seeds x {d['training']['epochs']} epochs")
        # Table 4: the train split; a step forwards the batch of all images and a labelled batch (2x the
        # network's training images), "Only seeds" the labelled batch alone; evaluation on the test split
        w = cfg["weak"]
        seconds = 0.0
        for ds in w["datasets"]:
            spec = data.get_spec(ds)
            n_tr, n_te = spec.split_sizes["train"], spec.split_sizes["test"]
            batch, K = _batch_size(w["training"], ds), spec.n_classes
            for m in w["methods"]:
                u = unit(ds, w["training"].get("network"), m if m != "seeds_only" else "mi_d")
                factor = 1 if m == "seeds_only" else 2
                epoch = n_tr * factor * u["train"] + n_te * u["eval"] + label_s(m, n_tr, batch, K)
                seconds += epoch * int(w["training"]["epochs"]) * int(w["seeds"]) * len(w["fractions"])
        peaks = [by_net["rgb32"]["memory_peak_mib"], by_net["rgb96"]["memory_peak_mib"]]
        exps["table_4"] = _estimate(seconds, peaks, f"{len(w['datasets'])} datasets x {len(w['methods'])} methods "
                                    f"x {len(w['fractions'])} fractions x {w['seeds']} seeds x "
                                    f"{w['training']['epochs']} epochs; peak at one batch (a weak step forwards two)")
        # Figure 2: targets only (no y-step), the train split, evaluation on the test split
        z = cfg["noisy"]
        seconds = 0.0
        for ds in z["datasets"]:
            spec = data.get_spec(ds)
            u = unit(ds, z["training"].get("network"), "mi_d")
            epoch = spec.split_sizes["train"] * u["train"] + spec.split_sizes["test"] * u["eval"]
            seconds += epoch * int(z["training"]["epochs"]) * int(z["seeds"]) * len(z["etas"]) * len(z["losses"])
        peaks = [by_net["resnet18"]["memory_peak_mib"] if z["training"].get("network") == "resnet18"
                 else by_net["rgb32"]["memory_peak_mib"]]
        exps["figure_2"] = _estimate(seconds, peaks, f"{len(z['datasets'])} dataset x {len(z['losses'])} losses x "
                                     f"{len(z['etas'])} etas x {z['seeds']} seeds x {z['training']['epochs']} epochs, "
                                     f"network {z['training'].get('network', 'auto')}")
        exps["total_h"] = sum(e["hours"] for e in exps.values() if isinstance(e, dict))
        out["experiments"][precision] = exps
    out["assumptions"] = [
        "epoch = images x (training + evaluation seconds per image, measured) + y-step seconds per batch x batches",
        "MNIST column: the per-method Fashion-MNIST epochs; CIFAR10 and CIFAR100-20: rgb32, STL10: rgb96, "
        "Figure 2: ResNet-18, all on random images with mi_d (network and augmentation alone)",
        "y-step per batch from the Fashion-MNIST epoch of each method, scaled by the y-step part's device time at "
        "the dataset's (batch, K); SeLa's whole-data-set labels scale with the images",
        "one job after another on this one GPU (no two jobs share it); data loading and the records not counted",
    ]
    if ctx["size"] != "full":
        out["assumptions"].append(f"size {ctx['size']}: per-image times from tiny epochs, meaningless as estimates")
    return out


def _estimate(seconds: float, peaks: list[float | None], what: str) -> dict[str, Any]:
    measured = [p for p in peaks if p is not None]
    return {"hours": seconds / 3600, "what": what, "memory_peak_mib": max(measured) if measured else None}


def md_estimates(r: dict[str, Any]) -> list[str]:
    lines = ["| experiment | precision | hours on this device | GPU peak MiB | what |", "|---|---|---|---|---|"]
    for precision, exps in r["experiments"].items():
        if "skipped" in exps:
            lines.append(f"| - | {precision} | skipped: {exps['skipped']} | | |")
            continue
        for name, e in exps.items():
            if isinstance(e, dict):
                peak = f"{e['memory_peak_mib']:.0f}" if e["memory_peak_mib"] is not None else "n/a (CPU)"
                lines.append(f"| {name} | {precision} | {e['hours']:.2f} | {peak} | {e['what']} |")
        lines.append(f"| all three | {precision} | {exps['total_h']:.2f} | | |")
    return lines + [f"- {a}" for a in r["assumptions"]]


# ----------------------------------------------------------------------------
# 7. The empty-class remedy, decisive run
# ----------------------------------------------------------------------------
def part_empty_class_remedy(ctx: dict[str, Any]) -> dict[str, Any]:
    from cce.training.deep import TrainingStopped, load_checkpoint, train_deep

    remedy = EMPTY_CLASS_REMEDY
    if remedy is None:
        raise PartSkipped("remedy not defined: EMPTY_CLASS_REMEDY in benchmarks/gpu_check.py is None")
    budget, sizes, device = ctx["budget"], ctx["sizes"], ctx["device"]
    images, labels = load_fashion_mnist(ctx["fmnist_dir"], "train", sizes["remedy_images"])
    epochs, chunk = int(sizes["remedy_epochs"]), int(sizes["remedy_chunk"])
    arms = {"without": {}, "with": dict(remedy)}
    runs = {(arm, seed): {"arm": arm, "seed": seed, "epoch": 0, "curves": None, "seconds": 0.0}
            for arm in arms for seed in (0, 1)}
    stopped_reason = None
    with tempfile.TemporaryDirectory() as tmp:
        while any(r["epoch"] < epochs for r in runs.values()):
            target = min(r["epoch"] for r in runs.values()) + chunk
            need = sum(r["seconds"] / max(r["epoch"], 1) * chunk for r in runs.values()) * 1.2 + 5
            if any(r["epoch"] for r in runs.values()) and budget.left() < need:
                stopped_reason = f"stopped after epoch {target - chunk} of {epochs}: {budget.spent_reason(need)}"
                break
            for (arm, seed), r in runs.items():
                ck = Path(tmp) / f"{arm}-{seed}.ckpt"
                opts = {"epochs": epochs, "device": str(device), **arms[arm]}
                t0 = time.perf_counter()
                try:
                    _, info = train_deep(images, 10, "cce_plus", seed, opts, y_true=labels, dataset="fashion_mnist",
                                         checkpoint=ck, stop_after_epoch=min(target, epochs), progress=False)
                    r["curves"] = info["curves"]
                except TrainingStopped:
                    r["curves"] = load_checkpoint(ck)["curves"]
                r["seconds"] += time.perf_counter() - t0
                r["epoch"] = len(r["curves"]["epoch"])
            print(f"  remedy: epoch {min(r['epoch'] for r in runs.values())}/{epochs}", file=sys.stderr, flush=True)
    rows = []
    for r in runs.values():
        c = r["curves"] or {}
        clusters = c.get("n_clusters_nonempty") or []
        rows.append({"arm": r["arm"], "seed": r["seed"], "epochs": r["epoch"], "seconds": r["seconds"],
                     "accuracy": c["accuracy"][-1] if c.get("accuracy") else None,
                     "clusters": clusters[-1] if clusters else None, "min_clusters": min(clusters) if clusters else None,
                     "clusters_curve": clusters, "accuracy_curve": c.get("accuracy") or []})
    return {"remedy": remedy, "method": "cce_plus", "images": len(images), "epochs": epochs, "rows": rows,
            "stopped": stopped_reason}


def md_empty_class_remedy(r: dict[str, Any]) -> list[str]:
    lines = [f"cce_plus on {r['images']} Fashion-MNIST training images, {r['epochs']} epochs; remedy {r['remedy']}",
             "", "| remedy | seed | epochs run | accuracy | clusters (last) | clusters (fewest) | seconds |",
             "|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        acc = f"{x['accuracy']:.3f}" if x["accuracy"] is not None else "-"
        lines.append(f"| {x['arm']} | {x['seed']} | {x['epochs']} | {acc} | {x['clusters']} | {x['min_clusters']} | "
                     f"{x['seconds']:.0f} |")
    if r["stopped"]:
        lines.append(f"- {r['stopped']}")
    return lines


# ----------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------
PARTS: dict[str, tuple[str, Callable, Callable]] = {
    "environment": ("Environment", part_environment, md_environment),
    "cuda_tests": ("Tests marked cuda", part_cuda_tests, md_cuda_tests),
    "ystep": ("y-step: device against the compiled CPU path", part_ystep, md_ystep),
    "deep_epochs": ("One deep epoch per method, Fashion-MNIST", part_deep_epochs, md_deep_epochs),
    "networks": ("One epoch of the other networks, random images", part_networks, md_networks),
    "estimates": ("Estimated wall time of the paper config's deep experiments", part_estimates, md_estimates),
    "empty_class_remedy": ("Empty classes at the start, with and without the remedy",
                           part_empty_class_remedy, md_empty_class_remedy),
}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# make gpu-check ({report['size']}, {report['device']})", ""]
    for name, part in report["parts"].items():
        title = PARTS[name][0]
        head = f"## {title} ({part['seconds']:.1f} s)"
        if part["status"] == "ok":
            lines += [head, "", *PARTS[name][2](part["result"]), ""]
        else:
            lines += [head, "", f"**{part['status']}**: {part['reason']}", ""]
    lines.append(f"Total {report['seconds']:.1f} s of a {report['budget_s']:.0f} s budget.")
    return "\n".join(lines) + "\n"


def run_check(size: str, fmnist_dir: Path, out: Path, budget_s: float, parts: list[str] | None = None,
              device: str = "auto") -> dict[str, Any]:
    """Run the parts in order; write gpu_check.json and gpu_check.md to ``out`` after each; return the report."""
    from cce.device import resolve_device

    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
    unknown = sorted(set(parts or []) - set(PARTS))
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; parts: {', '.join(PARTS)}")
    out.mkdir(parents=True, exist_ok=True)
    budget = Budget(budget_s)
    dev = resolve_device(device)
    ctx = {"size": size, "sizes": SIZES[size], "fmnist_dir": Path(fmnist_dir), "budget": budget, "device": dev,
           "results": {}}
    report = {"version": 1, "size": size, "device": str(dev), "budget_s": budget_s, "fmnist_dir": str(fmnist_dir),
              "parts": ctx["results"], "seconds": 0.0}
    for name, (title, fn, _) in PARTS.items():
        t0 = time.perf_counter()
        if parts and name not in parts:
            entry = {"status": "skipped", "reason": "not asked for (--parts)"}
        elif PART_MIN_S[name] and budget.left() < PART_MIN_S[name]:  # environment, estimates: always
            entry = {"status": "skipped", "reason": budget.spent_reason(PART_MIN_S[name])}
        else:
            print(f"[gpu-check] {title} ...", file=sys.stderr, flush=True)
            try:
                entry = {"status": "ok", "result": fn(ctx)}
            except PartSkipped as err:
                entry = {"status": "skipped", "reason": str(err)}
            except Exception as err:  # a broken part is reported; the others still run
                entry = {"status": "error", "reason": f"{type(err).__name__}: {err}",
                         "traceback": traceback.format_exc()[-4000:]}
        entry["seconds"] = time.perf_counter() - t0
        ctx["results"][name] = entry
        report["seconds"] = time.perf_counter() - budget.start
        _write(report, out)
    return report


def _write(report: dict[str, Any], out: Path) -> None:
    # atomic: a command killed at its time limit still leaves the last complete report
    from cce.io import atomic_path

    with atomic_path(out / "gpu_check.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    with atomic_path(out / "gpu_check.md") as tmp:
        tmp.write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="full")
    parser.add_argument("--fmnist-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="directory of the four Fashion-MNIST IDX .gz files")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "gpu_check")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget of the whole check")
    parser.add_argument("--parts", default="", help=f"comma-separated subset of: {', '.join(PARTS)}")
    parser.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu")
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p] or None
    report = run_check(args.size, args.fmnist_dir, args.out, args.budget_s, parts, args.device)
    print((args.out / "gpu_check.md").read_text())
    print(f"written: {args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'}")
    return 1 if any(p["status"] == "error" for p in report["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
