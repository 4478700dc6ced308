"""Dataset registry, download, verification and loading, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from cce import data
from cce.data import fetch
from data_fixtures import (
    FileServer,
    closed_port_url,
    fake_dataset,
    fake_mnist,
    md5_of,
    spec_for,
    tarball,
    write_files,
)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason=f"{FASHION_DIR} absent: install Debian's dataset-fashion-mnist package to run this test",
)


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


def use_fake(monkeypatch, name):
    """Put a spec with the fake files' checksums into the registry; return the fake dataset."""
    files, members, images, labels, sizes = fake_dataset(name)
    monkeypatch.setitem(data.DATASETS, name, spec_for(name, files, members, sizes))
    return files, members, images, labels, sizes


def all_files(ddir: Path) -> list[str]:
    return sorted(str(p.relative_to(ddir)) for p in ddir.rglob("*") if p.is_file()) if ddir.exists() else []


# ---------------------------------------------------------------------------
# Registry


def test_registry_matches_paper_sizes():
    sizes = {name: data.get_spec(name).size for name in ("mnist", "fashion_mnist", "cifar10", "cifar100_20", "stl10")}
    assert sizes == {"mnist": 70000, "fashion_mnist": 70000, "cifar10": 60000, "cifar100_20": 60000, "stl10": 13000}
    assert data.get_spec("stl10").split_sizes == {"train": 5000, "test": 8000}
    assert data.get_spec("cifar10").split_sizes == {"train": 50000, "test": 10000}
    assert data.get_spec("cifar100_20").n_classes == 20
    assert data.get_spec("digits").size == 1797


def test_registry_pins_torchvision_sources():
    """URLs and MD5s are torchvision's (the classes the registry cites)."""
    from torchvision.datasets import CIFAR10, CIFAR100, MNIST, STL10, FashionMNIST

    for name, cls in (("mnist", MNIST), ("fashion_mnist", FashionMNIST)):
        spec = data.get_spec(name)
        assert list(spec.mirrors) == list(cls.mirrors)
        assert {f.name: f.md5 for f in spec.files} == dict(cls.resources)
    for name, cls in (("cifar10", CIFAR10), ("cifar100_20", CIFAR100), ("stl10", STL10)):
        (archive,) = data.get_spec(name).files
        assert data.get_spec(name).mirrors[0] + archive.name == cls.url
        assert archive.md5 == cls.tgz_md5
        members = {m.name: m.md5 for m in archive.members}
        listed = {f"{cls.base_folder}/{n}": md5 for n, md5 in cls.train_list + cls.test_list}
        if name == "stl10":
            del listed["stl10_binary/unlabeled_X.bin"]  # not part of the paper's 13000
        else:
            listed[f"{cls.base_folder}/{cls.meta['filename']}"] = cls.meta["md5"]
        assert members == listed


def test_unknown_dataset_lists_known_names(tmp_path):
    for call in (lambda: data.prepare("cifar1O", tmp_path), lambda: data.load("cifar1O", tmp_path)):
        with pytest.raises(KeyError) as err:
            call()
        message = str(err.value)
        assert "unknown dataset 'cifar1O'" in message
        for name in ("cifar10", "cifar100_20", "digits", "fashion_mnist", "mnist", "stl10"):
            assert name in message
    assert not (tmp_path / "cifar1O").exists()


def test_digits_always_available(tmp_path):
    manifest = json.loads(data.prepare("digits", tmp_path).read_text())
    assert manifest["n_examples"] == 1797
    images, labels = data.load("digits", tmp_path)
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and labels.dtype == np.int64


def test_load_before_prepare_and_bad_split(tmp_path):
    with pytest.raises(data.DataUnavailableError, match="not prepared"):
        data.load("mnist", tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        data.load("mnist", tmp_path, split="validation")


# ---------------------------------------------------------------------------
# Download through the registry, every format


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100_20", "stl10"])
def test_download_verify_load(name, tmp_path, server, monkeypatch):
    files, members, images, labels, sizes = use_fake(monkeypatch, name)
    base = server.add(name, files)
    manifest_path = data.prepare(name, tmp_path, mirrors=[base])
    manifest = json.loads(manifest_path.read_text())
    assert manifest_path == tmp_path / name / "manifest.json"
    assert manifest["n_examples"] == len(images) == sum(sizes.values())
    # Served files and the extracted members the registry asks for (not readme.html, not unlabeled_X.bin).
    wanted = set(files) | {m.name for f in data.get_spec(name).files for m in f.members}
    published = files | members
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == {
        n: hashlib.sha256(published[n]).hexdigest() for n in wanted
    }

    x, y = data.load(name, tmp_path)
    assert x.dtype == np.uint8 and y.dtype == np.int64
    assert x.shape == (len(images), *data.get_spec(name).image_shape)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    xtr, ytr = data.load(name, tmp_path, "train")
    xte, yte = data.load(name, tmp_path, "test")
    assert (len(xtr), len(xte)) == (sizes["train"], sizes["test"])
    np.testing.assert_array_equal(np.concatenate([xtr, xte]), x)
    np.testing.assert_array_equal(np.concatenate([ytr, yte]), y)


def test_cifar100_20_uses_coarse_labels(tmp_path, server, monkeypatch):
    files, members, images, coarse, _ = use_fake(monkeypatch, "cifar100_20")
    data.prepare("cifar100_20", tmp_path, mirrors=[server.add("c", files)])
    _, y = data.load("cifar100_20", tmp_path)
    np.testing.assert_array_equal(y, coarse)
    assert y.max() < 20


def test_stl10_skips_unlabeled_and_matches_torchvision(tmp_path, server, monkeypatch):
    from torchvision.datasets import STL10

    files, members, images, labels, _ = use_fake(monkeypatch, "stl10")
    data.prepare("stl10", tmp_path, mirrors=[server.add("s", files)])
    raw = tmp_path / "stl10" / "raw"
    assert not (raw / "stl10_binary" / "unlabeled_X.bin").exists()

    class Fake(STL10):  # torchvision's own reader, with the fake files' checksums
        train_list = [[n, md5_of(members[f"stl10_binary/{n}"])] for n in ("train_X.bin", "train_y.bin")]
        test_list = [[n, md5_of(members[f"stl10_binary/{n}"])] for n in ("test_X.bin", "test_y.bin")]

    ours, our_labels = data.load("stl10", tmp_path, "train")
    theirs = Fake(str(raw), split="train")
    np.testing.assert_array_equal(ours, theirs.data.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(our_labels, theirs.labels)


def test_cifar10_matches_torchvision(tmp_path, server, monkeypatch):
    from torchvision.datasets import CIFAR10

    files, members, *_ = use_fake(monkeypatch, "cifar10")
    data.prepare("cifar10", tmp_path, mirrors=[server.add("c", files)])
    raw = tmp_path / "cifar10" / "raw"
    md5s = {k.split("/")[-1]: md5_of(v) for k, v in members.items()}

    class Fake(CIFAR10):
        train_list = [[f"data_batch_{i}", md5s[f"data_batch_{i}"]] for i in range(1, 6)]
        test_list = [["test_batch", md5s["test_batch"]]]
        meta = {"filename": "batches.meta", "key": "label_names", "md5": md5s["batches.meta"]}

    for split, train in (("train", True), ("test", False)):
        theirs = Fake(str(raw), train=train)
        ours, our_labels = data.load("cifar10", tmp_path, split)
        np.testing.assert_array_equal(ours, theirs.data)
        np.testing.assert_array_equal(our_labels, theirs.targets)


def test_mirror_environment_variable(tmp_path, server, monkeypatch):
    files, *_ = use_fake(monkeypatch, "mnist")
    server.add("mirror/mnist", files)
    monkeypatch.setenv(data.MIRROR_ENV, f"{closed_port_url()} {server.url}/mirror")
    manifest = json.loads(data.prepare("mnist", tmp_path).read_text())
    assert {f["origin"] for f in manifest["files"]} == {f"{server.url}/mirror/mnist/{n}" for n in files}


def test_mirrors_tried_in_order_and_dead_host_skipped(tmp_path, server, monkeypatch):
    files, *_ = use_fake(monkeypatch, "mnist")
    dead = closed_port_url()
    empty = server.add("empty", {})  # answers 404 for everything
    good = server.add("good", files)
    attempts = []
    real_download = fetch.download_file
    monkeypatch.setattr(fetch, "download_file", lambda url, *a, **kw: attempts.append(url) or real_download(url, *a, **kw))
    manifest = json.loads(data.prepare("mnist", tmp_path, mirrors=[dead, empty, good]).read_text())
    assert all(f["origin"].startswith(good) for f in manifest["files"])
    # A host that did not answer is asked once, not once per file.
    assert [u for u in attempts if u.startswith(dead)] == [dead + next(iter(files))]
    # The 404 mirror is asked for every file (it answered), the good one once per file.
    assert sorted(server.requests) == sorted([f"/empty/{n}" for n in files] + [f"/good/{n}" for n in files])


def test_second_run_reuses_verified_files(tmp_path, server, monkeypatch):
    files, *_ = use_fake(monkeypatch, "mnist")
    base = server.add("m", files)
    data.prepare("mnist", tmp_path, mirrors=[base])
    n_requests = len(server.requests)
    manifest = json.loads(data.prepare("mnist", tmp_path, mirrors=[base]).read_text())
    assert len(server.requests) == n_requests
    assert {f["origin"] for f in manifest["files"]} == {"raw"}


def test_corrupted_member_is_restored_from_kept_archive(tmp_path, server, monkeypatch):
    files, *_ = use_fake(monkeypatch, "cifar10")
    base = server.add("c", files)
    first = json.loads(data.prepare("cifar10", tmp_path, mirrors=[base]).read_text())["files"]
    n_requests = len(server.requests)
    member = tmp_path / "cifar10" / "raw" / "cifar-10-batches-py" / "data_batch_3"
    member.write_bytes(member.read_bytes()[:-1] + b"x")
    second = json.loads(data.prepare("cifar10", tmp_path, mirrors=[base]).read_text())["files"]
    assert md5_of(member.read_bytes()) == data.get_spec("cifar10").files[0].members[2].md5
    assert len(server.requests) == n_requests  # re-extracted from raw/, not downloaded again
    # The same files with the same content on every run, the archive included.
    assert {f["name"]: f["sha256"] for f in second} == {f["name"]: f["sha256"] for f in first}
    third = json.loads(data.prepare("cifar10", tmp_path, mirrors=[base]).read_text())["files"]
    assert {f["name"]: f["sha256"] for f in third} == {f["name"]: f["sha256"] for f in first}
    assert {f["origin"] for f in third} == {"raw"}


# ---------------------------------------------------------------------------
# Failures leave nothing that looks complete; the next run retries


def assert_failed_cleanly(ddir: Path, keep: set[str] = frozenset()):
    assert not (ddir / "manifest.json").exists()
    assert set(all_files(ddir)) <= set(keep), all_files(ddir)  # no partial, no temporary files


def test_checksum_mismatch(tmp_path, server, monkeypatch):
    files, *_ = use_fake(monkeypatch, "cifar10")
    bad = bytearray(files["cifar-10-python.tar.gz"])
    bad[100] ^= 0xFF
    base = server.add("c", {"cifar-10-python.tar.gz": bytes(bad)})
    with pytest.raises(data.DataVerificationError) as err:
        data.prepare("cifar10", tmp_path, mirrors=[base])
    message = str(err.value)
    assert "cifar-10-python.tar.gz: checksum does not match" in message
    assert "no copy found passed verification" in message
    assert_failed_cleanly(tmp_path / "cifar10")
    server.files["/c/cifar-10-python.tar.gz"] = files["cifar-10-python.tar.gz"]
    data.prepare("cifar10", tmp_path, mirrors=[base])
    assert data.is_prepared(tmp_path, "cifar10")


@pytest.mark.parametrize("mode", ["truncate", "reset", "nolength", "stall"])
def test_interrupted_transfer(mode, tmp_path, server, monkeypatch):
    files, *_ = use_fake(monkeypatch, "mnist")
    base = server.add("m", files)
    victim = "t10k-images-idx3-ubyte.gz"
    server.modes[f"/m/{victim}"] = mode
    expected_error = data.DataVerificationError if mode == "nolength" else data.DataUnavailableError
    with pytest.raises(expected_error) as err:
        data.prepare("mnist", tmp_path, mirrors=[base], timeout=0.5)
    message = str(err.value)
    assert "dataset 'mnist' is not available" in message
    assert f"{base}{victim}" in message
    explanation = {
        "truncate": "transfer stopped after 1195 of 2391 bytes",
        "reset": "Connection reset",
        "nolength": "checksum does not match",
        "stall": "timed out",
    }[mode]
    assert explanation in message
    # Files fetched before the failure are complete and verified; the victim does not exist at all.
    ddir = tmp_path / "mnist"
    assert_failed_cleanly(ddir, {"raw/train-images-idx3-ubyte.gz", "raw/train-labels-idx1-ubyte.gz"})
    server.modes.clear()
    data.prepare("mnist", tmp_path, mirrors=[base])
    assert data.is_prepared(tmp_path, "mnist")


def test_corrupt_archive_is_removed(tmp_path, server, monkeypatch):
    """An archive that passes its checksum but cannot be extracted: clear error, archive removed, rerun works."""
    files, members, _, _, sizes = fake_dataset("stl10")
    broken = files["stl10_binary.tar.gz"][: len(files["stl10_binary.tar.gz"]) // 2]
    monkeypatch.setitem(
        data.DATASETS, "stl10", spec_for("stl10", {"stl10_binary.tar.gz": broken}, members, sizes)
    )
    base = server.add("s", {"stl10_binary.tar.gz": broken})
    with pytest.raises(data.DataVerificationError) as err:
        data.prepare("stl10", tmp_path, mirrors=[base])
    message = str(err.value)
    assert "stl10_binary.tar.gz cannot be extracted" in message and "it was removed" in message
    # Members extracted before the damage were verified one by one; nothing else remains.
    ddir = tmp_path / "stl10"
    assert_failed_cleanly(ddir, {f"raw/{m}" for m in members})
    for kept in all_files(ddir):
        assert (ddir / kept).read_bytes() == members[kept.removeprefix("raw/")]
    assert not (ddir / "raw" / "stl10_binary.tar.gz").exists()

    monkeypatch.setitem(data.DATASETS, "stl10", spec_for("stl10", files, members, sizes))
    server.files["/s/stl10_binary.tar.gz"] = files["stl10_binary.tar.gz"]
    data.prepare("stl10", tmp_path, mirrors=[base])
    assert data.load("stl10", tmp_path)[0].shape == (sum(sizes.values()), 96, 96, 3)


def test_archive_missing_a_member(tmp_path, server, monkeypatch):
    files, members, _, _, sizes = fake_dataset("cifar100_20")
    short = tarball({k: v for k, v in members.items() if not k.endswith("/test")})
    monkeypatch.setitem(data.DATASETS, "cifar100_20", spec_for("cifar100_20", {"cifar-100-python.tar.gz": short}, members, sizes))
    with pytest.raises(data.DataVerificationError, match="lacks cifar-100-python/test"):
        data.prepare("cifar100_20", tmp_path, mirrors=[server.add("c", {"cifar-100-python.tar.gz": short})])
    assert not data.is_prepared(tmp_path, "cifar100_20")
    assert not (tmp_path / "cifar100_20" / "raw" / "cifar-100-python.tar.gz").exists()


def test_no_network_fails_fast_with_instructions(tmp_path, monkeypatch):
    files, *_ = use_fake(monkeypatch, "mnist")
    dead = closed_port_url()
    start = time.monotonic()
    with pytest.raises(data.DataUnavailableError) as err:
        data.prepare("mnist", tmp_path, mirrors=[dead])
    elapsed = time.monotonic() - start
    message = str(err.value)
    assert "dataset 'mnist' is not available" in message
    assert "Files expected: " + ", ".join(files) in message
    assert f"Put them in {(tmp_path / 'mnist' / 'raw').resolve()}" in message
    assert "Connection refused" in message
    assert elapsed < 10, f"an unreachable mirror took {elapsed:.1f} s"  # a bound against retry loops, not a benchmark
    assert_failed_cleanly(tmp_path / "mnist")


def test_download_disabled(tmp_path, server, monkeypatch):
    files, *_ = use_fake(monkeypatch, "cifar10")
    base = server.add("c", files)
    with pytest.raises(data.DataUnavailableError, match="disabled") as err:
        data.prepare("cifar10", tmp_path, download=False, mirrors=[base])
    assert "cifar-10-python.tar.gz (or its extracted files cifar-10-batches-py/data_batch_1" in str(err.value)
    assert server.requests == []


# ---------------------------------------------------------------------------
# local_dir


def test_local_dir_plain_and_torchvision_layout(tmp_path, monkeypatch):
    files, _, images, _, _ = use_fake(monkeypatch, "mnist")
    plain = write_files(tmp_path / "plain", files)
    torchvision_root = tmp_path / "tv"
    write_files(torchvision_root / "MNIST" / "raw", files)
    for i, local in enumerate((plain, torchvision_root)):
        root = tmp_path / f"root{i}"
        manifest = json.loads(data.prepare("mnist", root, local_dir=local, download=False).read_text())
        assert {Path(f["origin"]).parent for f in manifest["files"]} == {local if i == 0 else local / "MNIST" / "raw"}
        np.testing.assert_array_equal(data.load("mnist", root)[0], images)


def test_local_dir_with_extracted_archive(tmp_path, monkeypatch):
    """A torchvision root holding cifar-10-batches-py/ but no tarball is enough."""
    _, members, images, _, _ = use_fake(monkeypatch, "cifar10")
    local = write_files(tmp_path / "tv", members)
    data.prepare("cifar10", tmp_path / "root", local_dir=local, download=False)
    assert not (tmp_path / "root" / "cifar10" / "raw" / "cifar-10-python.tar.gz").exists()
    np.testing.assert_array_equal(data.load("cifar10", tmp_path / "root")[0], images)


def test_local_dir_missing_or_not_a_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(data.DataUnavailableError, match=f"local_dir {missing} for dataset 'mnist' does not exist"):
        data.prepare("mnist", tmp_path / "root", local_dir=missing)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(data.DataUnavailableError, match="is not a directory"):
        data.prepare("mnist", tmp_path / "root", local_dir=a_file)


def test_local_dir_with_corrupt_file(tmp_path, monkeypatch):
    files, *_ = use_fake(monkeypatch, "mnist")
    local = write_files(tmp_path / "local", files)
    (local / "train-labels-idx1-ubyte.gz").write_bytes(b"not the file")
    with pytest.raises(data.DataVerificationError) as err:
        data.prepare("mnist", tmp_path / "root", local_dir=local, download=False)
    assert f"{local / 'train-labels-idx1-ubyte.gz'}: train-labels-idx1-ubyte.gz: checksum does not match" in str(err.value)
    assert_failed_cleanly(tmp_path / "root" / "mnist", {"raw/train-images-idx3-ubyte.gz"})


def _chmod_blocks_reads(path: Path) -> bool:
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True


def test_local_dir_unreadable(tmp_path, monkeypatch):
    files, *_ = use_fake(monkeypatch, "mnist")
    local = write_files(tmp_path / "local", files)
    victim = local / "t10k-images-idx3-ubyte.gz"
    victim.chmod(0)
    try:
        if not _chmod_blocks_reads(victim):
            pytest.skip("running as root (or with CAP_DAC_OVERRIDE): chmod 000 does not block reads")
        with pytest.raises(data.DataUnavailableError, match=f"cannot read {victim} \\(Permission denied\\)"):
            data.prepare("mnist", tmp_path / "root", local_dir=local, download=False)
        assert not data.is_prepared(tmp_path / "root", "mnist")
        victim.chmod(0o644)
        local.chmod(0)
        with pytest.raises(data.DataUnavailableError, match="is not readable"):
            data.prepare("mnist", tmp_path / "root", local_dir=local, download=False)
    finally:
        local.chmod(0o755)
        victim.chmod(0o644)


# ---------------------------------------------------------------------------
# Fashion-MNIST from Debian's dataset-fashion-mnist


@needs_fashion
@pytest.mark.parametrize("how", ["local_dir", "system_dir"])
def test_fashion_mnist_from_debian(how, tmp_path):
    local_dir = FASHION_DIR if how == "local_dir" else None
    manifest = json.loads(data.prepare("fashion_mnist", tmp_path, local_dir=local_dir, download=False).read_text())
    assert manifest["n_examples"] == 70000 and manifest["n_classes"] == 10
    assert {Path(f["origin"]).parent for f in manifest["files"]} == {FASHION_DIR}
    images, labels = data.load("fashion_mnist", tmp_path)
    assert images.shape == (70000, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), np.full(10, 7000))
    assert data.load("fashion_mnist", tmp_path, "test")[0].shape == (10000, 28, 28)


@needs_fashion
def test_fashion_mnist_debian_content_checksum():
    """Debian's files are recompressed: MD5 differs from torchvision's, the decompressed content matches."""
    for source in data.get_spec("fashion_mnist").files:
        path = FASHION_DIR / source.name
        with gzip.open(path, "rb") as f:
            content = hashlib.sha256(f.read()).hexdigest()
        assert content == source.content_sha256
        data.verify_file(path, source)


def test_content_checksum_rejects_other_content(tmp_path):
    source = data.get_spec("fashion_mnist").files[1]
    path = tmp_path / source.name
    path.write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x01x"))
    with pytest.raises(data.DataVerificationError, match="checksum does not match"):
        data.verify_file(path, source)
    path.write_bytes(b"not gzip")
    with pytest.raises(data.DataVerificationError, match="cannot be decompressed"):
        data.verify_file(path, source)


def test_fake_idx_has_published_header(tmp_path):
    files, images, _, _ = fake_mnist()
    raw = gzip.decompress(files["train-images-idx3-ubyte.gz"])
    assert raw[:4] == b"\x00\x00\x08\x03" and [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3)] == [5, 28, 28]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(files["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(data.read_idx(path), images[:5])
