"""The report's landing page (src/cce/pipeline/report.py): what a config ran, on which data, at which size,
and which experiments are reduced pipeline checks rather than the paper's setting."""

from __future__ import annotations

import copy

import docutils.core
import pytest

from cce.pipeline.config import load_config
from cce.pipeline.report import experiments_overview, experiments_summary, write_landing_page

from conftest import REPO


@pytest.fixture(scope="module")
def paper():
    return load_config(REPO / "config/config.yaml")


@pytest.fixture(scope="module")
def tiny():
    return load_config(REPO / "tests/configs/tiny.yaml")


def by_name(config, paper):
    return {e["experiment"]: e for e in experiments_overview(config, paper)}


def test_tiny_config_names_every_experiment_its_data_size_and_why_it_is_reduced(tiny, paper):
    overview = by_name(tiny, paper)
    assert list(overview) == ["clustering", "deep", "weak", "noisy", "table1", "lam_study"]
    assert {e["setting"] for e in overview.values()} == {"reduced"}
    deep = overview["deep"]
    assert deep["results"] == "Tables 3 and 6"
    assert deep["data"] == "fashion_mnist; methods mi_d, iic, sela, mi_adm, cce, cce_plus"
    assert deep["size"] == ["the first 64 images", "2 epoch(s)", "1 seed(s)"]
    assert deep["reductions"] == ["fashion_mnist instead of stl10, cifar10, cifar100_20, mnist",
                                  "1 seed(s) instead of 6", "2 epoch(s) instead of 50",
                                  "64 training images instead of all"]
    clustering = overview["clustering"]
    assert clustering["size"] == ["pixels features of all images", "3 epoch(s)", "2 seed(s)"]
    assert "pixels features instead of resnet50" in clustering["reductions"]
    assert "eta = 0, 0.8 instead of 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9" in overview["noisy"]["reductions"]
    assert "labelled fractions 0.2, 0.1" in overview["weak"]["size"]
    assert "K = 2, 20 instead of 2, 20, 200" in overview["table1"]["reductions"]


def test_per_dataset_epochs_are_shown_per_dataset(paper):
    demo = load_config(REPO / "config/demo.yaml")
    clustering = by_name(demo, paper)["clustering"]
    assert "digits 30, fashion_mnist 2 epoch(s)" in clustering["size"]
    assert "digits 30, fashion_mnist 2 epoch(s) instead of 50" in clustering["reductions"]


def test_the_papers_config_is_the_papers_setting(paper):
    overview = by_name(paper, paper)
    assert [e["setting"] for e in overview.values()] == ["paper"] * 5 + ["full study"]
    assert all(e["reductions"] == [] for e in overview.values())
    assert overview["deep"]["size"] == ["all images", "50 epoch(s)", "6 seed(s)"]
    text = experiments_summary(paper, paper)
    assert "Every experiment this config ran is at the paper's setting" in text
    assert "reduced pipeline check" not in text


def test_one_reduction_is_named_and_an_absent_section_says_so(paper):
    config = copy.deepcopy(paper)
    config["deep"]["training"]["max_images"] = 500
    del config["weak"]
    overview = by_name(config, paper)
    assert overview["deep"]["setting"] == "reduced"
    assert overview["deep"]["reductions"] == ["500 training images instead of all"]
    assert overview["clustering"]["setting"] == "paper"
    assert overview["weak"]["setting"] == "not run"
    text = experiments_summary(config, paper)
    assert "* **Weak supervision** (Table 4): not run by this config." in text
    assert "Reduced pipeline checks, not the paper's setting: Networks trained from scratch." in text


def test_landing_page_is_valid_rst_after_the_introduction(tmp_path, tiny, paper):
    template = tmp_path / "workflow.rst"
    template.write_text("Introduction {{ snakemake.config['data_root'] }}.\n")
    out = write_landing_page(template, tiny, paper, tmp_path / ".snakemake/cce/workflow.rst",
                             ["/some/where/tests/configs/tiny.yaml"])
    text = open(out).read()
    assert text.startswith("Introduction {{ snakemake.config['data_root'] }}.\n\nWhat this configuration ran")
    assert "Config: ``tiny.yaml``." in text  # the file's name, not where the clone lies
    # docutils stops at a warning (report_level 2): an underscore read as a reference, a broken list
    html = docutils.core.publish_parts(text.replace("{{ snakemake.config['data_root'] }}", "x"), writer="html",
                                       settings_overrides={"report_level": 2, "halt_level": 2})["html_body"]
    assert "<strong>reduced pipeline check</strong>" in html and "cifar100_20" in html
    assert html.count("<strong>reduced pipeline check</strong>") == 6
    mtime = (tmp_path / ".snakemake/cce/workflow.rst").stat().st_mtime_ns
    write_landing_page(template, tiny, paper, out, ["tiny.yaml"])  # unchanged: not rewritten
    assert (tmp_path / ".snakemake/cce/workflow.rst").stat().st_mtime_ns == mtime
