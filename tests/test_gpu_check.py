"""make gpu-check's script (benchmarks/gpu_check.py) end to end at its quick size on the CPU, so that it cannot
rot between GPU leases; the tests marked cuda are the ones it runs."""

import importlib.util
import json
import math
import re

import pytest

from conftest import REPO
from data_fixtures import fake_mnist


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_check():
    return _load_script()


@pytest.fixture(scope="module")
def fmnist_dir(tmp_path_factory):
    """A Fashion-MNIST directory in Debian's layout (the four IDX .gz files) of 40 random images."""
    d = tmp_path_factory.mktemp("fashion-mnist")
    files, _, _, _ = fake_mnist(n_train=30, n_test=10, seed=4)
    for name, content in files.items():
        (d / name).write_bytes(content)
    return d


def _numbers(obj):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)


def test_quick_check_runs_and_every_part_reports(gpu_check, fmnist_dir, tmp_path, monkeypatch, capsys):
    """Every part reports numbers or an explicit reason; both files are written; the markdown is printed.
    The remedy part runs the configured remedy (EMPTY_CLASS_REMEDY), and its options reach the "with" runs only."""
    from cce.training import deep

    seen = []
    original = deep.train_deep

    def spy(images, n_clusters, method, seed, options=None, *args, **kwargs):
        seen.append(dict(options or {}))
        return original(images, n_clusters, method, seed, options, *args, **kwargs)

    monkeypatch.setattr(deep, "train_deep", spy)
    out = tmp_path / "out"
    code = gpu_check.main(["--size", "quick", "--fmnist-dir", str(fmnist_dir), "--out", str(out),
                           "--budget-s", "3000", "--device", "cpu"])
    printed = capsys.readouterr().out
    report = json.loads((out / "gpu_check.json").read_text())
    md = (out / "gpu_check.md").read_text()
    assert code == 0, {k: p.get("reason") for k, p in report["parts"].items()}
    assert md in printed and list(report["parts"]) == list(gpu_check.PARTS)
    for name, part in report["parts"].items():
        assert part["status"] in ("ok", "skipped"), (name, part)
        assert math.isfinite(part["seconds"]) and part["seconds"] >= 0
        if part["status"] == "skipped":
            assert part["reason"], name
        else:
            assert any(math.isfinite(x) for x in _numbers(part["result"])), name
        assert f"## {gpu_check.PARTS[name][0]}" in md
    p = report["parts"]
    # the CUDA tests are collected; they pass on a CUDA machine and are skipped with their reason elsewhere
    import torch

    assert p["cuda_tests"]["status"] == "ok"
    tests = p["cuda_tests"]["result"]["tests"]
    if torch.cuda.is_available():
        assert tests and all(t["outcome"] == "passed" for t in tests), tests
    else:
        assert tests and all(t["outcome"] == "skipped" and "CUDA" in t["message"] for t in tests)
    assert {t["test"].split("::")[0] for t in tests} >= {"tests.test_cuda", "tests.test_interior_point"}
    # the y-step: every shape and dtype, the torch path against the compiled one, same optimum
    rows = p["ystep"]["result"]["rows"]
    assert [tuple(r["shape"]) for r in rows[::2]] == list(gpu_check.YSTEP_SHAPES)
    assert all(r["max_rel_objective_diff"] < 1e-8 and r["device_iterations"] > 0 for r in rows)
    # every deep method in both precisions, every network, the three estimates, the four remedy runs
    from cce.training.deep_methods import DEEP_METHODS

    runs = p["deep_epochs"]["result"]["runs"]
    assert {(r["method"], r["precision"]) for r in runs} == {(m, q) for m in DEEP_METHODS for q in ("float32", "bf16")}
    assert all(r["epoch_s"] > 0 and r["images_per_s"] > 0 and abs(sum(r["shares"].values()) - 1) < 1e-6
               for r in runs)
    assert len(p["networks"]["result"]["runs"]) == 3 * len(gpu_check.SIZES["quick"]["network_precisions"])
    est = p["estimates"]["result"]["experiments"]["float32"]
    assert all(est[k]["hours"] > 0 for k in ("tables_3_6", "table_4", "figure_2"))
    remedy = p["empty_class_remedy"]["result"]
    assert remedy["remedy"] == gpu_check.EMPTY_CLASS_REMEDY and remedy["remedy"]
    assert sorted((r["arm"], r["seed"], r["epochs"]) for r in remedy["rows"]) == [
        ("with", 0, 2), ("with", 1, 2), ("without", 0, 2), ("without", 1, 2)]
    with_remedy = [o for o in seen if o.items() >= gpu_check.EMPTY_CLASS_REMEDY.items()]
    assert len(with_remedy) >= 2 and len(seen) > len(with_remedy)  # both arms ran; the remedy in one only


def test_remedy_part_skips_while_undefined(gpu_check, monkeypatch):
    monkeypatch.setattr(gpu_check, "EMPTY_CLASS_REMEDY", None)
    with pytest.raises(gpu_check.PartSkipped, match="remedy not defined"):
        gpu_check.part_empty_class_remedy({})


def test_spent_budget_skips_parts_with_the_reason(gpu_check, tmp_path):
    report = gpu_check.run_check("quick", tmp_path / "none", tmp_path / "out", budget_s=0.0,
                                 parts=["environment", "ystep"], device="cpu")
    p = report["parts"]
    assert p["environment"]["status"] == "ok" and p["environment"]["result"]["torch"]
    assert p["ystep"]["status"] == "skipped" and "time budget spent" in p["ystep"]["reason"]
    assert p["deep_epochs"]["reason"] == "not asked for (--parts)"
    assert "time budget spent" in (tmp_path / "out" / "gpu_check.md").read_text()


def test_every_cuda_test_file_is_run_by_the_check(gpu_check):
    marked = {f"tests/{path.name}" for path in (REPO / "tests").glob("test_*.py")
              if re.search(r"pytest\.mark\.cuda\b", path.read_text())}
    assert marked == set(gpu_check.CUDA_TEST_FILES)
