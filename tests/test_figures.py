"""The paper's Tables 2 to 6 as grouped bars (src/cce/pipeline/figures.py).

Tables are written here in paper layout with numbers chosen so that a swapped mean and std, a bar drawn
for a missing number, the paper's bar where the paper has no such dataset, or an error bar for an
undefined std each shows.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cce.pipeline.figures import PAPER, THIS_RUN, bar_data, method_labels, save_table_figure, table_figure
from cce.pipeline.tables import paper_table

NAN = float("nan")


@pytest.fixture
def ours():
    # mnist is the paper's too; fashion_mnist is not; cce_plus has no fashion_mnist number; kmeans one seed
    return pd.DataFrame({"method": ["kmeans", "mi_gd", "cce_plus"],
                         "mnist": [40.0, 50.0, 60.0], "mnist_std": [NAN, 2.0, 3.0],
                         "fashion_mnist": [30.0, 35.0, NAN], "fashion_mnist_std": [1.0, 1.5, NAN]})


@pytest.fixture
def paper():
    return pd.DataFrame({"method": ["kmeans", "mi_gd", "sela", "cce_plus"], "title": ["Kmeans", "MI-GD", "SeLa", "Our"],
                         "stl10": [85.0, 89.0, 90.0, 92.0], "stl10_std": [5.9, 6.4, 4.8, 6.4],
                         "mnist": [47.0, 53.0, 52.0, 58.0], "mnist_std": [2.1, 3.0, 5.2, 3.2]})


def test_bar_data_pairs_this_run_with_the_paper_where_both_hold_a_dataset(ours, paper):
    bars = bar_data(ours, paper).set_index(["panel", "method", "source"])
    # this run's panels first, in its column order, then the paper's own datasets
    assert list(dict.fromkeys(bars.index.get_level_values("panel"))) == ["mnist", "fashion_mnist", "paper: stl10"]
    assert bars.loc[("mnist", "mi_gd", THIS_RUN), "mean"] == 50.0
    assert bars.loc[("mnist", "mi_gd", THIS_RUN), "std"] == 2.0
    assert bars.loc[("mnist", "mi_gd", PAPER), "mean"] == 53.0 and bars.loc[("mnist", "mi_gd", PAPER), "std"] == 3.0
    assert math.isnan(bars.loc[("mnist", "kmeans", THIS_RUN), "std"])  # one seed: no std, not 0
    # no paper bar where the paper has no such dataset, no bar for a number this run lacks
    assert not any(s == PAPER for p, _, s in bars.index if p == "fashion_mnist")
    assert ("fashion_mnist", "cce_plus", THIS_RUN) not in bars.index
    # the paper's own datasets hold this run's methods only (SeLa did not run)
    assert {m for p, m, _ in bars.index if p == "paper: stl10"} == {"kmeans", "mi_gd", "cce_plus"}
    assert bars.loc[("paper: stl10", "cce_plus", PAPER), "mean"] == 92.0


def test_bar_data_without_the_paper_or_its_own_panels(ours, paper):
    assert set(bar_data(ours)["source"]) == {THIS_RUN}
    assert set(bar_data(ours, paper, paper_only=False)["panel"]) == {"mnist", "fashion_mnist"}


def test_method_labels_are_the_papers_names(ours, paper):
    assert method_labels(ours, paper) == {"kmeans": "Kmeans", "mi_gd": "MI-GD", "cce_plus": "Our"}
    assert method_labels(ours) == {"kmeans": "kmeans", "mi_gd": "mi_gd", "cce_plus": "cce_plus"}


def test_figure_draws_one_bar_per_number_at_its_height_with_its_error_bar(ours, paper):
    fig = table_figure(ours, paper, title="Table X")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["mnist", "fashion_mnist", "paper: stl10"]
    mnist = axes[0]
    heights = sorted(round(p.get_height(), 6) for p in mnist.patches)
    assert heights == [40.0, 47.0, 50.0, 53.0, 58.0, 60.0]  # 3 of this run, 3 of the paper
    # error bars: the half-lengths drawn are the stds (kmeans's undefined std draws none)
    halves = sorted(round((seg[1][1] - seg[0][1]) / 2, 6) for col in mnist.collections for seg in col.get_segments())
    assert halves == [2.0, 2.1, 3.0, 3.0, 3.2]
    assert [t.get_text() for t in mnist.get_xticklabels()] == ["Kmeans", "MI-GD", "Our"]
    # fashion_mnist: two bars (cce_plus has no number there)
    assert sorted(p.get_height() for p in axes[1].patches) == [30.0, 35.0]


def test_saved_figure_is_a_png(tmp_path, ours, paper):
    path = tmp_path / "figures" / "table2.png"
    save_table_figure(path, ours, paper)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_a_table_without_numbers_is_an_error():
    empty = pd.DataFrame({"method": ["cce"], "mnist": [NAN], "mnist_std": [NAN]})
    with pytest.raises(ValueError, match="no numbers to draw"):
        table_figure(empty)


@pytest.mark.parametrize("name", ["table2", "table3", "table4", "table5", "table6"])
def test_every_paper_table_draws(name):
    reference = paper_table(name)
    ours = reference.drop(columns="title").copy()
    cols = [c for c in ours.columns if c != "method" and not c.endswith("_std")]
    ours[cols] = ours[cols] - 1.0
    fig = table_figure(ours, reference)
    n_numbers = int(np.isfinite(reference[cols].to_numpy(dtype=float)).sum())
    assert sum(len(ax.patches) for ax in fig.axes) == 2 * n_numbers  # every number twice: ours and the paper's


def test_the_papers_own_panels_leave_out_methods_it_does_not_report(ours, paper):
    ours = pd.concat([ours, pd.DataFrame({"method": ["cce"], "mnist": [55.0], "mnist_std": [1.0],
                                          "fashion_mnist": [33.0], "fashion_mnist_std": [1.0]})])
    fig = table_figure(ours, paper)
    ticks = {ax.get_title(): [t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes if ax.get_visible()}
    assert ticks["mnist"] == ["Kmeans", "MI-GD", "Our", "cce"]  # this run's methods, named as the paper does
    assert ticks["paper: stl10"] == ["Kmeans", "MI-GD", "Our"]  # no empty slot for cce, which the paper lacks
