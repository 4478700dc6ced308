"""Aggregation of run records into the paper's tables (a pure function of the records)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Iterable

import pandas as pd

from .runs import read_record

METRICS = ("accuracy", "nmi", "ari", "n_clusters_nonempty")


def records_frame(paths: Iterable[Path | str]) -> pd.DataFrame:
    """One row per run record: identifiers, metrics, wall time, device."""
    rows = []
    for path in paths:
        r = read_record(path)
        rows.append({
            "experiment": r["experiment"], "dataset": r["dataset"], "method": r["method"],
            "seed": r["seed"], **{m: r["metrics"][m] for m in METRICS},
            "wall_time_s": r["wall_time_s"], "device": r["device"], "record": str(path),
        })
    if not rows:
        raise ValueError("no run records to aggregate")
    return pd.DataFrame(rows)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every metric, per (dataset, method), long format."""
    grouped = runs.groupby(["dataset", "method"], sort=False)
    out = grouped[list(METRICS) + ["wall_time_s"]].agg(["mean", "std"])
    out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
    out.insert(0, "n_seeds", grouped.size())
    return out.reset_index()


def paper_layout(runs: pd.DataFrame, methods: list[str], datasets: list[str],
                 metric: str = "accuracy") -> pd.DataFrame:
    """Rows = methods (in the given order), columns = '{dataset}' mean and '{dataset}_std', in percent.

    This is the layout of the paper's Table 2 (accuracy, with the standard
    deviation over seeds in parentheses there). The std is the sample std
    (ddof=1), NaN for a single seed.
    """
    stats = runs.groupby(["method", "dataset"])[metric].agg(["mean", "std"]) * 100.0
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    for ds in datasets:
        for stat, col in (("mean", ds), ("std", f"{ds}_std")):
            table[col] = [stats[stat].get((m, ds), float("nan")) for m in methods]
    return table.reset_index()


def paper_table(name: str) -> pd.DataFrame:
    """A table transcribed from the paper (``src/cce/paper/{name}.csv``)."""
    with resources.files("cce.paper").joinpath(f"{name}.csv").open() as f:
        return pd.read_csv(f, comment="#")
