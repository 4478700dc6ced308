"""SeLa's Sinkhorn labels: cce.pseudolabels.sinkhorn (POT, NumPy on the CPU) against POT's torch
backend and the log-domain torch loop that cce used before it called POT.

    python benchmarks/sinkhorn.py [--sizes 250,70000] [--K 10] [--repeats 3]

Same problem for all: point masses 1/N, class masses 1/K, cost -ln sigma, epsilon 0.05,
tol 1e-4 and at most 1000 iterations (the sela method's defaults). POT stops on the L2 error
of the class marginals, the loop on the L1 error of the point marginals. Prints the best wall
time of the repeats, iterations, and the share of points whose hard label differs from cce's.
"""

from __future__ import annotations

import argparse
import math
import time

import torch


def torch_loop(sigma, epsilon, n_iter, tol):
    """cce's former sinkhorn: class marginals exact, stops on the L1 error of the point marginals."""
    M, K = sigma.shape
    logk = torch.log(sigma) / epsilon
    loga = torch.full((M,), -math.log(M), dtype=sigma.dtype)
    logb = torch.full((K,), -math.log(K), dtype=sigma.dtype)
    beta = torch.zeros(K, dtype=sigma.dtype)
    it = 0
    while it < n_iter:
        it += 1
        alpha = loga - torch.logsumexp(logk + beta, 1)
        beta = logb - torch.logsumexp(logk + alpha[:, None], 0)
        if it % 10 == 0 and float((torch.logsumexp(logk + beta, 1) + alpha).exp().sub(loga.exp()).abs().sum()) <= tol:
            break
    return (logk + alpha[:, None] + beta).argmax(1), it


def best_time(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,70000")
    parser.add_argument("--K", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    eps, n_iter, tol = 0.05, 1000, 1e-4

    start = time.perf_counter()
    import ot
    print(f"import ot: {time.perf_counter() - start:.2f} s (POT {ot.__version__}); torch threads "
          f"{torch.get_num_threads()}")
    from cce.pseudolabels import sinkhorn

    for N in map(int, args.sizes.split(",")):
        for dtype in (torch.float64, torch.float32):
            g = torch.Generator().manual_seed(0)
            sigma = torch.softmax(3.0 * torch.randn(N, args.K, generator=g, dtype=torch.float64), -1).to(dtype)
            a = torch.full((N,), 1.0 / N, dtype=dtype)
            b = torch.full((args.K,), 1.0 / args.K, dtype=dtype)
            t_cce, (y, info) = best_time(lambda: sinkhorn(sigma, n_iter=n_iter, epsilon=eps, tol=tol), args.repeats)
            t_pt, (plan, log) = best_time(lambda: ot.sinkhorn(a, b, -torch.log(sigma), eps, method="sinkhorn_log",
                                                              numItermax=n_iter, stopThr=tol, log=True),
                                          args.repeats)
            t_loop, (labels, it) = best_time(lambda: torch_loop(sigma, eps, n_iter, tol), args.repeats)
            ours = y.argmax(1)
            print(f"N={N:6d} K={args.K} {str(dtype)[6:]:8s} cce (POT, NumPy) {t_cce * 1e3:8.1f} ms "
                  f"{info['iterations']:4d} it | POT torch {t_pt * 1e3:8.1f} ms {int(log['niter']) + 1:4d} it, "
                  f"labels differ {float((plan.argmax(1) != ours).double().mean()):.1e} | "
                  f"former torch loop {t_loop * 1e3:8.1f} ms {it:4d} it, "
                  f"labels differ {float((labels != ours).double().mean()):.1e}", flush=True)


if __name__ == "__main__":
    main()
