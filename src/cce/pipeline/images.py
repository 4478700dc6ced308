"""Cluster one's own images (``python -m cce cluster-images DIR --clusters K``) and draw cluster galleries.

A folder of images -> features (:func:`cce.data.features.extract_folder`, streamed, resumable, kept
in the verified ``.npz`` format of :func:`cce.data.features.save_features`) -> the chosen method
(default ``cce_plus``, the paper's L_CCE+ with a linear head, eq. 11) and ``kmeans`` beside it ->
``clusters.csv`` (path, cluster, confidence), one CSV per compared method, ``summary.json`` and
``report.html`` (numbers, skipped files, a gallery per method) in the output folder.

The workflow's gallery figures (:func:`gallery_of_run`) come from the same code, drawn from the
predictions a run saved beside its record (:mod:`cce.predictions`): a clustering run of Table 2 or a
network of Table 3 alike, with no second training.
"""

from __future__ import annotations

import csv
import html
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data import features as feats
from ..data.backbones import TIMM_MODELS
from ..data.image_folder import FolderImages, ImageFolder, scan
from ..io import atomic_path, write_json_atomic
from . import gallery

DEFAULT_METHOD = "cce_plus"
DEFAULT_COMPARE = ("kmeans",)


class ClusterImagesError(ValueError):
    """Input the command cannot work with (no K, K out of range, ...); the message says what to change."""


def fit_with_confidence(method: str, X: np.ndarray, n_clusters: int, seed: int, options: dict | None = None,
                        y_true: np.ndarray | None = None, progress: bool = True):
    """Cluster X (N, D) with ``method``: clusters (N,), confidence (N,) in [0, 1], info; the clusters of
    :func:`cce.pipeline.runs.run_clustering` for the same seed and options."""
    from ..methods import get_method
    from ..training import fit_predict
    from .runs import seed_everything

    seed_everything(seed)
    return fit_predict(get_method(method), X, n_clusters, seed, options, y_true=y_true, progress=progress)


# ---------------------------------------------------------------------------
# Features of a folder, reused when the folder and the settings are unchanged


def folder_features(folder: ImageFolder, extractor: str, path: Path, options: dict, labels: bool,
                    progress: bool = True, name: str | None = None) -> tuple[np.ndarray, np.ndarray, dict, bool]:
    """X, y, meta of ``folder`` at ``path``: read back when it was made from the same files with the same
    extractor settings, else extracted (resuming from ``.{name}.parts`` beside it). The last value says
    whether the file was reused. ``name`` is the dataset's name in the file (default: the folder's)."""
    request = {"extractor": extractor, "labels": labels, "name": name,
               "options": {k: v for k, v in options.items() if k not in (*feats.RUNTIME_OPTIONS, "chunk_size")}}
    if path.is_file():
        try:
            X, y, meta = feats.load_features(path)
            if (meta.get("request") == request
                    and meta.get("source", {}).get("files_sha256") == folder.fingerprint()):
                return X, y, meta, True
        except feats.FeatureFileError:
            pass  # damaged: extracted again
    parts = path.parent / f".{path.stem}.parts"
    X, y, meta = feats.extract_folder(folder, extractor, name=name, parts_dir=parts, progress=progress, **options)
    meta["request"] = request
    feats.save_features(path, X, y, meta)
    feats.discard_parts(parts)
    return X, y, meta, False


# ---------------------------------------------------------------------------
# The command


def cluster_images(
    folder: Path | str,
    n_clusters: int | None = None,
    *,
    method: str = DEFAULT_METHOD,
    compare: Sequence[str] = DEFAULT_COMPARE,
    extractor: str = "pixels",
    out: Path | str | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    extractor_options: dict[str, Any] | None = None,
    labels: bool = True,
    top: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Cluster the images under ``folder`` into ``n_clusters`` and write CSVs and a report to ``out``.

    ``n_clusters`` defaults to the number of label sub-folders. ``options`` are the method's (JSON
    object as for ``python -m cce cluster``; the same for every method that takes them), ``compare``
    the methods run beside it. Returns the summary also written to ``out/summary.json``.
    """
    from ..methods import get_method
    from ..metrics import clustering_scores

    folder = Path(folder)
    imgs = scan(folder, labels=labels)
    out = Path(out) if out is not None else Path.cwd() / f"{imgs.root.name}-clusters"
    K = n_clusters if n_clusters is not None else (len(imgs.classes) if imgs.labelled else None)
    if K is None:
        raise ClusterImagesError(f"{folder}: no label sub-folders to count classes from; give --clusters K")
    if not 2 <= K <= len(imgs):
        raise ClusterImagesError(f"--clusters must be between 2 and the number of images ({len(imgs)}), got {K}")
    methods = list(dict.fromkeys([method, *compare]))
    method_options = {}
    for name in methods:  # unknown methods or options are refused before any image is read
        spec = get_method(name)
        method_options[name] = spec.options({k: v for k, v in (options or {}).items() if k in spec.defaults})
    unknown = set(options or {}) - {k for name in methods for k in get_method(name).defaults}
    if unknown:
        raise ClusterImagesError(f"no method of {methods} has option(s) {sorted(unknown)}")

    import sklearn  # noqa: F401  (both needed later: imported before the timer, which times the extraction)
    import torch  # noqa: F401

    start = time.perf_counter()
    X, y, meta, reused = folder_features(imgs, extractor, out / "features" / f"{extractor}.npz",
                                         dict(extractor_options or {}), labels, progress)
    extraction_s = time.perf_counter() - start
    labelled = meta.get("n_classes") is not None
    if len(X) < K:
        raise ClusterImagesError(f"only {len(X)} images could be read, fewer than --clusters {K}")

    results = {}
    for name in methods:
        t0 = time.perf_counter()
        clusters, confidence, info = fit_with_confidence(name, X, K, seed, method_options[name],
                                                         y_true=y if labelled else None, progress=progress)
        results[name] = {
            "clusters": clusters, "confidence": confidence, "wall_time_s": time.perf_counter() - t0,
            "metrics": clustering_scores(y, clusters) if labelled else None,
            "sizes": np.bincount(clusters, minlength=K).tolist(),
            "options": method_options[name], "device": info.get("device", "cpu"),
        }

    out.mkdir(parents=True, exist_ok=True)
    csvs = {}
    for name in methods:
        csvs[name] = out / ("clusters.csv" if name == method else f"clusters_{name}.csv")
        _write_clusters_csv(csvs[name], meta, y if labelled else None, results[name])
    if meta["skipped"]:
        with atomic_path(out / "skipped.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "error"])
            writer.writerows([s["path"], s["error"]] for s in meta["skipped"])
    from ..provenance import run_provenance

    summary = {
        "folder": str(imgs.root), "n_files": len(imgs), "n_images": int(len(X)), "skipped": meta["skipped"],
        "labels": list(meta["classes"]) if labelled else None, "n_clusters": K, "seed": seed,
        "extractor": extractor, "features": str(out / "features" / f"{extractor}.npz"), "features_reused": reused,
        "extraction_s": extraction_s, "how": {k: v for k, v in meta.items() if k not in ("paths", "skipped")},
        "method": method,
        "methods": {name: {k: v for k, v in r.items() if k not in ("clusters", "confidence")} | {"csv": str(csvs[name])}
                    for name, r in results.items()},
        "report": str(out / "report.html"), **run_provenance(*(("timm",) if extractor in TIMM_MODELS else ())),
    }
    write_json_atomic(out / "summary.json", summary)
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(_report_html(summary, imgs, meta, results, y if labelled else None, top))
    return summary


def _write_clusters_csv(path: Path, meta: dict, y: np.ndarray | None, result: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "cluster", "confidence"] + (["label"] if y is not None else []))
        for i, rel in enumerate(meta["paths"]):
            row = [rel, int(result["clusters"][i]), f"{result['confidence'][i]:.4f}"]
            writer.writerow(row + ([meta["classes"][y[i]]] if y is not None else []))


def _report_html(summary: dict, imgs: ImageFolder, meta: dict, results: dict, y, top: int) -> str:
    e = html.escape
    names = meta["paths"]
    source = FolderImages(imgs)
    position = {rel: j for j, rel in enumerate(imgs.paths)}

    def load(i: int):
        return source.load(position[names[i]])

    n_skipped = len(summary["skipped"])
    facts = [
        ("folder", e(summary["folder"])),
        ("images", f"{summary['n_images']} clustered of {summary['n_files']} files"
                   + (f", <b>{n_skipped} skipped</b> (damaged or unreadable, listed below)" if n_skipped else "")),
        ("labels", e(", ".join(summary["labels"])) + " (sub-folders; used only to score)" if summary["labels"]
         else "none (no sub-folders, or images outside them)"),
        ("features", e(f"{summary['extractor']}: {meta['n_features']}-d, {meta['preprocessing']}")),
        ("extraction", f"{summary['extraction_s']:.1f} s"
                       + (" (features reused)" if summary["features_reused"] else "")),
        ("clusters", str(summary["n_clusters"])),
    ]
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Clusters of {e(imgs.root.name)}</title>"
             f"<style>{gallery.GALLERY_CSS}</style></head><body>",
             f"<h1>Clusters of {e(imgs.root.name)}</h1>",
             "<table class=\"numbers\">" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts) + "</table>"]
    rows = []
    for name, r in results.items():
        m = r["metrics"]
        score = (f"<td>{m['accuracy']:.4f}</td><td>{m['nmi']:.4f}</td><td>{m['ari']:.4f}</td>" if m else "")
        nonempty = sum(1 for s in r["sizes"] if s)
        csv_name = Path(summary["methods"][name]["csv"]).name
        rows.append(f"<tr><td>{e(name)}</td>{score}<td>{nonempty} of {summary['n_clusters']}</td>"
                    f"<td>{r['wall_time_s']:.1f} s</td><td><a href=\"{e(csv_name)}\">{e(csv_name)}</a></td></tr>")
    head = "<th>accuracy</th><th>NMI</th><th>ARI</th>" if y is not None else ""
    parts.append("<h2>Methods</h2><table class=\"numbers\"><tr><th>method</th>" + head +
                 "<th>clusters used</th><th>time</th><th>CSV</th></tr>" + "".join(rows) + "</table>")
    if y is not None:
        parts.append("<p>Accuracy: the share of images whose cluster, matched one-to-one to a label "
                     "(Hungarian matching), is their label. Purity: the share of a cluster's images with its "
                     "most frequent label.</p>")
    for name, r in results.items():
        views = gallery.summarize(r["clusters"], r["confidence"], y, summary["n_clusters"], top=top)
        parts.append(gallery.html_section(views, load, names=names, class_names=meta["classes"] or None,
                                          title=f"{name}: the {top} most confident images of every cluster"))
    if n_skipped:
        items = "".join(f"<li>{e(s['path'])}: {e(s['error'])}</li>" for s in summary["skipped"])
        parts.append(f"<h2>Skipped files ({n_skipped})</h2><ul>{items}</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# The workflow's gallery of a run, from the predictions saved beside its record


def _image_loader(record: dict[str, Any], predictions, root: Path | str):
    """``load(i)``: image ``i`` of ``predictions`` as a PIL image, and the class names, for the run of ``record``."""
    from .. import data
    from ..data.image_folder import ArrayImages, read_image

    if predictions.source == "features":
        meta = feats.load_features_meta(record["features"]["path"])  # the paths; X is not needed
        if meta.get("source", {}).get("kind") == "image_folder":
            base, paths = Path(meta["source"]["root"]), meta["paths"]
            return (lambda i: read_image(base / paths[predictions.index[i]])), meta.get("classes") or None
        split = "all"  # the features of a registry dataset: one row per image of its `all` split
    else:
        split = predictions.source
    dataset = record["dataset"]
    images, _ = data.load(dataset, root, split)
    if predictions.index.size and predictions.index.max() >= len(images):
        raise gallery.GalleryError(f"the predictions of {dataset} name image {predictions.index.max()} of its "
                                   f"{split} split, which has {len(images)}: prepared data under {root} differ "
                                   "from the run's")
    rows = ArrayImages(images, data.get_spec(dataset).pixel_max)
    return (lambda i: rows.load(int(predictions.index[i]))), gallery.CLASS_NAMES.get(dataset)


def gallery_of_run(record_path: Path | str, root: Path | str, out: Path | str, top: int = 8,
                   predictions_path: Path | str | None = None) -> dict[str, Any]:
    """Draw the gallery (PNG at ``out``) of the run of ``record_path`` from the predictions it saved.

    The predictions file is the one the record names (its SHA-256 checked), or ``predictions_path``.
    Thumbnails come from the data the run saw: the registry dataset prepared under ``root``, or the
    image folder its feature file names. Returns the accuracy drawn and the number of clusters.
    """
    from ..metrics import clustering_scores
    from ..predictions import load_predictions
    from ..predictions import predictions_path as predictions_file_of
    from .runs import read_record

    record = read_record(record_path)
    saved = record.get("predictions")
    if predictions_path is None and not saved:
        raise gallery.GalleryError(f"{record_path}: the record names no predictions file (made before runs "
                                   f"saved them); rerun it with `snakemake --cores all --force {record_path}`")
    if predictions_path is None:
        # the path the run wrote (relative to the directory it ran in), else the file beside the record
        where = Path(saved["path"])
        if not where.is_file() and predictions_file_of(record_path).is_file():
            where = predictions_file_of(record_path)
        predictions = load_predictions(where, saved["sha256"])
    else:  # the record's file under another name (a moved run) or another file: checked when it is the record's
        same = saved and Path(saved["path"]).resolve() == Path(predictions_path).resolve()
        predictions = load_predictions(predictions_path, saved["sha256"] if same else None)
    load, class_names = _image_loader(record, predictions, root)
    K = int(record["n_clusters"])
    y = predictions.labels
    accuracy = clustering_scores(y, predictions.cluster)["accuracy"] if y is not None else None
    views = gallery.summarize(predictions.cluster, predictions.confidence, y, K, top=top)
    what = (f"{record['experiment']}: {record['dataset']}, {record['method']} seed {record['seed']}"
            + (f" on {record['features']['extractor']} features" if "features" in record else "")
            + f" ({predictions.cluster.size} images"
            + (f", {record['options']['epochs']} epochs)" if "epochs" in record.get("options", {}) else ")"))
    if accuracy is not None:
        what += f": accuracy {accuracy:.3f}"
    gallery.figure(views, load, out, class_names=class_names, title=what)
    return {"accuracy": accuracy, "record_accuracy": record["metrics"].get("accuracy"), "clusters": len(views),
            "images": int(predictions.cluster.size)}


def print_summary(summary: dict, file=None) -> None:
    """The command's report on stdout: images, skipped files by path, features, every method's scores."""
    def p(line: str) -> None:
        print(line, file=file or sys.stdout)

    labels = f" in {len(summary['labels'])} labelled sub-folders" if summary["labels"] else " (no labels)"
    p(f"{summary['folder']}: {summary['n_images']} of {summary['n_files']} images clustered{labels}, "
      f"{len(summary['skipped'])} skipped")
    for s in summary["skipped"]:
        p(f"  skipped {s['path']}: {s['error']}")
    how = summary["how"]
    made = "reused" if summary["features_reused"] else f"extracted in {summary['extraction_s']:.1f} s"
    p(f"features: {summary['extractor']} ({how['n_examples']} x {how['n_features']}) -> {summary['features']} "
      f"({made})")
    for name, r in summary["methods"].items():
        m = r["metrics"]
        score = f"accuracy {m['accuracy']:.4f} nmi {m['nmi']:.4f} ari {m['ari']:.4f} " if m else ""
        used = sum(1 for s in r["sizes"] if s)
        p(f"{name}: {score}clusters {used}/{summary['n_clusters']} ({r['wall_time_s']:.1f} s) -> {r['csv']}")
    p(f"report: {summary['report']}")
