"""Benchmark of the y-solvers (paper Table 1): EM (plain and SQUAREM) vs projected gradient descent.

    python benchmarks/solvers.py [--quick] [--device cpu|cuda] [--threads N] [--out DIR]

Prints, from one run: Table 1 for both readings of the paper's lam = 100 ("batch": lam / M
= 0.4 in the mean form, eq. 15 read literally; "mean": lam = 100 in the mean form), EM vs the
best PGD step (time to convergence and at equal final objective), plain vs SQUAREM EM, and
how the time per EM iteration grows with M and K. Times are medians over repeats on the
machine at hand; nothing here asserts a time. --quick finishes in well under a minute.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from cce.pipeline.table1 import (
    default_steps,
    save_table,
    table1_readings,
    time_per_iteration_scaling,
)

COLUMNS = ["method", "K", "step", "time_per_iter", "iterations", "em_steps", "time_to_converge",
           "final_objective", "gap_to_best", "converged", "diverged", "time_to_target", "repeats"]


def _fmt(df: pd.DataFrame) -> str:
    return df.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small budgets (under a minute)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads (default 1: steadier timings on a shared machine; 0 = torch's)")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables as CSV here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    M, lam = 250, 100.0
    if args.quick:
        cfg = dict(repeats=1, max_iter=200, reference_iter=100, max_time=2.0)
        grid, scal = 0, dict(Ms=(250, 1000, 10000), n_iter=2, repeats=1, max_elements=2_000_000)
    else:
        cfg = dict(repeats=3, max_iter=5000, reference_iter=2000, max_time=20.0)
        grid, scal = 3, dict(Ms=(250, 1000, 10000, 100000), n_iter=5, repeats=3, max_time=30.0)

    t_start = time.perf_counter()
    print(f"# cce solver benchmark  python {platform.python_version()}  torch {torch.__version__}  "
          f"device {args.device}  threads {torch.get_num_threads()}  quick={args.quick}")
    print(f"# sigma = softmax(N(0,1) logits), seed {args.seed} + K; M = {M}; float64; same stopping rule "
          f"for all: |dF| <= 1e-7 |F|, max_iter {cfg['max_iter']}; medians of {cfg['repeats']} repeats "
          f"(fewer when a run exceeds {cfg['max_time']} s)")
    summaries = {}
    tables, sums = table1_readings(("batch", "mean"), M=M, grid_decades=grid, Ks=(2, 20, 200), lam=lam,
                                   seed=args.seed, tol=1e-7, device=args.device, **cfg)
    for lam_scale in ("batch", "mean"):
        steps = default_steps(lam_scale, M, grid_decades=grid)  # the steps table1_readings used
        df = tables[tables["lam_scale"] == lam_scale].drop(columns="lam_scale").reset_index(drop=True)
        s = sums[sums["lam_scale"] == lam_scale].drop(columns="lam_scale").reset_index(drop=True)
        lam_eff = df["lam"].iloc[0]
        print(f"\n## Table 1, lam_scale={lam_scale}: objective mean_i H2 + {lam_eff:g} KL(u || ybar)")
        print("## PGD steps (on the gradient of M x objective): "
              + "; ".join(f"K={K}: {', '.join(f'{s:g}' for s in steps[K])}" for K in (2, 20, 200)))
        print(_fmt(df[COLUMNS]))
        best = df.groupby("K")[["best_objective", "best_lower_bound"]].first()
        best["certified_gap"] = (best["best_objective"] - best["best_lower_bound"]) / best["best_objective"]
        print("## best objective found per K and its dual lower bound")
        print(_fmt(best.reset_index()))
        summaries[lam_scale] = s
        print("## EM vs best PGD (lowest final objective among non-diverged steps); times in s")
        print(_fmt(s[["K", "pgd_step", "pgd_time", "pgd_iterations", "pgd_objective", "em_time", "em_iterations",
                      "em_objective", "sq_time", "sq_iterations", "sq_objective", "ratio_pgd_over_em",
                      "ratio_pgd_over_sq"]]))
        print("## at equal objective (target = the worse final objective of the pair)")
        print(_fmt(s[["K", "target_em", "em_time_at_target", "pgd_time_at_target_em", "ratio_at_equal_objective_em",
                      "target_sq", "sq_time_at_target", "pgd_time_at_target_sq", "ratio_at_equal_objective_sq"]]))
        print("## plain EM vs SQUAREM EM at equal objective")
        print(_fmt(s[["K", "target_sq_vs_em", "em_time_at_target_sq", "sq_time_at_target_em", "squarem_speedup"]]))
        if args.out:
            save_table(df, args.out / f"table1_{lam_scale}.csv")
            save_table(s, args.out / f"table1_summary_{lam_scale}.csv")

    print("\n## Headline (K = 200)")
    for lam_scale, s in summaries.items():
        r = s[s["K"] == 200].iloc[0]
        print(f"lam_scale={lam_scale:5s} lam={r['lam']:g}: best PGD step {r.get('pgd_step', float('nan')):g}: "
              f"{r.get('pgd_time', float('nan')):.4g} s; plain EM {r['em_time']:.4g} s "
              f"(x{r.get('ratio_pgd_over_em', float('nan')):.3g}), SQUAREM EM {r['sq_time']:.4g} s "
              f"(x{r.get('ratio_pgd_over_sq', float('nan')):.3g}); at equal objective: plain EM "
              f"x{r.get('ratio_at_equal_objective_em', float('nan')):.3g}, SQUAREM EM "
              f"x{r.get('ratio_at_equal_objective_sq', float('nan')):.3g}; SQUAREM vs plain EM "
              f"x{r['squarem_speedup']:.3g}")

    print("\n## Plain EM time per iteration vs M and K (lam_scale=batch: lam = 100 / M; mean: lam = 100)")
    for lam_scale in ("batch", "mean"):
        sc = time_per_iteration_scaling(Ks=(2, 20, 200), lam=lam, lam_scale=lam_scale, seed=args.seed,
                                        device=args.device, **scal)
        print(f"# lam_scale={lam_scale}; newton_iterations = max over the M-steps timed")
        piv = sc.pivot(index="M", columns="K", values="time_per_iter")
        print(_fmt(piv.reset_index().rename(columns=lambda c: f"K={c}" if c != "M" else c)))
        print("per element (s / (M K)):")
        piv2 = piv / (piv.index.values[:, None] * piv.columns.values[None, :])
        print(_fmt(piv2.reset_index().rename(columns=lambda c: f"K={c}" if c != "M" else c)))
        print("newton iterations:", dict(zip(zip(sc["M"], sc["K"]), sc["newton_iterations"])))
        if args.out:
            save_table(sc, args.out / f"em_scaling_{lam_scale}.csv")
    print(f"\n# total {time.perf_counter() - t_start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
