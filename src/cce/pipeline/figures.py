"""The paper's Tables 2 to 6 as figures: grouped bars of the mean over seeds with the standard deviation as
error bars, this run beside the paper's numbers where both hold a dataset.

Inputs are tables in :func:`cce.pipeline.tables.paper_layout`'s layout (``method``, ``{column}``,
``{column}_std``, in percent), the paper's own as :func:`cce.pipeline.tables.paper_table` reads it.
"""

from __future__ import annotations

import math

import pandas as pd

from .tables import data_columns

THIS_RUN, PAPER = "this run", "paper"
COLORS = {THIS_RUN: "tab:blue", PAPER: "tab:gray"}


def bar_data(ours: pd.DataFrame, paper: pd.DataFrame | None = None, paper_only: bool = True) -> pd.DataFrame:
    """Long table of the bars to draw: panel, method, source (``this run`` or ``paper``), mean, std.

    One panel per column of ``ours`` in its order, with the paper's bar beside this run's where the paper
    holds that column and method; then, with ``paper_only``, one panel per column only the paper holds
    (titled ``paper: {column}``), restricted to this run's methods, so that the orderings can be compared.
    Methods in ``ours``'s order; a method without a number in a panel has no bar there.
    """
    methods = list(ours["method"])
    ours_i = ours.set_index("method")
    paper_i = paper.set_index("method") if paper is not None else None
    paper_columns = data_columns(paper) if paper is not None else []
    rows = []

    def add(panel, source, table, column):
        for method in methods:
            if method in table.index and not pd.isna(table.loc[method, column]):
                std = table.loc[method, f"{column}_std"] if f"{column}_std" in table.columns else float("nan")
                rows.append({"panel": panel, "method": method, "source": source,
                             "mean": float(table.loc[method, column]), "std": float(std)})

    for column in data_columns(ours):
        add(column, THIS_RUN, ours_i, column)
        if column in paper_columns:
            add(column, PAPER, paper_i, column)
    if paper_only:
        for column in paper_columns:
            if column not in ours.columns:
                add(f"paper: {column}", PAPER, paper_i, column)
    return pd.DataFrame(rows, columns=["panel", "method", "source", "mean", "std"])


def method_labels(ours: pd.DataFrame, paper: pd.DataFrame | None = None) -> dict[str, str]:
    """The paper's name of each method (its ``title`` column, e.g. 'MI-GD', 'Our'), else the method's key."""
    titles = dict(zip(paper["method"], paper["title"])) if paper is not None and "title" in paper else {}
    return {m: titles.get(m, m) for m in ours["method"]}


def table_figure(ours: pd.DataFrame, paper: pd.DataFrame | None = None, title: str = "",
                 ylabel: str = "accuracy (%)", paper_only: bool = True, panels_per_row: int = 3):
    """Grouped bars of :func:`bar_data`: one panel per column, one group per method, a bar per source;
    error bars are the std over seeds (none where it is undefined: one seed, or the paper gives none).
    Returns the matplotlib Figure."""
    # a Figure of its own, not pyplot's: no backend switched, nothing kept open in a notebook kernel
    from matplotlib.figure import Figure

    data = bar_data(ours, paper, paper_only)
    if data.empty:
        raise ValueError("no numbers to draw: the table has no method with a value")
    labels = method_labels(ours, paper)
    panels = list(dict.fromkeys(data["panel"]))
    all_methods = [m for m in ours["method"] if m in set(data["method"])]
    n_cols = min(panels_per_row, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    width = max(3.2, 0.55 * len(all_methods) + 1.2)
    fig = Figure(figsize=(width * n_cols, 3.4 * n_rows))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        part = data[data["panel"] == panel]
        # the same slots in every panel of this run (empty where a method has no number); the paper's
        # own datasets: the methods it reports
        methods = [m for m in all_methods if m in set(part["method"])] if panel.startswith("paper: ") else all_methods
        sources = [s for s in (THIS_RUN, PAPER) if s in set(part["source"])]
        bar = 0.8 / len(sources)
        for j, source in enumerate(sources):
            rows = part[part["source"] == source].set_index("method")
            xs = [i + (j - (len(sources) - 1) / 2) * bar for i, m in enumerate(methods) if m in rows.index]
            present = [m for m in methods if m in rows.index]
            means = rows.loc[present, "mean"].to_numpy()
            stds = rows.loc[present, "std"].to_numpy()
            ax.bar(xs, means, bar, color=COLORS[source], label=source)
            shown = ~pd.isna(stds)  # no error bar where the std is undefined (one seed; the paper gives none)
            ax.errorbar([x for x, s in zip(xs, shown) if s], means[shown], yerr=stds[shown], fmt="none",
                        ecolor="black", elinewidth=1, capsize=3)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels([labels[m] for m in methods], rotation=30, ha="right", fontsize=8)
        ax.set_title(panel, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, max(100.0, float((part["mean"] + part["std"].fillna(0)).max()) * 1.05))
        ax.grid(axis="y", alpha=0.3)
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper right", ncol=len(handles), fontsize=8)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))  # 0.4 in on top for the title and legend
    return fig


def save_table_figure(path, ours: pd.DataFrame, paper: pd.DataFrame | None = None, **kwargs):
    """:func:`table_figure` written to ``path`` (PNG, atomically); returns the Figure (a notebook shows it)."""
    from pathlib import Path

    from ..io import atomic_path

    fig = table_figure(ours, paper, **kwargs)
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, dpi=110)
    return fig
