"""Cluster galleries: for each cluster its size, its most confident images and, with labels, the
majority label and the cluster's purity; drawn as a figure (PNG) or as HTML with inline thumbnails.

An image's confidence in its cluster is defined in :mod:`cce.predictions`.
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


# The experiments whose runs get a gallery in the workflow: Table 2's (a head on fixed features) and
# Table 3's (a network trained from scratch).
GALLERY_EXPERIMENTS = ("clustering", "deep")


class GalleryError(ValueError):
    """A gallery cannot be drawn from what a run left (no predictions, other data); the message says why."""


@dataclass(frozen=True)
class ClusterView:
    """One cluster as the gallery shows it: ``top`` holds row indices, most confident first."""

    cluster: int
    size: int
    top: tuple[int, ...]
    majority: int | None = None
    purity: float | None = None


def gallery_targets(config: dict) -> list[str]:
    """The workflow's gallery figures: one per dataset and method of the config's clustering and deep sections."""
    return [gallery_path(experiment, dataset, method)
            for experiment in GALLERY_EXPERIMENTS if config.get(experiment)
            for dataset in config[experiment].get("datasets", []) for method in config[experiment].get("methods", [])]


def gallery_path(experiment: str, dataset: str, method: str) -> str:
    return f"results/figures/gallery/{experiment}/{dataset}/{method}.png"


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
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's) is left alone

    from ..io import atomic_path

    shown = views[:max_clusters]
    n_top = max((len(v.top) for v in shown), default=1) or 1
    fig = Figure(figsize=(2.6 + 0.9 * n_top, 0.95 * len(shown) + 0.6))
    axes = fig.subplots(len(shown), n_top + 1, squeeze=False, gridspec_kw={"width_ratios": [2.6] + [0.9] * n_top})
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
