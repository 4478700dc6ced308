"""Feature files verified on load: a missing, damaged or stale file names itself and its rebuild command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cce.data.features import FeatureFileError, array_checksum, load_features, save_features


def features_file(tmp_path, n=60, d=5, seed=0):
    """A valid feature file at the workflow's path layout .../{dataset}/{extractor}.npz."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = np.arange(n) % 3
    path = tmp_path / "results/features/blobs/pixels.npz"
    save_features(path, X, y, {"dataset": "blobs", "extractor": "pixels", "n_classes": 3})
    return path, X, y


def stale(path):
    """Rewrite X in place, keeping the metadata (and its X_sha256) of the old X."""
    with np.load(path) as f:
        X, y, meta = f["X"].copy(), f["y"], f["meta"]
    X[0, 0] += 1.0
    np.savez(path, X=X, y=y, meta=meta)


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ----------------------------------------------------------------------------
# load_features / save_features
# ----------------------------------------------------------------------------
def test_round_trip_records_the_checksum(tmp_path):
    path, X, y = features_file(tmp_path)
    X2, y2, meta = load_features(path)
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    assert X2.dtype == np.float32 and y2.dtype == np.int64
    assert meta["X_sha256"] == array_checksum(X) and meta["dataset"] == "blobs"
    # float64 input is stored as float32 and the checksum is that of what is stored
    save_features(tmp_path / "f64.npz", X.astype(np.float64), y, {})
    assert load_features(tmp_path / "f64.npz")[2]["X_sha256"] == array_checksum(X)


def test_save_refuses_a_checksum_of_another_array(tmp_path):
    X = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="is not the SHA-256 of X"):
        save_features(tmp_path / "f.npz", X, np.zeros(3), {"X_sha256": array_checksum(X + 1)})
    assert not (tmp_path / "f.npz").exists()


REBUILD = r"rebuild it with `snakemake --cores all --force .*results/features/blobs/pixels\.npz` or " \
          r"`python -m cce features blobs pixels --out .*results/features/blobs/pixels\.npz`"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.unlink(), "no such feature file"),
        (truncate, r"damaged feature file \(BadZipFile"),
        (stale, "X does not match the X_sha256 in its metadata"),
    ],
    ids=["missing", "truncated", "stale"],
)
def test_bad_feature_files_are_refused_with_the_rebuild_command(tmp_path, damage, message):
    path, _, _ = features_file(tmp_path)
    damage(path)
    with pytest.raises(FeatureFileError, match=f"pixels\\.npz: {message}.*; {REBUILD}$"):
        load_features(path)


def test_a_flipped_byte_in_X_is_refused(tmp_path):
    path, X, _ = features_file(tmp_path)
    raw = bytearray(path.read_bytes())
    at = bytes(raw).index(X.tobytes()[:16]) + 20  # inside X's data, not a zip header
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(FeatureFileError, match="pixels.npz: damaged feature file"):
        load_features(path)


def test_a_file_without_checksum_is_refused(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, X=np.ones((2, 2), np.float32), y=np.zeros(2, np.int64), meta=np.array(json.dumps({})))
    with pytest.raises(FeatureFileError, match="no X_sha256 in its metadata"):
        load_features(path)


# ----------------------------------------------------------------------------
# `python -m cce cluster`: every user error is one line on stderr and exit 2
# ----------------------------------------------------------------------------
def run_cli(argv, capsys):
    """(exit code, stderr, stdout) of the command line, as the shell sees them."""
    from cce.pipeline.cli import main

    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's errors leave through SystemExit
        code = exit_.code
    out, err = capsys.readouterr()
    return code, err, out


def cluster_argv(features, out, method="kmeans", options="{}"):
    return ["cluster", "--features", str(features), "--method", method, "--seed", "0",
            "--options", options, "--out", str(out)]


BAD_INPUTS = {
    "missing file": (lambda p: p.unlink(), {}, "no such feature file"),
    "damaged file": (truncate, {}, "damaged feature file"),
    "checksum mismatch": (stale, {}, "X does not match the X_sha256 in its metadata"),
    "unknown method": (None, {"method": "kmedoids"}, "unknown method 'kmedoids'; known methods: kmeans"),
    "unknown option": (None, {"method": "cce_plus", "options": '{"lamda": 1}'},
                       "method 'cce_plus' has no option(s) ['lamda']"),
    "bad JSON in --options": (None, {"options": "{lam: 1}"}, "argument --options: not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_cluster_user_errors_are_one_line_and_exit_2(tmp_path, capsys, case):
    damage, argv_changes, message = BAD_INPUTS[case]
    path, _, _ = features_file(tmp_path)
    if damage is not None:
        damage(path)
    out = tmp_path / "record.json"
    code, err, _ = run_cli(cluster_argv(path, out, **argv_changes), capsys)
    assert code == 2, (case, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert not out.exists()



@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_every_command_refuses_an_absent_device_with_one_message(tmp_path, capsys):
    # one device check (cce.device.resolve_device) for training, Table 1 and features alike
    path, _, _ = features_file(tmp_path)
    commands = [cluster_argv(path, tmp_path / "r.json", "mi_gd", '{"device": "cuda", "epochs": 1}'),
                ["table1", "--options", '{"device": "cuda"}', "--out", str(tmp_path / "t.csv"),
                 "--summary-out", str(tmp_path / "s.csv")]]
    for argv in commands:
        code, err, _ = run_cli(argv, capsys)
        assert code == 2 and "device 'cuda' requested but CUDA is not available" in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    code, err, _ = run_cli(cluster_argv(path, tmp_path / "r.json", "mi_gd", '{"device": "tpu"}'), capsys)
    assert code == 2 and "device 'tpu'" in err, err


def test_the_installed_command_exits_2_with_the_message(tmp_path):
    """The same through the interpreter's entry point (python -m cce), as the workflow's rules call it."""
    import subprocess
    import sys

    path, _, _ = features_file(tmp_path)
    stale(path)
    proc = subprocess.run([sys.executable, "-m", "cce", *cluster_argv(path, tmp_path / "r.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "X does not match the X_sha256" in proc.stderr, proc.stderr


def test_a_good_run_writes_its_record(tmp_path, capsys):
    path, _, y = features_file(tmp_path)
    out = tmp_path / "record.json"
    code, err, stdout = run_cli(cluster_argv(path, out), capsys)
    assert code == 0, err
    record = json.loads(out.read_text())
    assert record["method"] == "kmeans" and record["dataset"] == "blobs"
    assert record["features"]["X_sha256"] == load_features(path)[2]["X_sha256"]
    assert stdout.startswith("blobs kmeans seed 0: accuracy ")
