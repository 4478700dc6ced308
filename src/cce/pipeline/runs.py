"""One run = one (experiment, dataset, method, seed): fit, score, and write its JSON record.

A record carries everything needed to trace a number back to what made it:
the method's options, the seed, the feature file and its checksum, the
device, library versions, the git commit of the code and the wall time.
With ``predictions``, the cluster and confidence of every image are written there
(:mod:`cce.predictions`) and the record names the file and its checksum.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..data.features import load_features
from ..io import write_json_atomic
from ..methods import get_method
from ..predictions import make_predictions, save_predictions
from ..provenance import run_record
from ..training import fit_predict


def seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_clustering(
    features_path: Path | str,
    method: str,
    seed: int,
    options: dict[str, Any] | None = None,
    experiment: str = "clustering",
    config_name: str | None = None,
    predictions: Path | str | None = None,
) -> dict[str, Any]:
    """Fit ``method`` on the features in ``features_path`` with ``seed``; return the run record.

    With ``predictions`` (a path), the cluster and confidence of every row are saved there first.
    """
    spec = get_method(method)
    opts = spec.options(options)
    X, y, meta = load_features(features_path)
    n_clusters = int(meta.get("n_classes") or np.unique(y).size)

    # scikit-learn (and torch, in fit) are imported here, not with the module: the table rules read
    # records through this module and need neither.
    from ..metrics import clustering_scores

    seed_everything(seed)
    start = time.perf_counter()
    labels, confidence, info = fit_predict(spec, X, n_clusters, seed, opts, y_true=y)
    wall = time.perf_counter() - start
    saved = None
    if predictions is not None:
        saved = save_predictions(predictions, make_predictions(labels, confidence, source="features", labels=y))

    return run_record(
        experiment=experiment, dataset=meta.get("dataset"), method=method, seed=seed,
        metrics=clustering_scores(y, labels), n_clusters=n_clusters, options=opts, info=info, wall_time_s=wall,
        config=config_name,
        features={
            "path": str(features_path),
            "extractor": meta.get("extractor"),
            "X_sha256": meta.get("X_sha256"),
            "n_examples": int(X.shape[0]),
            "n_features": int(X.shape[1]),
        },
        predictions=saved,
    )


def write_record(path: Path | str, record: dict[str, Any]) -> None:
    write_json_atomic(path, record)


class RecordError(ValueError):
    """A run record is missing or not a JSON object; the message names it and how to redo it."""


def read_record(path: Path | str) -> dict[str, Any]:
    """The JSON record at ``path``; a missing or damaged record raises :class:`RecordError`."""
    redo = f"rerun its job with `snakemake --cores all --force {path}`"
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError as err:
        raise RecordError(f"{path}: no such run record; {redo}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RecordError(f"{path}: damaged run record ({type(err).__name__}: {err}); {redo}") from err
    if not isinstance(record, dict):
        raise RecordError(f"{path}: a run record is a JSON object, got {type(record).__name__}; {redo}")
    return record
