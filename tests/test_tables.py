"""Aggregation of run records into the paper's tables (src/cce/pipeline/tables.py).

The records are written here with numbers chosen so that each plausible mistake
shows: mean vs median, percent vs fraction, sample std (ddof=1) vs population std
(ddof=0), method order, pairing of means with their stds, sign of the difference
to the paper. Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from cce.pipeline.runs import RecordError
from cce.pipeline.tables import (compare_with_paper, curves_frame, format_mean_std, paper_layout, paper_table,
                                 records_frame, summary)


def record(dataset, method, seed, accuracy, nmi=0.5, lam=None, lam_scale=None, objective=1.0,
           label_iterations=(3.0, 7.0), wall=2.0, experiment="clustering"):
    options = {"epochs": 3} if lam is None else {"epochs": 3, "lam": lam, "lam_scale": lam_scale}
    curves = {"label_iterations": list(label_iterations)} if label_iterations is not None else {}
    return {
        "experiment": experiment, "dataset": dataset, "method": method, "seed": seed, "options": options,
        "metrics": {"accuracy": accuracy, "nmi": nmi, "ari": 0.25, "n_clusters_nonempty": 10},
        "info": {"losses": {"objective": objective}, "curves": curves},
        "wall_time_s": wall, "device": "cpu",
    }


def write(tmp_path, records):
    paths = []
    for i, r in enumerate(records):
        path = tmp_path / f"r{i}.json"
        path.write_text(json.dumps(r))
        paths.append(path)
    return paths


@pytest.fixture
def runs(tmp_path):
    records = [
        # cce_plus on mnist, 3 seeds: accuracy 0.50, 0.60, 0.85
        #   mean 0.65 (median would be 0.60); deviations -0.15, -0.05, 0.20, sum of squares 0.065:
        #   ddof=1 std sqrt(0.065 / 2) = 0.180278, ddof=0 sqrt(0.065 / 3) = 0.147196
        record("mnist", "cce_plus", 0, 0.50, nmi=0.1, objective=3.0, label_iterations=(9.0, 4.0), wall=1.0),
        record("mnist", "cce_plus", 1, 0.60, nmi=0.2, objective=5.0, label_iterations=(9.0, 6.0), wall=2.0),
        record("mnist", "cce_plus", 2, 0.85, nmi=0.6, objective=10.0, label_iterations=(9.0, 11.0), wall=6.0),
        # kmeans on mnist, 2 seeds: 0.40, 0.44 -> mean 0.42, ddof=1 std 0.028284 (ddof=0: 0.02)
        record("mnist", "kmeans", 0, 0.40, label_iterations=None),
        record("mnist", "kmeans", 1, 0.44, label_iterations=None),
        # cce_plus on stl10, one seed: 0.90 -> std undefined (NaN), not 0
        record("stl10", "cce_plus", 0, 0.90),
    ]
    return records_frame(write(tmp_path, records))


def test_records_frame_reads_every_field(runs):
    assert list(runs["method"]) == ["cce_plus"] * 3 + ["kmeans"] * 2 + ["cce_plus"]
    first = runs.iloc[0]
    assert (first["dataset"], first["seed"], first["accuracy"], first["nmi"], first["objective"]) == (
        "mnist", 0, 0.50, 0.1, 3.0)
    # the solver iterations of the last epoch, not the first
    assert list(runs["label_iterations"].iloc[:3]) == [4.0, 6.0, 11.0]
    assert runs["label_iterations"].iloc[3] is None or math.isnan(runs["label_iterations"].iloc[3])
    assert first["lam"] is None or math.isnan(first["lam"])
    assert first["record"].endswith("r0.json")


def test_paper_layout_mean_and_sample_std_in_percent(runs):
    table = paper_layout(runs, ["kmeans", "cce_plus", "sela"], ["stl10", "mnist"])
    # rows in the order asked for (not the records' order), a method without records stays as NaN
    assert list(table["method"]) == ["kmeans", "cce_plus", "sela"]
    assert list(table.columns) == ["method", "stl10", "stl10_std", "mnist", "mnist_std"]
    t = table.set_index("method")
    assert t.loc["cce_plus", "mnist"] == pytest.approx(65.0)
    assert t.loc["cce_plus", "mnist_std"] == pytest.approx(18.0278, abs=1e-4)  # ddof=1; ddof=0 gives 14.72
    assert t.loc["kmeans", "mnist"] == pytest.approx(42.0)
    assert t.loc["kmeans", "mnist_std"] == pytest.approx(2.8284, abs=1e-4)  # ddof=0 gives 2.0
    assert t.loc["cce_plus", "stl10"] == pytest.approx(90.0)  # not mixed with mnist's seeds
    assert math.isnan(t.loc["cce_plus", "stl10_std"])  # one seed: no spread to report
    assert math.isnan(t.loc["kmeans", "stl10"]) and math.isnan(t.loc["sela", "mnist"])
    nmi = paper_layout(runs, ["cce_plus"], ["mnist"], metric="nmi").set_index("method")
    assert nmi.loc["cce_plus", "mnist"] == pytest.approx(30.0)  # (0.1 + 0.2 + 0.6) / 3


def test_summary_mean_and_sample_std_per_group(runs):
    s = summary(runs)
    assert list(zip(s["dataset"], s["method"])) == [("mnist", "cce_plus"), ("mnist", "kmeans"), ("stl10", "cce_plus")]
    row = s.iloc[0]
    assert row["n_seeds"] == 3
    assert row["accuracy_mean"] == pytest.approx(0.65)
    assert row["accuracy_std"] == pytest.approx(0.180278, abs=1e-6)
    # objective 3, 5, 10: mean 6, ddof=1 std sqrt((9 + 1 + 16) / 2) = sqrt(13)
    assert row["objective_mean"] == pytest.approx(6.0)
    assert row["objective_std"] == pytest.approx(math.sqrt(13.0))
    assert row["label_iterations_mean"] == pytest.approx(7.0)  # last epochs 4, 6, 11
    assert row["wall_time_s_mean"] == pytest.approx(3.0)
    assert s.iloc[1]["n_seeds"] == 2 and s.iloc[1]["accuracy_std"] == pytest.approx(0.028284, abs=1e-6)
    assert math.isnan(s.iloc[2]["accuracy_std"])


def test_summary_keeps_runs_without_lam(tmp_path):
    # The lam study groups by lam; a baseline without a lam (None) is a group of its own, not dropped.
    records = [record("digits", "cce_plus", 0, 0.7, lam=100.0, lam_scale="mean"),
               record("digits", "cce_plus", 0, 0.1, lam=100.0, lam_scale="batch"),
               record("digits", "cce_plus", 1, 0.3, lam=100.0, lam_scale="batch"),
               record("digits", "mi_gd", 0, 0.5)]
    s = summary(records_frame(write(tmp_path, records)), by=["dataset", "method", "lam_scale", "lam"])
    assert len(s) == 3
    assert list(s["accuracy_mean"]) == pytest.approx([0.7, 0.2, 0.5])
    assert list(s["n_seeds"]) == [1, 2, 1]
    assert s.iloc[2]["method"] == "mi_gd" and pd.isna(s.iloc[2]["lam"])


def test_compare_with_paper_pairs_values_and_signs_the_difference(runs):
    ours = paper_layout(runs, ["kmeans", "cce_plus", "cce"], ["mnist", "digits"])
    paper = paper_table("table2")
    out = compare_with_paper(ours, paper)
    # only what both tables hold: cce is not in Table 2, digits is not a paper dataset
    assert list(zip(out["method"], out["dataset"])) == [("kmeans", "mnist"), ("cce_plus", "mnist")]
    assert list(out.columns) == ["method", "dataset", "ours", "ours_std", "paper", "paper_std", "difference"]
    cce_plus = out.iloc[1]
    # Table 2 of the paper, MNIST, "Our": 58.4% (3.2)
    assert (cce_plus["paper"], cce_plus["paper_std"]) == (58.4, 3.2)
    assert cce_plus["ours"] == pytest.approx(65.0) and cce_plus["ours_std"] == pytest.approx(18.0278, abs=1e-4)
    assert cce_plus["difference"] == pytest.approx(65.0 - 58.4)  # ours minus paper: positive = we score higher
    kmeans = out.iloc[0]
    assert (kmeans["paper"], kmeans["paper_std"]) == (47.62, 2.1)  # Kmeans, MNIST: 47.62% (2.1)
    assert kmeans["difference"] == pytest.approx(42.0 - 47.62)


def test_paper_tables_are_the_papers():
    # A few cells of Tables 2 and 5 copied from the paper by hand.
    t2 = paper_table("table2").set_index("method")
    assert list(t2.index) == ["kmeans", "mi_gd", "mi_adm", "sela", "cce_plus"]
    assert (t2.loc["cce_plus", "stl10"], t2.loc["cce_plus", "stl10_std"]) == (92.33, 6.4)
    assert (t2.loc["mi_adm", "cifar10"], t2.loc["sela", "cifar100_20_std"]) == (60.57, 1.1)
    t5 = paper_table("table5").set_index("method")
    assert (t5.loc["cce", "stl10"], t5.loc["cce", "cifar10_std"], t5.loc["cce_plus", "cifar100_20"]) == (
        92.32, 6.4, 43.72)
    # Tables 3 and 6 (networks trained from scratch)
    t3 = paper_table("table3").set_index("method")
    assert list(t3.index) == ["mi_d", "iic", "sela", "mi_adm", "cce_plus"]
    assert (t3.loc["mi_d", "cifar10"], t3.loc["iic", "mnist_std"], t3.loc["cce_plus", "mnist"]) == (21.4, 2.3, 95.11)
    assert (t3.loc["sela", "cifar100_20"], t3.loc["mi_adm", "stl10"]) == (15.34, 23.37)
    t6 = paper_table("table6").set_index("method")
    assert (t6.loc["cce", "stl10_std"], t6.loc["cce", "cifar100_20"], t6.loc["cce_plus", "mnist"]) == (
        1.0, 15.13, 95.11)


def test_curves_frame_one_row_per_run_and_epoch(tmp_path):
    a = record("mnist", "iic", 0, 0.5, experiment="deep")
    a["info"]["curves"] = {"epoch": [1, 2], "loss": [2.0, 1.5], "accuracy": [0.3, 0.4], "nmi": [0.1, 0.2],
                           "ari": [0.0, 0.1], "n_clusters_nonempty": [7, 9], "label_iterations": [0.0, 0.0]}
    b = record("mnist", "cce_plus", 1, 0.6, experiment="deep")
    b["info"]["curves"] = {"epoch": [1], "loss": [1.0], "n_clusters_nonempty": [10], "label_iterations": [40.0]}
    curves = curves_frame(write(tmp_path, [a, b]))
    assert list(curves.columns) == ["experiment", "dataset", "method", "seed", "epoch", "loss", "accuracy", "nmi",
                                    "ari", "n_clusters_nonempty", "label_iterations"]
    assert curves[["method", "seed", "epoch"]].values.tolist() == [["iic", 0, 1], ["iic", 0, 2], ["cce_plus", 1, 1]]
    assert curves["loss"].tolist() == [2.0, 1.5, 1.0] and curves["accuracy"].tolist()[:2] == [0.3, 0.4]
    assert math.isnan(curves["accuracy"].iloc[2])  # a run without labels has no accuracy curve
    without = record("mnist", "mi_d", 0, 0.5)
    without["info"]["curves"] = {}
    with pytest.raises(ValueError, match="no per-epoch curves"):
        curves_frame(write(tmp_path, [without]))


def test_format_mean_std(runs):
    table = paper_layout(runs, ["cce_plus", "kmeans", "sela"], ["mnist", "stl10"])
    out = format_mean_std(table)
    assert list(out.index) == ["cce_plus", "kmeans", "sela"] and list(out.columns) == ["mnist", "stl10"]
    assert out.loc["cce_plus", "mnist"] == "65.00 (18.0)"
    assert out.loc["kmeans", "mnist"] == "42.00 (2.8)"
    assert out.loc["cce_plus", "stl10"] == "90.00"  # one seed: no std, and never "nan"
    assert out.loc["sela", "mnist"] == ""  # no runs
    paper = format_mean_std(paper_table("table2").drop(columns="title"))
    assert paper.loc["kmeans", "stl10"] == "85.20 (5.9)"


def test_bad_records_are_refused_with_their_path(tmp_path):
    good = write(tmp_path, [record("mnist", "kmeans", 0, 0.4)])
    with pytest.raises(RecordError, match=r"missing\.json: no such run record; rerun its job"):
        records_frame(good + [tmp_path / "missing.json"])
    (tmp_path / "cut.json").write_text(json.dumps(record("mnist", "kmeans", 1, 0.4))[:40])
    with pytest.raises(RecordError, match=r"cut\.json: damaged run record \(JSONDecodeError"):
        records_frame([tmp_path / "cut.json"])
    with pytest.raises(ValueError, match="no run records"):
        records_frame([])
    assert np.isclose(records_frame(good)["accuracy"].iloc[0], 0.4)


def test_ordering_and_baseline_when_no_dataset_is_shared():
    """Table 3's demo (Fashion-MNIST) against the paper (STL10, MNIST): ranks and differences to a baseline,
    never an empty table. Ranks in the paper's columns are among this run's methods only."""
    from cce.pipeline.tables import ordering_and_baseline

    ours = pd.DataFrame({"method": ["mi_d", "iic", "cce_plus"], "fashion_mnist": [30.0, 45.0, 40.0],
                         "fashion_mnist_std": [1.0, 1.0, 1.0]})
    paper = pd.DataFrame({"method": ["mi_d", "iic", "sela", "cce_plus"], "title": ["MI-D", "IIC", "SeLa", "Our"],
                          "stl10": [25.0, 24.0, 99.0, 26.0], "stl10_std": [0.5, 1.7, 0.9, 1.1],
                          "mnist": [93.0, 82.0, 50.0, 95.0], "mnist_std": [6.3, 2.3, 1.9, 4.3]})
    assert compare_with_paper(ours, paper).empty  # what the notebook showed before: headers only
    out = ordering_and_baseline(ours, paper, "mi_d")
    assert list(out.index) == ["mi_d", "iic", "cce_plus"]
    assert list(out.columns) == [("this run: fashion_mnist", "rank"), ("this run: fashion_mnist", "minus mi_d"),
                                 ("paper: stl10", "rank"), ("paper: stl10", "minus mi_d"),
                                 ("paper: mnist", "rank"), ("paper: mnist", "minus mi_d")]
    assert list(out[("this run: fashion_mnist", "rank")]) == [3, 1, 2]  # 1 = highest accuracy
    assert list(out[("this run: fashion_mnist", "minus mi_d")]) == [0.0, 15.0, 10.0]  # ours minus the baseline
    # SeLa's 99 on stl10 is not among this run's methods: cce_plus ranks first there
    assert list(out[("paper: stl10", "rank")]) == [2, 3, 1]
    assert list(out[("paper: mnist", "minus mi_d")]) == pytest.approx([0.0, -11.0, 2.0])
    # a baseline this run lacks: ranks only
    assert all(stat == "rank" for _, stat in ordering_and_baseline(ours, paper, "kmeans").columns)
