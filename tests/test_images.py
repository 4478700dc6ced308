"""Clustering a folder of one's own images: the folder's files and labels, streamed and resumable
extraction, damaged files, the command's CSV, report and accuracy, galleries, and the config's image folders."""

import csv
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cce.data import features
from cce.data.image_folder import ArrayImages, FolderImages, ImageFolderError, ImageReadError, read_image, scan
from cce.metrics import hungarian_accuracy
from cce.pipeline import gallery
from cce.pipeline.cli import main

COLOURS = {"blue": (40, 70, 220), "green": (40, 180, 60), "red": (220, 40, 40), "yellow": (230, 210, 40)}
PER_CLASS = 60
DAMAGED = ("blue/damaged_0.jpg", "green/damaged_1.png", "red/damaged_2.png")


def make_shapes(root, per_class=PER_CLASS, size=24, seed=0):
    """Four classes of coloured shapes (circles and squares on dark noise) as jpg and png, in labelled
    sub-folders, and three damaged files: a truncated JPEG, a PNG header followed by garbage, an empty PNG."""
    rng = np.random.default_rng(seed)
    for c, (name, rgb) in enumerate(COLOURS.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 60, 3)))
            r = int(rng.integers(5, 9))
            x, y = (int(v) for v in rng.integers(r, size - r, 2))
            fill = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in rgb)
            (ImageDraw.Draw(img).ellipse if c % 2 else ImageDraw.Draw(img).rectangle)((x - r, y - r, x + r, y + r),
                                                                                      fill=fill)
            img.save(root / name / f"{name}_{i:03d}.{'png' if i % 2 else 'jpg'}")
    good = (root / "blue/blue_000.jpg").read_bytes()
    (root / DAMAGED[0]).write_bytes(good[: len(good) // 3])
    (root / DAMAGED[1]).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (root / DAMAGED[2]).write_bytes(b"")
    (root / "notes.txt").write_text("not an image")  # ignored: not jpg or png
    (root / ".hidden").mkdir()
    Image.new("RGB", (size, size)).save(root / ".hidden/x.png")  # ignored: hidden
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("images") / "shapes")


@pytest.fixture(scope="module")
def command_run(shapes, tmp_path_factory):
    """One run of `python -m cce cluster-images` on the shapes, its stdout and output folder."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("out") / "clusters"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["cluster-images", str(shapes), "--out", str(out), "--options", '{"epochs": 10}', "--quiet",
                     "--extractor-options", '{"num_workers": 0, "chunk_size": 100}'])
    assert code == 0
    return stdout.getvalue(), out


# ---------------------------------------------------------------------------
# The folder


def test_scan_lists_images_sorted_with_sub_folders_as_labels(shapes):
    folder = scan(shapes)
    assert len(folder) == 4 * PER_CLASS + len(DAMAGED)
    assert list(folder.paths) == sorted(folder.paths)
    assert folder.classes == ("blue", "green", "red", "yellow") and folder.labelled
    assert all(folder.classes[y] == p.split("/")[0] for p, y in zip(folder.paths, folder.labels))
    assert not any(p.startswith(".hidden") or p.endswith(".txt") for p in folder.paths)
    assert not scan(shapes, labels=False).labelled


def test_images_outside_sub_folders_mean_no_labels(tmp_path):
    for name in ("a.png", "b/c.png", "d/e.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("L", (4, 4)).save(tmp_path / name)
    folder = scan(tmp_path)
    assert folder.paths == ("a.png", "b/c.png", "d/e.jpg") and list(folder.labels) == [-1, 0, 1]
    assert not folder.labelled


def test_empty_or_missing_folder_is_an_error(tmp_path):
    with pytest.raises(ImageFolderError, match="no images"):
        scan(tmp_path)
    with pytest.raises(ImageFolderError, match="no such folder"):
        scan(tmp_path / "missing")


def test_a_damaged_image_raises_with_its_path(shapes):
    for name in DAMAGED:
        with pytest.raises(ImageReadError) as err:
            read_image(shapes / name)
        assert str(shapes / name) in str(err.value) and err.value.reason
    assert read_image(shapes / "red/red_001.png").size == (24, 24)


def test_fingerprint_changes_with_the_files(tmp_path):
    make_shapes(tmp_path, per_class=2)
    before = scan(tmp_path).fingerprint()
    assert scan(tmp_path).fingerprint() == before
    Image.new("RGB", (3, 3)).save(tmp_path / "red/new.png")
    assert scan(tmp_path).fingerprint() != before


# ---------------------------------------------------------------------------
# Streamed extraction


def test_pixels_of_pngs_are_the_registry_pixels_of_the_same_arrays(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    for i, img in enumerate(images):
        (tmp_path / str(i % 3)).mkdir(exist_ok=True)
        Image.fromarray(img).save(tmp_path / str(i % 3) / f"{i:02d}.png")
    X, y, meta = features.extract_folder(scan(tmp_path), "pixels", num_workers=0, progress=False)
    order = [int(p.split("/")[1][:2]) for p in meta["paths"]]
    np.testing.assert_array_equal(X, features.pixels(images[order]))
    assert list(y) == [i % 3 for i in order] and meta["mode"] == "L" and meta["image_size"] == [28, 28]


def test_damaged_images_are_skipped_and_named(shapes):
    X, y, meta = features.extract_folder(scan(shapes), "pixels", num_workers=0, batch_size=16, progress=False)
    assert X.shape == (4 * PER_CLASS, 24 * 24 * 3) and y.shape == (4 * PER_CLASS,)
    assert sorted(s["path"] for s in meta["skipped"]) == sorted(DAMAGED)
    assert not set(DAMAGED) & set(meta["paths"]) and len(meta["paths"]) == len(X)
    assert meta["n_classes"] == 4 and meta["classes"] == ["blue", "green", "red", "yellow"]


def test_images_of_other_sizes_are_resized_to_the_first(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("RGB", (10, 8), (255, 0, 0)).save(tmp_path / "a/0.png")
    Image.new("L", (30, 20), 128).save(tmp_path / "a/1.png")
    X, _, meta = features.extract_folder(scan(tmp_path), "pixels", num_workers=0, progress=False)
    assert X.shape == (2, 8 * 10 * 3) and meta["mode"] == "RGB"
    np.testing.assert_allclose(X[1], 128 / 255)


def test_extraction_resumes_from_the_chunks_already_written(shapes, tmp_path, monkeypatch):
    folder = scan(shapes)
    whole, _, _ = features.extract_folder(folder, "pixels", num_workers=0, progress=False)
    parts = tmp_path / "parts"
    loads = []
    real_load = FolderImages.load

    def interrupted(self, i):
        loads.append(i)
        if i >= 130:
            raise KeyboardInterrupt  # Ctrl-C in the third chunk
        return real_load(self, i)

    monkeypatch.setattr(FolderImages, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        features.extract_folder(folder, "pixels", parts_dir=parts, chunk_size=50, num_workers=0, progress=False)
    assert sorted(p.name for p in parts.glob("chunk_*.npz")) == ["chunk_000000.npz", "chunk_000001.npz"]
    assert not list(parts.glob("*.part*"))  # nothing half-written
    loads.clear()
    monkeypatch.setattr(FolderImages, "load", lambda self, i: loads.append(i) or real_load(self, i))
    resumed, _, meta = features.extract_folder(folder, "pixels", parts_dir=parts, chunk_size=50, num_workers=0,
                                               progress=False)
    np.testing.assert_array_equal(resumed, whole)
    # the pixels encoder reads the first image for its mode and size; then only the chunks not yet written
    assert loads[0] == 0 and min(loads[1:]) == 100
    assert sorted(s["path"] for s in meta["skipped"]) == sorted(DAMAGED)
    features.discard_parts(parts)
    assert not parts.exists()


def test_other_settings_discard_the_chunks(shapes, tmp_path):
    folder = scan(shapes)
    parts = tmp_path / "parts"
    features.extract_folder(folder, "pixels", parts_dir=parts, chunk_size=100, num_workers=0, progress=False)
    X, _, meta = features.extract_folder(folder, "pixels", parts_dir=parts, chunk_size=100, num_workers=0,
                                         progress=False, mode="L")
    assert X.shape[1] == 24 * 24 and meta["mode"] == "L"
    assert json.loads((parts / "identity.json").read_text())["how"]["mode"] == "L"


def test_array_images_scale_to_255():
    img = ArrayImages(np.full((1, 2, 2), 16, dtype=np.uint8), pixel_max=16).load(0)
    assert np.asarray(img).max() == 255


# ---------------------------------------------------------------------------
# The command


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_command_writes_every_image_cluster_and_confidence(command_run, shapes):
    stdout, out = command_run
    rows = read_csv(out / "clusters.csv")
    assert len(rows) == 4 * PER_CLASS and list(rows[0]) == ["path", "cluster", "confidence", "label"]
    assert all((shapes / r["path"]).is_file() and r["label"] == r["path"].split("/")[0] for r in rows)
    assert {int(r["cluster"]) for r in rows} <= set(range(4))
    assert all(0 <= float(r["confidence"]) <= 1 for r in rows)
    assert not {r["path"] for r in rows} & set(DAMAGED)
    kmeans = read_csv(out / "clusters_kmeans.csv")
    assert [r["path"] for r in kmeans] == [r["path"] for r in rows]


def test_command_names_the_damaged_images(command_run):
    stdout, out = command_run
    for name in DAMAGED:
        assert f"skipped {name}: " in stdout
    assert sorted(r["path"] for r in read_csv(out / "skipped.csv")) == sorted(DAMAGED)
    assert f"{4 * PER_CLASS} of {4 * PER_CLASS + 3} images clustered" in stdout


def test_command_accuracy_is_that_of_its_csv_and_high_on_separable_colours(command_run):
    stdout, out = command_run
    summary = json.loads((out / "summary.json").read_text())
    for method, name in (("cce_plus", "clusters.csv"), ("kmeans", "clusters_kmeans.csv")):
        rows = read_csv(out / name)
        labels = np.array([list(COLOURS).index(r["label"]) for r in rows])
        acc = hungarian_accuracy(labels, np.array([int(r["cluster"]) for r in rows]))
        assert summary["methods"][method]["metrics"]["accuracy"] == pytest.approx(acc)
        assert f"{method}: accuracy {acc:.4f}" in stdout
        # four colours on dark noise: both measured at 0.92 to 0.94; a partition unrelated to colour scores ~0.3
        assert acc > 0.75, (method, acc)
    assert summary["n_images"] == 4 * PER_CLASS and len(summary["skipped"]) == 3


def test_command_report_shows_numbers_gallery_and_skipped_files(command_run):
    _, out = command_run
    html = (out / "report.html").read_text()
    assert "<b>3 skipped</b>" in html and all(name in html for name in DAMAGED)
    assert "cce_plus: the 8 most confident images of every cluster" in html
    assert "kmeans: the 8 most confident images of every cluster" in html
    assert html.count('<img src="data:image/png;base64,') == 2 * 4 * 8
    assert html.count("purity") >= 8 and "majority" in html
    assert 'href="clusters.csv"' in html


def test_command_reuses_its_features(command_run, shapes, capsys):
    _, out = command_run
    stamp = (out / "features/pixels.npz").stat().st_mtime_ns
    assert main(["cluster-images", str(shapes), "--out", str(out), "--options", '{"epochs": 1}', "--quiet",
                 "--compare"]) == 0
    assert "(reused)" in capsys.readouterr().out
    assert (out / "features/pixels.npz").stat().st_mtime_ns == stamp
    assert not (out / "features/.pixels.parts").exists()


@pytest.mark.parametrize("args,message", [
    (["--no-labels"], "give --clusters K"),
    (["--clusters", "1"], "--clusters must be between 2"),
    (["--method", "kmedoids"], "unknown method 'kmedoids'"),
    (["--options", '{"epochz": 3}'], "has option(s) ['epochz']"),
])
def test_command_refuses_bad_input_before_reading_images(shapes, tmp_path, capsys, args, message):
    assert main(["cluster-images", str(shapes), "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_image_features_command_requires_labels_for_the_workflow(tmp_path, capsys):
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    Image.new("L", (4, 4)).save(tmp_path / "b.png")
    assert main(["image-features", str(tmp_path), "pixels", "--out", str(tmp_path / "f.npz"),
                 "--require-labels"]) == 2
    assert "one sub-folder per class" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Galleries


def test_summarize_orders_by_size_with_the_most_confident_first():
    clusters = np.array([0, 0, 0, 1, 1, 2, 0])
    confidence = np.array([0.5, 0.9, 0.7, 0.6, 0.8, 0.3, 0.9])
    labels = np.array([3, 3, 1, 2, 2, 0, 3])
    views = gallery.summarize(clusters, confidence, labels, n_clusters=4, top=2)
    assert [(v.cluster, v.size) for v in views] == [(0, 4), (1, 2), (2, 1), (3, 0)]
    assert views[0].top == (1, 6) and views[1].top == (4, 3)  # ties keep the folder's order
    assert views[0].majority == 3 and views[0].purity == pytest.approx(0.75)
    assert views[3].top == () and views[3].majority is None


def test_gallery_figure_is_a_png(tmp_path):
    views = gallery.summarize(np.array([0, 1, 1]), np.array([0.9, 0.5, 0.8]), np.array([0, 1, 0]), 2)
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    gallery.figure(views, ArrayImages(images).load, tmp_path / "g.png", class_names=["a", "b"], title="t")
    assert (tmp_path / "g.png").read_bytes().startswith(b"\x89PNG")


def _dominant_colour(img) -> str:
    """The name of the COLOURS entry nearest to the brightest pixels of a shapes image."""
    a = np.asarray(img.convert("RGB"), dtype=float).reshape(-1, 3)
    bright = a[a.sum(1) >= np.quantile(a.sum(1), 0.9)].mean(0)
    return min(COLOURS, key=lambda name: np.sum((bright - COLOURS[name]) ** 2))


def test_gallery_of_an_image_folder_run_shows_each_row_its_own_image(shapes, tmp_path, monkeypatch, capsys):
    """image-features, cluster, gallery: the workflow's three commands for an image folder. Every image
    the gallery loads is the one its row's label was read from (its colour is its sub-folder's)."""
    feats_path, record = tmp_path / "f.npz", tmp_path / "runs/seed0.json"
    assert main(["image-features", str(shapes), "pixels", "--out", str(feats_path), "--require-labels",
                 "--options", '{"num_workers": 0}']) == 0
    assert main(["cluster", "--features", str(feats_path), "--method", "cce_plus", "--seed", "0",
                 "--options", '{"epochs": 5, "device": "cpu"}', "--out", str(record)]) == 0
    drawn = {}

    def figure(views, load, path, *, class_names=None, title=""):
        drawn.update(views=views, load=load, class_names=class_names, title=title)
        Image.new("RGB", (4, 4)).save(path, format="PNG")

    monkeypatch.setattr(gallery, "figure", figure)
    capsys.readouterr()
    assert main(["gallery", "--record", str(record), "--out", str(tmp_path / "g.png")]) == 0
    recorded = json.loads(record.read_text())["metrics"]["accuracy"]
    assert f"accuracy {recorded:.4f} (record {recorded:.4f})" in capsys.readouterr().out
    X, y, meta = features.load_features(feats_path)
    assert drawn["class_names"] == meta["classes"] == sorted(COLOURS)
    shown = [i for v in drawn["views"] for i in v.top]
    assert len(shown) >= 24
    for i in shown:
        assert _dominant_colour(drawn["load"](i)) == meta["classes"][y[i]], meta["paths"][i]
    # results moved elsewhere: the predictions beside the record are found, and checked against it
    moved = tmp_path / "moved"
    (tmp_path / "runs").rename(moved)
    assert main(["gallery", "--record", str(moved / "seed0.json"), "--out", str(tmp_path / "g2.png")]) == 0
    (moved / "seed0.predictions.npz").write_bytes((moved / "seed0.predictions.npz").read_bytes()[:-8])
    assert main(["gallery", "--record", str(moved / "seed0.json"), "--out", str(tmp_path / "g3.png")]) == 2
    assert "SHA-256 differs" in capsys.readouterr().err


def test_gallery_of_a_record_without_predictions_says_to_rerun_it(tmp_path, capsys):
    record = tmp_path / "seed0.json"
    record.write_text(json.dumps({"experiment": "clustering", "dataset": "digits", "method": "kmeans", "seed": 0,
                                  "n_clusters": 10, "metrics": {"accuracy": 0.5}}))
    assert main(["gallery", "--record", str(record), "--out", str(tmp_path / "g.png")]) == 2
    assert "names no predictions file" in capsys.readouterr().err and not (tmp_path / "g.png").exists()


# ---------------------------------------------------------------------------
# The workflow's datasets of kind image_folder


def base_config(**datasets):
    return {"datasets": datasets, "clustering": {"datasets": list(datasets), "extractor": "pixels",
                                                 "methods": ["kmeans", "cce_plus"], "seeds": 1}}


def test_config_accepts_an_image_folder_for_clustering(shapes):
    from cce.pipeline.config import validate_config

    config = validate_config(base_config(shapes={"kind": "image_folder", "path": str(shapes)}))
    assert config["datasets"]["shapes"]["path"] == str(shapes)


@pytest.mark.parametrize("entry,extra,message", [
    ({"kind": "image_folder"}, {}, "missing key 'datasets.shapes.path'"),
    ({"kind": "image_folder", "path": "/no/such/dir"}, {}, "'datasets.shapes.path': directory '/no/such/dir'"),
    ({"kind": "folder", "path": "."}, {}, "'datasets.shapes.kind'"),
    ({"kind": "image_folder", "path": "."}, {"deep": {"datasets": ["shapes"], "methods": ["cce_plus"], "seeds": 1}},
     "'deep.datasets[0]': 'shapes' is an image folder"),
])
def test_config_refuses_bad_image_folders(entry, extra, message):
    from cce.pipeline.config import ConfigError, validate_config

    with pytest.raises(ConfigError) as err:
        validate_config({**base_config(shapes=entry), **extra})
    assert message in str(err.value)


def test_config_refuses_an_image_folder_named_as_a_registry_dataset(shapes):
    from cce.pipeline.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="'mnist' is a registry dataset"):
        validate_config(base_config(mnist={"kind": "image_folder", "path": str(shapes)}))


def test_gallery_targets_are_one_per_dataset_and_method_of_tables_2_and_3():
    config = {"clustering": {"datasets": ["digits", "shapes"], "methods": ["kmeans", "cce_plus"]},
              "deep": {"datasets": ["fashion_mnist"], "methods": ["iic", "cce_plus"]},
              "weak": {"datasets": ["fashion_mnist"], "methods": ["cce_plus"]}}
    assert gallery.gallery_targets(config) == (
        [f"results/figures/gallery/clustering/{d}/{m}.png" for d in ("digits", "shapes")
         for m in ("kmeans", "cce_plus")]
        + [f"results/figures/gallery/deep/fashion_mnist/{m}.png" for m in ("iic", "cce_plus")])
    assert gallery.gallery_targets({}) == []
