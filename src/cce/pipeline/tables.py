"""Aggregation of run records into the paper's tables (a pure function of the records)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Iterable

import pandas as pd

from .runs import read_record

METRICS = ("accuracy", "nmi", "ari", "n_clusters_nonempty")


def records_frame(paths: Iterable[Path | str]) -> pd.DataFrame:
    """One row per run record: identifiers, lam options, metrics, pseudo-label iterations, wall time."""
    rows = []
    for path in paths:
        r = read_record(path)
        curves = r.get("info", {}).get("curves", {})
        rows.append({
            "experiment": r["experiment"], "dataset": r["dataset"], "method": r["method"],
            "seed": r["seed"], "lam": r["options"].get("lam"), "lam_scale": r["options"].get("lam_scale"),
            # Table 4's labelled fraction, Figure 2's corrupted fraction and loss (None elsewhere)
            "fraction": r.get("fraction"), "eta": r.get("eta"), "loss": r.get("loss"),
            **{m: r["metrics"][m] for m in METRICS},
            "objective": r.get("info", {}).get("losses", {}).get("objective"),
            # mean solver iterations per batch in the last epoch (EM, PGD, ...)
            "label_iterations": (curves.get("label_iterations") or [None])[-1],
            "wall_time_s": r["wall_time_s"], "device": r["device"], "record": str(path),
        })
    if not rows:
        raise ValueError("no run records to aggregate")
    return pd.DataFrame(rows)


SUMMARY_COLUMNS = list(METRICS) + ["objective", "label_iterations", "wall_time_s"]


def summary(runs: pd.DataFrame, by: Iterable[str] = ("dataset", "method")) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every metric, per group (long format).

    The std is the sample std (ddof=1), as in :func:`paper_layout`; NaN for one seed.
    Groups with a missing key (e.g. ``lam`` of a baseline without one) are kept.
    """
    grouped = runs.groupby(list(by), sort=False, dropna=False)
    out = grouped[SUMMARY_COLUMNS].agg(["mean", "std"])
    out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
    out.insert(0, "n_seeds", grouped.size())
    return out.reset_index()


CURVE_COLUMNS = ("loss", "accuracy", "nmi", "ari", "n_clusters_nonempty", "label_iterations")


def curves_frame(paths: Iterable[Path | str]) -> pd.DataFrame:
    """The per-epoch curves of run records, long format: one row per (run, epoch).

    Columns: experiment, dataset, method, seed, epoch and :data:`CURVE_COLUMNS` (NaN where a
    record has no such curve, e.g. accuracy of a run without labels).
    """
    frames = []
    for path in paths:
        r = read_record(path)
        curves = r.get("info", {}).get("curves", {})
        if not curves.get("epoch"):
            raise ValueError(f"{path}: the record has no per-epoch curves")
        n = len(curves["epoch"])
        frame = pd.DataFrame({"epoch": curves["epoch"],
                              **{c: curves.get(c, [float("nan")] * n) for c in CURVE_COLUMNS}})
        frame.insert(0, "seed", r["seed"])
        frame.insert(0, "method", r["method"])
        frame.insert(0, "dataset", r["dataset"])
        frame.insert(0, "experiment", r["experiment"])
        frames.append(frame)
    if not frames:
        raise ValueError("no run records to aggregate")
    return pd.concat(frames, ignore_index=True)


def split_columns(runs: pd.DataFrame, field: str) -> pd.DataFrame:
    """``runs`` with ``dataset`` renamed to ``{dataset}@{field value}``, e.g. ``stl10@0.1`` for Table 4's
    columns (dataset x labelled fraction), to lay out with :func:`paper_layout`."""
    if runs[field].isna().any():
        raise ValueError(f"some records have no {field!r}: {sorted(set(runs.loc[runs[field].isna(), 'record']))[:3]}")
    out = runs.copy()
    out["dataset"] = [f"{d}@{v:g}" for d, v in zip(runs["dataset"], runs[field])]
    return out


def paper_layout(runs: pd.DataFrame, methods: list[str], datasets: list[str],
                 metric: str = "accuracy") -> pd.DataFrame:
    """Rows = methods (in the given order), columns = '{dataset}' mean and '{dataset}_std', in percent.

    This is the layout of the paper's Table 2 (accuracy, with the standard
    deviation over seeds in parentheses there). The paper does not say which
    standard deviation it reports over its 6 trials; this is the sample std
    (ddof=1), the usual estimate of seed-to-seed spread (ddof=0 would be
    sqrt(5/6) = 0.91 times it for 6 seeds), NaN for a single seed.
    """
    stats = runs.groupby(["method", "dataset"])[metric].agg(["mean", "std"]) * 100.0
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    for ds in datasets:
        for stat, col in (("mean", ds), ("std", f"{ds}_std")):
            table[col] = [stats[stat].get((m, ds), float("nan")) for m in methods]
    return table.reset_index()


def data_columns(table: pd.DataFrame) -> list[str]:
    """The data columns of a table in paper layout (datasets, or Table 4's ``{dataset}@{fraction}``)."""
    return [c for c in table.columns if c not in ("method", "title") and not c.endswith("_std")]


def paper_table(name: str) -> pd.DataFrame:
    """A table transcribed from the paper (``src/cce/paper/{name}.csv``)."""
    with resources.files("cce.paper").joinpath(f"{name}.csv").open() as f:
        return pd.read_csv(f, comment="#")


def compare_with_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Long table (method, dataset, ours, ours_std, paper, paper_std, difference) for the
    datasets and methods both tables hold; tables in :func:`paper_layout`'s layout."""
    datasets = [c for c in data_columns(ours) if c in paper.columns]
    merged = ours.merge(paper, on="method", suffixes=("", "_paper"))
    rows = [
        {"method": r["method"], "dataset": ds, "ours": r[ds], "ours_std": r[f"{ds}_std"],
         "paper": r[f"{ds}_paper"], "paper_std": r[f"{ds}_std_paper"]}
        for _, r in merged.iterrows() for ds in datasets
    ]
    out = pd.DataFrame(rows, columns=["method", "dataset", "ours", "ours_std", "paper", "paper_std"])
    out["difference"] = out["ours"] - out["paper"]
    return out


def _mean_std(mean, std) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ({std:.1f})"  # one seed: no std to print


def format_mean_std(table: pd.DataFrame) -> pd.DataFrame:
    """'mean (std)' strings, the way the paper prints its tables; '' where there are no runs."""
    datasets = data_columns(table)
    out = table.set_index("method")[[]].copy()
    for ds in datasets:
        out[ds] = [_mean_std(m, s) for m, s in zip(table[ds], table[f"{ds}_std"])]
    return out


def ordering_and_baseline(ours: pd.DataFrame, paper: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """What a run and the paper can be compared on when they share no dataset: per column (this run's, then
    the paper's) each method's rank (1 = highest mean accuracy) and, with a ``baseline`` method that both
    tables hold, its mean minus the baseline's in accuracy points.

    Rows: this run's methods, in its order. Ranks and differences in the paper's columns are among this
    run's methods only, so that the two orderings rank the same methods. Columns are pairs
    (``this run: {column}`` or ``paper: {column}``, ``rank`` or ``minus {baseline}``); tables in
    :func:`paper_layout`'s layout.
    """
    methods = list(ours["method"])
    out = pd.DataFrame(index=pd.Index(methods, name="method"))
    for source, table in (("this run", ours), ("paper", paper)):
        indexed = table.set_index("method")
        for column in data_columns(table):
            means = indexed[column].reindex(methods).astype(float)
            if means.isna().all():
                continue
            out[(f"{source}: {column}", "rank")] = means.rank(ascending=False, method="min").astype("Int64")
            if baseline is not None and baseline in methods and not pd.isna(means[baseline]):
                out[(f"{source}: {column}", f"minus {baseline}")] = means - means[baseline]
    out.columns = pd.MultiIndex.from_tuples(out.columns)
    return out
