"""Small files in the real dataset formats, a local HTTP server, and registry overrides for tests."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np

from cce import data

# ---------------------------------------------------------------------------
# Writers of the published formats


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX (MNIST) encoding of a uint8 array, gzip-compressed like the published files."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return gzip.compress(header + array.tobytes(), mtime=0)


def tarball(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)  # CIFAR's files are protocol-2 pickles


def _cifar_rows(images_hwc: np.ndarray) -> np.ndarray:
    # Published layout: one row of 3072 per image, R plane then G then B, each row-major.
    return images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), -1)


def fake_mnist(n_train=5, n_test=3, seed=0):
    """(files, images, labels) of a tiny MNIST in the four IDX .gz files; images are train then test."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_train + n_test, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n_train + n_test).astype(np.uint8)
    files = {
        "train-images-idx3-ubyte.gz": idx_bytes(images[:n_train]),
        "train-labels-idx1-ubyte.gz": idx_bytes(labels[:n_train]),
        "t10k-images-idx3-ubyte.gz": idx_bytes(images[n_train:]),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(labels[n_train:]),
    }
    return files, images, labels.astype(np.int64), {"train": n_train, "test": n_test}


def fake_cifar10(per_batch=2, n_test=3, seed=1):
    rng = np.random.default_rng(seed)
    n_train = 5 * per_batch
    images = rng.integers(0, 256, (n_train + n_test, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n_train + n_test)
    members = {}
    for b in range(5):
        sl = slice(b * per_batch, (b + 1) * per_batch)
        members[f"cifar-10-batches-py/data_batch_{b + 1}"] = _pickle({
            "batch_label": f"training batch {b + 1} of 5",
            "labels": [int(v) for v in labels[sl]],
            "data": _cifar_rows(images[sl]),
            "filenames": [f"img_{i}.png" for i in range(per_batch)],
        })
    members["cifar-10-batches-py/test_batch"] = _pickle({
        "batch_label": "testing batch 1 of 1",
        "labels": [int(v) for v in labels[n_train:]],
        "data": _cifar_rows(images[n_train:]),
        "filenames": [f"test_{i}.png" for i in range(n_test)],
    })
    members["cifar-10-batches-py/batches.meta"] = _pickle(
        {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch, "num_vis": 3072}
    )
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    return members, images, labels.astype(np.int64), {"train": n_train, "test": n_test}


def fake_cifar100(n_train=6, n_test=4, seed=2):
    """Coarse labels are drawn independently of fine ones, so a loader that used fine_labels would fail."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    fine = rng.integers(20, 100, n)  # outside 0..19: fine labels can never pass as coarse ones
    coarse = rng.integers(0, 20, n)
    members = {}
    for part, sl in (("train", slice(0, n_train)), ("test", slice(n_train, n))):
        members[f"cifar-100-python/{part}"] = _pickle({
            "filenames": [f"{part}_{i}.png" for i in range(sl.stop - sl.start)],
            "batch_label": f"{part}ing batch 1 of 1",
            "fine_labels": [int(v) for v in fine[sl]],
            "coarse_labels": [int(v) for v in coarse[sl]],
            "data": _cifar_rows(images[sl]),
        })
    members["cifar-100-python/meta"] = _pickle(
        {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]}
    )
    return members, images, coarse.astype(np.int64), {"train": n_train, "test": n_test}


def fake_stl10(n_train=3, n_test=2, n_unlabeled=2, seed=3):
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    images = rng.integers(0, 256, (n + n_unlabeled, 96, 96, 3), dtype=np.uint8)
    labels = rng.integers(1, 11, n)  # 1..10 on disk

    def x_bin(hwc):  # published layout: (N, C, W, H), C order ("column-major" planes)
        return np.ascontiguousarray(hwc.transpose(0, 3, 2, 1)).tobytes()

    members = {
        "stl10_binary/train_X.bin": x_bin(images[:n_train]),
        "stl10_binary/train_y.bin": labels[:n_train].astype(np.uint8).tobytes(),
        "stl10_binary/test_X.bin": x_bin(images[n_train:n]),
        "stl10_binary/test_y.bin": labels[n_train:].astype(np.uint8).tobytes(),
        "stl10_binary/unlabeled_X.bin": x_bin(images[n:]),
        "stl10_binary/class_names.txt": b"\n".join(b"c%d" % i for i in range(10)),
    }
    return members, images[:n], (labels - 1).astype(np.int64), {"train": n_train, "test": n_test}


ARCHIVES = {
    "cifar10": ("cifar-10-python.tar.gz", fake_cifar10),
    "cifar100_20": ("cifar-100-python.tar.gz", fake_cifar100),
    "stl10": ("stl10_binary.tar.gz", fake_stl10),
}


def md5_of(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def fake_dataset(name: str):
    """(served files {name: bytes}, extracted members {path: bytes}, images, labels, split sizes)."""
    if name in ("mnist", "fashion_mnist"):
        files, images, labels, sizes = fake_mnist()
        return files, {}, images, labels, sizes
    archive, make = ARCHIVES[name]
    members, images, labels, sizes = make()
    return {archive: tarball(members)}, members, images, labels, sizes


def spec_for(name: str, files: dict[str, bytes], members: dict[str, bytes], sizes: dict[str, int]) -> data.DatasetSpec:
    """The registry's spec of ``name`` with checksums and sizes of the fake files (URLs untouched)."""
    spec = data.get_spec(name)
    new_files = []
    for f in spec.files:
        new_members = tuple(dataclasses.replace(m, md5=md5_of(members[m.name])) for m in f.members)
        new_files.append(dataclasses.replace(f, md5=md5_of(files[f.name]), content_sha256=None, members=new_members))
    return dataclasses.replace(spec, files=tuple(new_files), split_sizes=dict(sizes), system_dirs=())


# ---------------------------------------------------------------------------
# HTTP server


class FileServer:
    """HTTP server on 127.0.0.1 (ephemeral port) serving ``files[path]``.

    ``modes[path]``: "ok"; "truncate" (Content-Length of the whole file, half of it sent, clean close);
    "reset" (half sent, then the connection is reset); "nolength" (no Content-Length, half sent, close);
    "stall" (half sent, then silence until the server stops).
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}
        self.requests: list[str] = []
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                mode = server.modes.get(self.path, "ok")
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if mode != "nolength":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "ok":
                    self.wfile.write(body)
                    return
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if mode == "reset":
                    # Linger 0 then close the descriptor itself: RST at once, before any FIN.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    os.close(self.connection.detach())
                elif mode == "stall":
                    server.release.wait(30)
                self.close_connection = True

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the "reset" mode leaves a dead socket behind on purpose

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, prefix: str, files: dict[str, bytes]) -> str:
        """Serve ``files`` under ``/prefix/``; return that base URL."""
        for name, content in files.items():
            self.files[f"/{prefix}/{name}"] = content
        return f"{self.url}/{prefix}/"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def write_files(directory: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (relative name -> content) under ``directory``; return it."""
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return directory


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def halves_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two kinds of 28x28 grey uint8 images: a bright upper (label 0) or lower (label 1) half, with noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    x = rng.integers(0, 60, (n, 28, 28))
    for i, c in enumerate(labels):
        x[i, :14] += 150 * (c == 0)
        x[i, 14:] += 150 * (c == 1)
    return x.astype(np.uint8), labels.astype(np.int64)


def prepared_fake_mnist(tmp_path: Path, monkeypatch, n_train: int, n_test: int, seed: int) -> Path:
    """A data root with a fake ``mnist`` of n_train + n_test images prepared in it (the registry patched)."""
    files, _, _, sizes = fake_mnist(n_train=n_train, n_test=n_test, seed=seed)
    monkeypatch.setitem(data.DATASETS, "mnist", spec_for("mnist", files, {}, sizes))
    root = tmp_path / "data"
    data.prepare("mnist", root, local_dir=write_files(tmp_path / "local", files), download=False)
    return root
