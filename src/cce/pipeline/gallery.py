"""Cluster galleries: for each cluster its size, its most confident images and, with labels, the
majority label and the cluster's purity; drawn as a figure (PNG) or as HTML with inline thumbnails.

Confidence of an image in its cluster: for a method that trains a softmax head, the largest
predicted probability max_k sigma_ik; for K-means, which has none, 1 - d1 / d2 with d1 and d2 the
distances to the nearest and second-nearest cluster mean (1 at a mean, 0 half-way between two).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

# Class names of the registry's datasets whose labels are not their own names (digits and MNIST are).
CLASS_NAMES = {
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "stl10": ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"),
}


@dataclass(frozen=True)
class ClusterView:
    """One cluster as the gallery shows it: ``top`` holds row indices, most confident first."""

    cluster: int
    size: int
    top: tuple[int, ...]
    majority: int | None = None
    purity: float | None = None


def gallery_targets(config: dict) -> list[str]:
    """The workflow's gallery figures: one per dataset and method of the config's clustering section."""
    section = config.get("clustering") or {}
    return [f"results/figures/gallery/{dataset}/{method}.png"
            for dataset in section.get("datasets", []) for method in section.get("methods", [])]


def summarize(clusters: np.ndarray, confidence: np.ndarray, labels: np.ndarray | None = None,
              n_clusters: int | None = None, top: int = 8) -> list[ClusterView]:
    """Clusters (N,) and confidences (N,) -> one view per cluster, largest first (empty ones last);
    ``labels`` (N,) ints >= 0 add the majority label and purity = its share of the cluster."""
    clusters = np.asarray(clusters)
    confidence = np.asarray(confidence, dtype=np.float64)
    K = int(n_clusters if n_clusters is not None else clusters.max() + 1)
    views = []
    for k in range(K):
        members = np.flatnonzero(clusters == k)
        # stable sort: among equal confidences the first image in the folder's order comes first
        best = members[np.argsort(-confidence[members], kind="stable")[:top]]
        majority = purity = None
        if labels is not None and members.size:
            counts = np.bincount(np.asarray(labels)[members])
            majority, purity = int(counts.argmax()), float(counts.max() / members.size)
        views.append(ClusterView(k, int(members.size), tuple(int(i) for i in best), majority, purity))
    return sorted(views, key=lambda v: (-v.size, v.cluster))


def head_confidence(probs: np.ndarray) -> np.ndarray:
    """max_k sigma_ik of predictions (N, K)."""
    return np.asarray(probs).max(axis=1)


def kmeans_confidence(X: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """1 - d_own / d_other of every point (N,): distances to its cluster's mean and to the nearest other
    mean (K-means' centres at convergence); clipped to [0, 1]."""
    X = np.asarray(X, dtype=np.float32)
    clusters = np.asarray(clusters)
    centres = np.stack([X[clusters == k].mean(0) if (clusters == k).any() else np.full(X.shape[1], np.nan)
                        for k in range(n_clusters)])
    conf = np.empty(len(X))
    for s in range(0, len(X), 4096):  # (4096, K) distances at a time: no (N, K, D) array
        Xc, own = X[s:s + 4096], clusters[s:s + 4096]
        d = np.sqrt(np.maximum((Xc ** 2).sum(1)[:, None] - 2 * Xc @ centres.T + (centres ** 2).sum(1)[None], 0))
        d = np.where(np.isnan(d), np.inf, d)
        rows = np.arange(len(Xc))
        d_own = d[rows, own].copy()
        d[rows, own] = np.inf
        d_other = d.min(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            conf[s:s + 4096] = np.where(d_other > 0, 1.0 - d_own / d_other, 0.0)
    return np.clip(np.nan_to_num(conf, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)


def label_name(label: int | None, class_names: Sequence[str] | None) -> str:
    if label is None:
        return ""
    return str(class_names[label]) if class_names is not None and label < len(class_names) else str(label)


def _caption(view: ClusterView, class_names: Sequence[str] | None) -> str:
    text = f"cluster {view.cluster}: {view.size} image{'s' if view.size != 1 else ''}"
    if view.majority is not None:
        text += f"\nmajority {label_name(view.majority, class_names)}, purity {100 * view.purity:.0f}%"
    return text


def thumbnail(img, size: int = 96):
    """A copy of ``img`` (PIL) at most ``size`` pixels on its longer side, RGB or grey."""
    from PIL import Image

    img = img.convert("L" if img.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
    if max(img.size) > size:
        img = img.copy()
        img.thumbnail((size, size), Image.BILINEAR)
    return img


def figure(views: list[ClusterView], load: Callable[[int], object], path: Path | str, *,
           class_names: Sequence[str] | None = None, title: str = "", max_clusters: int = 40) -> None:
    """Draw the gallery as a PNG: one row per cluster (largest first), its caption, then its images.

    ``load(i)`` returns image ``i`` (row index of the clustered data) as a PIL image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path

    shown = views[:max_clusters]
    n_top = max((len(v.top) for v in shown), default=1) or 1
    fig, axes = plt.subplots(len(shown), n_top + 1, figsize=(2.6 + 0.9 * n_top, 0.95 * len(shown) + 0.6),
                             squeeze=False, gridspec_kw={"width_ratios": [2.6] + [0.9] * n_top})
    for row, view in zip(axes, shown):
        for ax in row:
            ax.set_axis_off()
        row[0].text(0, 0.5, _caption(view, class_names), va="center", ha="left", fontsize=8,
                    transform=row[0].transAxes)
        for ax, i in zip(row[1:], view.top):
            img = thumbnail(load(i))
            ax.imshow(np.asarray(img), cmap="gray" if img.mode == "L" else None, vmin=0, vmax=255,
                      interpolation="nearest")
    more = len(views) - len(shown)
    fig.suptitle(title + (f" ({more} smaller clusters not shown)" if more > 0 else ""), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _data_uri(img) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def html_section(views: list[ClusterView], load: Callable[[int], object], *, names: Sequence[str],
                 class_names: Sequence[str] | None = None, title: str = "") -> str:
    """The gallery as an HTML fragment with inline thumbnails (the file's path on hover)."""
    rows = []
    for view in views:
        cells = "".join(
            f'<img src="{_data_uri(thumbnail(load(i)))}" title="{html.escape(names[i])}" '
            f'alt="{html.escape(names[i])}">' for i in view.top)
        caption = html.escape(_caption(view, class_names)).replace("\n", "<br>")
        rows.append(f'<tr><td class="caption">{caption}</td><td class="thumbs">{cells or "(empty)"}</td></tr>')
    return f"<h2>{html.escape(title)}</h2>\n<table class=\"gallery\">\n" + "\n".join(rows) + "\n</table>\n"


GALLERY_CSS = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
td, th { padding: 4px 10px; text-align: left; vertical-align: middle; }
table.numbers td, table.numbers th { border-bottom: 1px solid #ddd; }
table.gallery td { border-bottom: 1px solid #eee; }
td.caption { font-size: 0.9em; white-space: nowrap; }
td.thumbs img { height: 84px; margin: 2px; image-rendering: pixelated; }
"""
