"""The Snakemake workflow: lint, a dry run of the paper's config, a real tiny run, bad input."""

import json
import os
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import BIN, REPO, comparable_record, snakemake

pytestmark = pytest.mark.slow


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table."""
    block = output.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def test_lint(tmp_path):
    proc = snakemake("--lint", "--configfile", REPO / "config/config.yaml", cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


def test_dry_run_of_the_paper_config(tmp_path):
    from cce.pipeline.config import load_config
    from cce.pipeline.experiments import planned_runs, run_options

    config = load_config(REPO / "config/config.yaml")
    proc = snakemake("-n", "--cores", "all", "--configfile", REPO / "config/config.yaml", cwd=tmp_path, check=True)
    counts = job_counts(proc.stdout + proc.stderr)
    runs = planned_runs(config, "clustering") + planned_runs(config, "lam_study")
    assert counts["clustering_run"] == len(runs)
    # Table 2: 4 datasets x 6 methods x 6 seeds, as the paper
    assert {(r.dataset, r.method) for r in planned_runs(config, "clustering")} == {
        (d, m) for d in ("stl10", "cifar10", "cifar100_20", "mnist")
        for m in ("kmeans", "mi_gd", "mi_adm", "sela", "cce", "cce_plus")}
    datasets = {r.dataset for r in runs}
    assert counts["features"] == len(datasets) and counts["data"] == len(datasets)
    for rule in ("table2", "table5", "lam_study", "table1", "notebook_table1", "notebook_table2",
                 "notebook_table5", "notebook_lambda", "all"):
        assert counts[rule] == 1, rule
    assert counts["notebook_figure"] == 2  # Figures 1 and 3
    # Tables 3 and 6: 4 datasets x 6 methods x 6 seeds, batches of 160 on STL10 (Appendix F)
    deep_runs = planned_runs(config, "deep")
    assert len(deep_runs) == 4 * 6 * 6 and {r.dataset for r in deep_runs} <= datasets
    # Table 4: 2 datasets x 6 methods x 3 fractions x 6 seeds; Figure 2: 3 losses (H, H2, GCE) x 10 etas x 3 seeds
    weak_runs, noisy_runs = planned_runs(config, "weak"), planned_runs(config, "noisy")
    assert len(weak_runs) == 2 * 6 * 3 * 6 and len(noisy_runs) == 3 * 10 * 3
    assert {r.variant for r in noisy_runs} == {f"{loss}-eta{eta / 10:g}" for loss in ("shannon", "collision", "gce")
                                               for eta in range(10)}
    assert counts["network_run"] == len(deep_runs) + len(weak_runs) + len(noisy_runs)
    for rule in ("table3", "table6", "deep_curves", "notebook_table3", "notebook_table6", "notebook_learning_curves",
                 "table4", "notebook_table4", "figure2_data", "notebook_figure2"):
        assert counts[rule] == 1, rule
    assert run_options(config, "deep", "stl10", "cce_plus")["batch_size"] == 160
    assert run_options(config, "deep", "mnist", "cce_plus")["batch_size"] == 250
    assert not (tmp_path / "results").exists()


def test_slurm_profile_requests_gpus_for_training(tmp_path):
    proc = snakemake("-n", "--workflow-profile", REPO / "workflow/profiles/slurm", "--configfile",
                     REPO / "config/config.yaml", cwd=tmp_path, check=True)
    out = proc.stdout + proc.stderr
    jobs = out.split("\n\n")
    run_jobs = [j for j in jobs if "rule clustering_run:" in j]
    assert run_jobs and all("gpu=1" in j and "slurm_partition=gpu" in j for j in run_jobs)
    network_jobs = [j for j in jobs if "rule network_run:" in j]
    assert network_jobs and all("gpu=1" in j and "slurm_partition=gpu" in j for j in network_jobs)
    data_jobs = [j for j in jobs if "rule data:" in j]
    assert data_jobs and all("gpu=1" not in j and "slurm_partition=cpu" in j for j in data_jobs)


def test_tiny_clone_produces_every_output(tiny_clone):
    workdir, _ = tiny_clone
    table = pd.read_csv(workdir / "results/table2.csv")
    assert list(table.columns) == ["method", "digits", "digits_std"]
    assert list(table["method"]) == ["kmeans", "cce", "cce_plus"]
    assert 50 < table.loc[0, "digits"] <= 100  # percent; KMeans on digits pixels scores ~70-80
    assert list(pd.read_csv(workdir / "results/table5.csv")["method"]) == ["cce", "cce_plus"]
    for seed in (0, 1):
        record = json.loads((workdir / f"results/runs/clustering/digits/cce_plus/seed{seed}.json").read_text())
        assert record["seed"] == seed and record["dataset"] == "digits" and record["method"] == "cce_plus"
        assert set(record["metrics"]) == {"accuracy", "nmi", "ari", "n_clusters_nonempty"}
        assert record["options"]["epochs"] == 3 and record["options"]["lam"] == 100
        assert record["config"].endswith("tiny.yaml")
        assert record["versions"]["torch"] and record["device"] == "cpu"
        assert len(record["info"]["curves"]["accuracy"]) == 3
    lam = pd.read_csv(workdir / "results/lam_study.csv")
    swept = lam[lam["method"] == "cce_plus"]
    assert sorted(zip(swept["lam_scale"], swept["lam"])) == [("batch", 1), ("batch", 100), ("mean", 1), ("mean", 100)]
    assert list(lam.loc[lam["lam"].isna(), "method"]) == ["mi_gd"]
    t1 = pd.read_csv(workdir / "results/table1.csv")
    assert set(t1["method"]) == {"EM", "EM-SQUAREM", "PGD", "Interior point"} and set(t1["K"]) == {2, 20}
    assert set(t1["lam_scale"]) == {"batch", "mean"}
    # Tables 3 and 6: one run of every deep method on Fashion-MNIST's grey network
    t3 = pd.read_csv(workdir / "results/table3.csv")
    assert list(t3.columns) == ["method", "fashion_mnist", "fashion_mnist_std"]
    assert list(t3["method"]) == ["mi_d", "iic", "sela", "mi_adm", "cce_plus"]
    assert list(pd.read_csv(workdir / "results/table6.csv")["method"]) == ["cce", "cce_plus"]
    for method in ("mi_d", "iic", "sela", "mi_adm", "cce", "cce_plus"):
        record = json.loads((workdir / f"results/runs/deep/fashion_mnist/{method}/seed0.json").read_text())
        assert record["experiment"] == "deep" and record["method"] == method and record["device"] == "cpu"
        assert record["data"]["n_examples"] == 64 and record["data"]["n_available"] == 70000
        assert record["info"]["architecture"] == "grey28" and record["info"]["curves"]["epoch"] == [1, 2]
        assert record["options"]["lr"] == 1e-4 and record["options"]["batch_size"] == 32
        assert record["info"]["torch_threads"] == 1  # the job's threads (resources.deep.threads)
        assert record["checkpoint"] is None  # deleted once the record was written (keep_checkpoints: false)
        table = t3 if method != "cce" else pd.read_csv(workdir / "results/table6.csv")
        shown = table.set_index("method").loc[method, "fashion_mnist"]
        assert shown == pytest.approx(100 * record["metrics"]["accuracy"], abs=1e-4)  # one seed: the run itself
    assert not list((workdir / "results/checkpoints").rglob("*.ckpt"))
    curves = pd.read_csv(workdir / "results/deep_curves.csv")
    assert len(curves) == 6 * 2 and set(curves["method"]) == {"mi_d", "iic", "sela", "mi_adm", "cce", "cce_plus"}
    assert curves["accuracy"].between(0, 1).all() and curves["loss"].notna().all()
    # Table 4 and Figure 2: runs with labels, tested on the test split
    t4 = pd.read_csv(workdir / "results/table4.csv")
    assert list(t4.columns) == ["method", "fashion_mnist@0.2", "fashion_mnist@0.2_std", "fashion_mnist@0.1",
                                "fashion_mnist@0.1_std"]
    assert list(t4["method"]) == ["seeds_only", "cce_plus"]
    for method, fraction in (("seeds_only", 0.2), ("cce_plus", 0.1)):
        path = workdir / f"results/runs/weak/fashion_mnist/{method}-frac{fraction:g}/seed0.json"
        record = json.loads(path.read_text())
        assert record["fraction"] == fraction and record["loss"] == "shannon" and record["method"] == method
        assert 10 <= record["n_labelled"] <= fraction * 64 + 10  # round(fraction * n_c), at least one, per class
        assert record["data"]["n_train"] == 64 and record["data"]["n_test"] == 64
        shown = t4.set_index("method").loc[method, f"fashion_mnist@{fraction:g}"]
        assert shown == pytest.approx(100 * record["metrics"]["accuracy"], abs=1e-4)
    f2 = pd.read_csv(workdir / "results/figure2.csv")
    assert sorted(zip(f2["loss"], f2["eta"])) == [("collision", 0), ("collision", 0.8), ("shannon", 0), ("shannon", 0.8)]
    noisy = json.loads((workdir / "results/runs/noisy/fashion_mnist/collision-eta0.8/seed0.json").read_text())
    assert noisy["loss"] == "collision" and noisy["eta"] == 0.8 and noisy["info"]["architecture"] == "grey28"
    assert noisy["n_corrupted"] == pytest.approx(0.8 * 64, abs=10)  # within one image per class
    for name in ("table1", "table2", "table3", "table4", "table5", "table6", "figure1", "figure2", "figure3", "lambda",
                 "learning_curves"):
        html = (workdir / f"results/notebooks/{name}.html").read_text()
        assert "Traceback" not in html
        nb = json.loads((workdir / f"results/notebooks/{name}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert code and all(c["execution_count"] for c in code)
        assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"])
    for name in ("figure1", "figure2", "figure3", "lambda", "learning_curves"):
        png = (workdir / f"results/figures/{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_tiny_clone_values_against_references_computed_here(tiny_clone):
    """The numbers, not only the files: each trained method against a reference computed in this test."""
    from sklearn.cluster import KMeans

    from cce.data.features import load_features
    from cce.metrics import hungarian_accuracy
    from cce.pipeline.runs import run_clustering

    workdir, _ = tiny_clone
    runs = workdir / "results/runs"
    features = workdir / "results/features/digits/pixels.npz"
    X, y, _ = load_features(features)

    def record(experiment, variant, seed=0):
        return json.loads((runs / f"{experiment}/digits/{variant}/seed{seed}.json").read_text())

    # The paper's method: the record is what the library gives for the record's own options and seed.
    ours = record("clustering", "cce_plus")
    again = run_clustering(features, "cce_plus", 0, options=ours["options"])
    assert again["metrics"]["accuracy"] == pytest.approx(ours["metrics"]["accuracy"], abs=0.01)
    # Every trained method far above what a partition unrelated to the data scores, and not above
    # what K-means (10 restarts) reaches on these pixels by more than a few points.
    rng = np.random.default_rng(0)
    unrelated = max(hungarian_accuracy(y, rng.integers(0, 10, y.size)) for _ in range(20))
    kmeans = hungarian_accuracy(y, KMeans(10, n_init=10, random_state=0).fit_predict(X))
    for variant in ("cce", "cce_plus"):
        for seed in (0, 1):
            acc = record("clustering", variant, seed)["metrics"]["accuracy"]
            assert 2 * unrelated < acc < kmeans + 0.1, (variant, seed, acc, unrelated, kmeans)
    # Table 2 is the mean over seeds, in percent
    t2 = pd.read_csv(workdir / "results/table2.csv").set_index("method")
    for variant in ("kmeans", "cce", "cce_plus"):
        accs = [record("clustering", variant, s)["metrics"]["accuracy"] for s in (0, 1)]
        assert t2.loc[variant, "digits"] == pytest.approx(100 * np.mean(accs), abs=0.01)

    # Table 1 states a true certificate at every K, lam and reading: the lower bound is below every
    # row's objective and within 1e-6 (relative) of the best one, whatever the config's reference_iter
    # (tiny: 100, where SQUAREM alone is still 4e-4 above the optimum at K = 20, lam 100, mean reading).
    # A converged EM or PGD row is not promised to be near the optimum (their rule stops on a small
    # change); its distance to it is final_objective - best_lower_bound.
    t1 = pd.read_csv(workdir / "results/table1.csv")
    assert set(map(tuple, t1[["K", "lam"]].drop_duplicates().values)) == {
        (K, lam) for K in (2, 20) for lam in (100.0, 100.0 / 250)}
    assert (t1["final_objective"] >= t1["best_lower_bound"] - 1e-12 * t1["best_objective"].abs()).all()
    assert (t1["best_objective"] - t1["best_lower_bound"] <= 1e-6 * t1["best_objective"].abs()).all()
    assert (t1["certified_gap"] <= 1e-6).all()
    assert t1[t1["method"] == "EM-SQUAREM"]["converged"].all()
    newton = t1[t1["method"] == "Interior point"]
    assert newton["converged"].all() and (newton["final_objective"] <= newton["best_objective"] * (1 + 1e-6)).all()

    # The lam study's two readings of lam are two different runs: lam / M against lam
    mean, batch = record("lam_study", "cce_plus-lam100-mean"), record("lam_study", "cce_plus-lam100-batch")
    assert mean["info"]["lam_effective"] == 100 and batch["info"]["lam_effective"] == pytest.approx(100 / 250)
    assert mean["info"]["curves"]["loss"] != batch["info"]["curves"]["loss"]


def test_different_seeds_differ(tiny_clone):
    workdir, _ = tiny_clone
    runs = workdir / "results/runs/clustering/digits/cce_plus"
    a, b = (json.loads((runs / f"seed{s}.json").read_text()) for s in (0, 1))
    assert a["info"]["curves"]["loss"] != b["info"]["curves"]["loss"]  # different seeds, different inits


def test_rerun_does_nothing_and_deleting_a_record_reruns_only_its_job(tiny_clone):
    workdir, config = tiny_clone
    proc = snakemake("-n", "--cores", "2", "--configfile", config, cwd=workdir, snakefile=workdir / "Snakefile",
                     check=True)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    record = workdir / "results/runs/clustering/digits/kmeans/seed1.json"
    record.rename(record.with_suffix(".away"))
    try:
        proc = snakemake("-n", "--cores", "2", "--configfile", config, cwd=workdir, snakefile=workdir / "Snakefile",
                         check=True)
    finally:  # the session's run, unchanged, for the tests after this one
        record.with_suffix(".away").rename(record)
    out = proc.stdout + proc.stderr
    assert job_counts(out) == {"all": 1, "clustering_run": 1, "notebook_table2": 1, "table2": 1, "total": 4}
    assert "variant=kmeans, seed=1" in out


def test_deep_record_is_what_the_library_gives(tiny_clone):
    from cce.training.deep import run_deep

    workdir, _ = tiny_clone
    record = json.loads((workdir / "results/runs/deep/fashion_mnist/iic/seed0.json").read_text())
    again = run_deep("fashion_mnist", workdir / "resources/data", "iic", 0, record["options"], progress=False)
    assert again["info"]["torch_threads"] == record["info"]["torch_threads"]
    assert again["metrics"] == record["metrics"]
    assert again["info"]["curves"]["loss"] == pytest.approx(record["info"]["curves"]["loss"], rel=1e-6)


def test_interrupted_deep_job_resumes_from_its_checkpoint(tiny_clone):
    """A deep job stopped after epoch 1, as a kill after that epoch's checkpoint leaves it: Snakemake
    runs the job again, which resumes from the checkpoint and writes the uninterrupted run's record."""
    workdir, config = tiny_clone
    record = workdir / "results/runs/deep/fashion_mnist/mi_adm/seed0.json"
    checkpoint = workdir / "results/checkpoints/deep/fashion_mnist/mi_adm/seed0.ckpt"
    original = json.loads(record.read_text())
    away = record.with_suffix(".away")
    record.rename(away)
    try:
        plan = snakemake(record.relative_to(workdir), "-n", "-p", "--cores", "1", "--configfile", config,
                         cwd=workdir, snakefile=workdir / "Snakefile", check=True)
        line = next(line for line in plan.stdout.splitlines() if "python -m cce deep" in line)
        command = line[line.index("python -m cce deep"):]  # after Snakemake's "Shell command: "
        stop = command.replace(" --out ", " --stop-after-epoch 1 --out ")
        assert stop != command
        env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
        subprocess.run(["bash", "-c", stop], cwd=workdir, env=env, check=True, timeout=600)
        assert not record.exists() and torch.load(checkpoint, weights_only=True)["epoch"] == 1

        snakemake(record.relative_to(workdir), "--cores", "1", "--configfile", config, cwd=workdir,
                  snakefile=workdir / "Snakefile", check=True)
        log = (workdir / "logs/runs/deep/fashion_mnist/mi_adm/seed0.log").read_text()
        assert "resuming mi_adm seed 0" in log and "after epoch 1" in log
        resumed = json.loads(record.read_text())
        assert resumed["info"]["resumed_at_epochs"] == [1] and original["info"]["resumed_at_epochs"] == []
        assert comparable_record(resumed) == comparable_record(original)
        assert not checkpoint.exists()
    finally:  # the session's run, unchanged, for the tests after this one
        away.replace(record)


def write_config(tmp_path, **changes):
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"clustering__methods": ["kmeans", "kmedoids"]}, "'clustering.methods[1]': unknown method 'kmedoids'"),
        ({"clustering__seeds": -3}, "'clustering.seeds': -3 is less than the minimum of 1"),
        ({"datasets__digits": {"local_dir": "/no/such/dir"}},
         "'datasets.digits.local_dir': directory '/no/such/dir' does not exist"),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, changes, message):
    config = write_config(tmp_path, **changes)
    proc = snakemake("--cores", "2", "--configfile", config, cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_malformed_yaml_stops(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("clustering:\n  datasets: [digits\n  seeds: 2\n")
    proc = snakemake("--cores", "2", "--configfile", path, cwd=tmp_path)
    assert proc.returncode != 0
    assert re.search(r"not valid (JSON or )?YAML", proc.stdout + proc.stderr)
    assert not (tmp_path / "results").exists()


def test_tiny_clone_notebooks_show_no_warning_or_error(tiny_clone):
    """Every rendered notebook of the tiny run as a reader opens it: no error output and nothing written to
    stderr (warnings, progress bars), which the HTML shows as a red block. Tables 1 to 6 showed
    'TqdmWarning: IProgress not found' (tqdm.auto imported by the training loop). Each table of Tables 2 to 6
    has its figure, and Table 3's comparison with the paper (no shared dataset) is not an empty table."""
    from test_notebooks import warnings_and_errors

    workdir, _ = tiny_clone
    notebooks = sorted((workdir / "results/notebooks").glob("*.ipynb"))
    assert {p.stem for p in notebooks} >= {"table1", "table2", "table3", "table4", "table5", "table6", "figure1",
                                           "figure2", "figure3", "lambda", "learning_curves"}
    found = {p.stem: warnings_and_errors(p) for p in notebooks}
    assert not {name: outputs for name, outputs in found.items() if outputs}
    for path in notebooks:
        # the red block (the template's CSS names the same type in single quotes)
        assert 'data-mime-type="application/vnd.jupyter.stderr"' not in path.with_suffix(".html").read_text()
    for n in (2, 3, 4, 5, 6):
        png = (workdir / f"results/figures/table{n}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        assert "image/png" in (workdir / f"results/notebooks/table{n}.ipynb").read_text()  # shown in the notebook
    table3 = (workdir / "results/notebooks/table3.ipynb").read_text()
    assert "the ordering of the methods and each method's difference to mi_d instead" in table3


def test_tiny_report_landing_page_says_what_ran(tiny_clone, tmp_path):
    """The report opens on what this config ran, on which data and at which size, and says which experiments
    are reduced pipeline checks (here all of them) rather than the paper's setting."""
    clone, config = tiny_clone
    report = tmp_path / "report.html"
    snakemake("--cores", "1", "--report", report, "--configfile", config, cwd=clone, snakefile=clone / "Snakefile",
              check=True)
    html = report.read_text()
    for text in ("What this configuration ran", "Config: ", "tiny.yaml",
                 "<strong>Fixed features</strong> (Tables 2 and 5): <strong>reduced pipeline check</strong>",
                 "<strong>Networks trained from scratch</strong> (Tables 3 and 6)",
                 "<strong>Weak supervision</strong> (Table 4)", "<strong>Label noise</strong> (Figure 2)",
                 "(Table 1)", "<strong>lam study</strong>", "Size: the first 64 images; 2 epoch(s); 1 seed(s).",
                 "Table 3 of the paper as a figure", "table3.png"):
        assert text in html, text


def test_gallery_of_every_table2_and_table3_method_is_drawn_and_in_the_report(tiny_clone):
    """One gallery figure per Table 2 and Table 3 method (workflow/rules/gallery.smk), drawn from the
    predictions its seed-0 run saved: they score what the record says, and the report shows the figures."""
    workdir, config = tiny_clone
    runs = [("clustering", "digits", m) for m in ("kmeans", "cce", "cce_plus")] + [
        ("deep", "fashion_mnist", m) for m in ("mi_d", "iic", "sela", "mi_adm", "cce", "cce_plus")]
    for experiment, dataset, method in runs:
        png = (workdir / f"results/figures/gallery/{experiment}/{dataset}/{method}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        log = (workdir / f"logs/gallery/{experiment}/{dataset}/{method}.log").read_text()
        n, drawn, recorded = re.search(r"(\d+) images in \d+ clusters; accuracy ([0-9.]+) \(record ([0-9.]+)\)",
                                       log).groups()
        record = json.loads((workdir / f"results/runs/{experiment}/{dataset}/{method}/seed0.json").read_text())
        assert float(recorded) == pytest.approx(record["metrics"]["accuracy"], abs=1e-4)
        assert drawn == recorded
        assert int(n) == (record["features"]["n_examples"] if experiment == "clustering"
                          else record["data"]["n_examples"])
    report = workdir / "results/gallery_report.html"
    try:
        snakemake("--cores", "1", "--report", report.relative_to(workdir), "--configfile", config, cwd=workdir,
                  snakefile=workdir / "Snakefile", check=True)
        html = report.read_text()
    finally:
        report.unlink(missing_ok=True)
    assert "Cluster galleries" in html and "Cluster gallery" in html
    assert "clustering: digits" in html and "deep: fashion_mnist" in html  # the figures' subcategories
    for _, _, method in runs:
        assert f"{method}.png" in html, method
