"""The deep study (config/README.md, "The deep study"): Table 3's methods, and the readings the paper leaves
open, trained from scratch on a CPU-sized subset of Fashion-MNIST with the Table 7 grey network.

One JSON record per (reading, seed) under --out (the record of :func:`cce.training.deep.run_deep`, with its
per-epoch curves), then one CSV row per (reading, seed, epoch) in --csv. A record already there is kept, so
the study can be run in pieces (e.g. one process per seed) and resumed. Two reference rows use the same
images: ``untrained`` (the network after its initialization, no step) and ``kmeans`` (K-means on the pixels).

    PYTHONPATH=src python benchmarks/deep_study.py --config config/deep_study.yaml \\
        --root resources/data --out results/deep_study --csv results/deep_study.csv [--seeds 0] [--only cce_plus]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from cce.io import write_json_atomic

REFERENCES = ("untrained", "kmeans")


def readings(study: dict) -> dict[str, dict]:
    """reading name -> {"method": ..., "options": {...}}: the references, then the config's readings."""
    out = {name: {"method": name, "options": {}} for name in study.get("references", [])}
    for name, spec in study["readings"].items():
        out[name] = {"method": spec.get("method", name), "options": dict(spec.get("options") or {})}
    return out


def check(study: dict, todo: dict[str, dict]) -> None:
    """Refuse an unknown method or option of any reading before the first run starts."""
    from cce.training.deep import DeepRunError, get_deep_method

    training = {**study.get("training", {}), "max_images": study["max_images"]}
    for name, reading in todo.items():
        if reading["method"] in REFERENCES:
            continue
        try:
            get_deep_method(reading["method"]).options({**training, **reading["options"]})
        except DeepRunError as err:
            sys.exit(f"deep_study.readings.{name}: {err}")


def _kmeans_record(study: dict, root: Path, seed: int) -> dict:
    from sklearn.cluster import KMeans

    from cce import data
    from cce.metrics import clustering_scores
    from cce.training.deep import fixed_subset

    images, labels = fixed_subset(*data.load(study["dataset"], root, "all"), study["max_images"])
    start = time.perf_counter()
    X = images.reshape(len(images), -1).astype(np.float64) / data.get_spec(study["dataset"]).pixel_max
    pred = KMeans(data.get_spec(study["dataset"]).n_classes, n_init=10, random_state=seed).fit_predict(X)
    return {"method": "kmeans", "seed": seed, "metrics": clustering_scores(labels, pred),
            "wall_time_s": time.perf_counter() - start, "info": {"curves": {}}}


def run_one(study: dict, name: str, reading: dict, seed: int, root: Path, checkpoint: Path | None = None) -> dict:
    from cce.training.deep import run_deep

    if reading["method"] == "kmeans":
        return _kmeans_record(study, root, seed)
    options = {**study.get("training", {}), "max_images": study["max_images"], **reading["options"]}
    method = reading["method"]
    if method == "untrained":  # the network as initialized: any method's network, no step taken
        method, options = "mi_d", {**options, "epochs": 0}
    return run_deep(study["dataset"], root, method, seed, options, experiment="deep_study", progress=True,
                    checkpoint=checkpoint)


def rows(name: str, record: dict) -> list[dict]:
    """One row per epoch of the record's curves (epoch 0 alone for the references)."""
    c, m = record["info"]["curves"], record["metrics"]
    # training time over every epoch (a resumed run's record times only its last part)
    seconds = record["info"].get("train_time_s", record["wall_time_s"])
    base = {"reading": name, "method": record["method"], "seed": record["seed"], "train_time_s": seconds}
    if not c.get("epoch"):
        return [{**base, "epoch": 0, "accuracy": m["accuracy"], "nmi": m["nmi"],
                 "n_clusters_nonempty": m["n_clusters_nonempty"], "final": True}]
    n = len(c["epoch"])
    return [{**base, "epoch": c["epoch"][i], "accuracy": c["accuracy"][i], "nmi": c["nmi"][i],
             "n_clusters_nonempty": c["n_clusters_nonempty"][i], "final": i == n - 1} for i in range(n)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path("config/deep_study.yaml"))
    p.add_argument("--study", default=None, help="the deep_study section as JSON (the workflow's), instead of --config")
    p.add_argument("--root", type=Path, default=Path("resources/data"))
    p.add_argument("--out", type=Path, default=Path("results/deep_study"))
    p.add_argument("--csv", type=Path, default=None, help="the per-epoch table of every record under --out")
    p.add_argument("--seeds", type=int, nargs="*", default=None, help="only these seeds (default: the config's)")
    p.add_argument("--only", nargs="*", default=None, help="only these readings")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    study = json.loads(args.study) if args.study else yaml.safe_load(args.config.read_text())["deep_study"]
    todo = readings(study)
    check(study, todo)
    seeds = args.seeds if args.seeds is not None else list(range(int(study["seeds"])))
    names = [n for n in args.only if n in todo] if args.only else list(todo)  # in the order asked
    for name in names:
        for seed in seeds:
            path = args.out / name / f"seed{seed}.json"
            # a record is kept only while the study asks for the same run (a changed config reruns it)
            request = {"dataset": study["dataset"], "max_images": study["max_images"],
                       "training": study.get("training", {}), "reading": todo[name]}
            if path.is_file() and json.loads(path.read_text()).get("study_request") == request:
                continue
            print(f"--- {name} seed {seed}", file=sys.stderr, flush=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            ckpt = path.with_suffix(".ckpt")  # a killed run resumes from its last epoch
            record = run_one(study, name, todo[name], seed, args.root, ckpt)
            write_json_atomic(path, {**record, "study_request": request})  # a killed write leaves no half record
            ckpt.unlink(missing_ok=True)
    if args.csv is not None:
        table = [r for name in todo for f in sorted((args.out / name).glob("seed*.json"))
                 for r in rows(name, json.loads(f.read_text()))]
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(table).to_csv(args.csv, index=False)
        print(f"{len(table)} rows -> {args.csv}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
