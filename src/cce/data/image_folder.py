"""A folder of one's own images: the files, their optional labels, and reading them one at a time.

Every ``.jpg``, ``.jpeg`` and ``.png`` under the folder (any depth; hidden files and folders
skipped) is an image, in sorted order of its path relative to the folder. The first-level
sub-folder of an image is its label (``photos/cat/a.jpg`` has label ``cat``); labels are used
only to score clusters, and only when every image has one and there are at least two.

Images are never loaded all at once: :class:`FolderImages` and :class:`ArrayImages` give one
decoded image per index (a ``PIL.Image``), which the extractors of :mod:`cce.data.features`
stream through in batches. A file that cannot be decoded raises :class:`ImageReadError` naming
its path; the extractors skip it and report it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .fetch import DataUnavailableError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class ImageReadError(OSError):
    """One image could not be read or decoded: ``path``, ``reason``; the message names both."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


class ImageFolderError(DataUnavailableError):
    """The folder is missing, unreadable or holds no images."""


@dataclass(frozen=True)
class ImageFolder:
    """The images under ``root``: relative paths (N,), labels (N,) int64 (-1 = none) and class names."""

    root: Path
    paths: tuple[str, ...]
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labelled(self) -> bool:
        """Whether the sub-folders are usable as ground truth: every image in one, and at least two."""
        return len(self.classes) >= 2 and bool((self.labels >= 0).all())

    def fingerprint(self) -> str:
        """SHA-256 of every relative path with its size in bytes: changes when a file is added,
        removed, renamed or rewritten with another size."""
        h = hashlib.sha256()
        for rel in self.paths:
            try:
                size = (self.root / rel).stat().st_size
            except OSError:
                size = -1
            h.update(f"{rel}\0{size}\n".encode())
        return h.hexdigest()


def scan(root: Path | str, labels: bool = True) -> ImageFolder:
    """Every image file under ``root``, sorted; with ``labels``, first-level sub-folders as classes."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ImageFolderError(f"{root}: no such folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise ImageFolderError(f"{root}: folder not readable (permission denied)")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(dirpath, name).relative_to(root).as_posix())
    if not found:
        raise ImageFolderError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in it or its sub-folders")
    found.sort()
    tops = [rel.split("/", 1)[0] if "/" in rel else None for rel in found]
    classes = tuple(sorted({t for t in tops if t is not None})) if labels else ()
    index = {name: i for i, name in enumerate(classes)}
    y = np.array([index.get(t, -1) if t is not None else -1 for t in tops], dtype=np.int64)
    return ImageFolder(root.resolve(), tuple(found), y, classes)


def read_image(path: Path | str):
    """The fully decoded image at ``path`` (``PIL.Image``, upright by its EXIF orientation).

    Anything that goes wrong (missing, truncated, not an image, too large) raises
    :class:`ImageReadError` with the path: a damaged file must not stop a folder of thousands.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later in a worker
            return ImageOps.exif_transpose(img)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        reason = str(err).replace(f" '{path}'", "").replace(str(path), "<file>")  # the path is said once
        raise ImageReadError(path, f"{type(err).__name__}: {reason}") from err


class FolderImages:
    """Images of an :class:`ImageFolder`, decoded one at a time (picklable, for DataLoader workers)."""

    def __init__(self, folder: ImageFolder):
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def name(self, i: int) -> str:
        return self.folder.paths[i]

    def load(self, i: int):
        return read_image(self.folder.root / self.folder.paths[i])

    def fingerprint(self) -> str:
        return self.folder.fingerprint()


class ArrayImages:
    """uint8 images (N, H, W) or (N, H, W, 3) of a prepared dataset as ``PIL.Image``s; values
    scaled from [0, pixel_max] to [0, 255] (digits' pixels go to 16)."""

    def __init__(self, images: np.ndarray, pixel_max: float = 255.0):
        images = np.asarray(images)
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
            raise ValueError(f"expected images (N, H, W) or (N, H, W, 3), got {images.shape}")
        self.images, self.pixel_max = images, float(pixel_max)

    def __len__(self) -> int:
        return len(self.images)

    def name(self, i: int) -> str:
        return f"image {i}"

    def load(self, i: int):
        from PIL import Image

        x = self.images[i]
        if self.pixel_max != 255.0 or x.dtype != np.uint8:
            x = np.clip(np.rint(x.astype(np.float64) * (255.0 / self.pixel_max)), 0, 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(x))

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(f"{self.images.dtype}{self.images.shape}{self.pixel_max}".encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        return h.hexdigest()
