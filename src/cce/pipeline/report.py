"""The report's landing page: which experiments a config ran, on which data, at which size, and
which of them are reduced pipeline checks rather than the paper's setting.

Generated from the config that ran, set against the paper's config (``config/config.yaml``), so
that a demo, a test config and the paper's run each describe themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import atomic_path
from .experiments import run_options, variants

# (config section, what it is, the paper's results it makes)
EXPERIMENTS = (
    ("clustering", "Fixed features", "Tables 2 and 5"),
    ("deep", "Networks trained from scratch", "Tables 3 and 6"),
    ("weak", "Weak supervision", "Table 4"),
    ("noisy", "Label noise", "Figure 2"),
    ("table1", "EM against PGD for the pseudo-labels", "Table 1"),
    ("lam_study", "lam study", "beyond the paper"),
)


def _join(values) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _per_dataset(config: dict, experiment: str, key: str) -> dict[str, Any]:
    """``key`` of the run options of the experiment's last variant, per dataset (e.g. epochs)."""
    section = config[experiment]
    variant = variants(config, experiment)[-1]  # the trained variant (baselines such as K-means come first)
    return {d: run_options(config, experiment, d, variant).get(key) for d in section["datasets"]}


def _values(per_dataset: dict[str, Any]) -> str:
    """'50' when every dataset has the same value, else 'digits 30, fashion_mnist 2'."""
    values = list(per_dataset.values())
    if all(v == values[0] for v in values):
        return str(values[0])
    return ", ".join(f"{d} {v}" for d, v in per_dataset.items())


def _images(per_dataset: dict[str, Any]) -> str:
    values = set(per_dataset.values())
    if values == {None}:
        return "all images"
    return "the first " + _values({d: v if v is not None else "all" for d, v in per_dataset.items()}) + " images"


def _size(config: dict, experiment: str) -> list[str]:
    """What a reader needs to judge a number: images, epochs, seeds, and what the experiment sweeps."""
    section = config[experiment]
    if experiment == "table1":
        return [f"K = {_join(section['Ks'])}", f"M = {section['M']} predictions per batch",
                f"lam = {section['lam']:g} read as {_join(section['lam_scales'])}", f"{section['repeats']} repeat(s)",
                f"at most {section['max_iter']} iterations or {section['max_time']:g} s per solver"]
    size = [f"{section['seeds']} seed(s)"]
    if experiment in ("clustering", "lam_study"):
        size.insert(0, f"{section['extractor']} features of all images")
    else:
        size.insert(0, _images(_per_dataset(config, experiment, "max_images")))
        if experiment != "deep":
            size.insert(1, "tested on " + _images(_per_dataset(config, experiment, "max_eval_images")))
    epochs = _per_dataset(config, experiment, "epochs")
    if any(v is not None for v in epochs.values()):
        size.insert(-1, f"{_values(epochs)} epoch(s)")
    if experiment == "weak":
        size.append(f"labelled fractions {_join(section['fractions'])}")
    if experiment == "noisy":
        size += [f"{_values(_per_dataset(config, experiment, 'network'))} network",
                 f"eta = {_join(section['etas'])}"]
    if experiment == "lam_study":
        size.append(f"lam = {_join(section['lams'])} read as {_join(section['lam_scales'])}")
    return size


def _reductions(config: dict, paper: dict, experiment: str) -> list[str]:
    """How this config's section is smaller than (or differs from) the paper config's; [] for none."""
    ours, theirs = config[experiment], paper[experiment]
    out = []
    if "datasets" in ours and not set(theirs["datasets"]) <= set(ours["datasets"]):
        out.append(f"{_join(ours['datasets'])} instead of {_join(theirs['datasets'])}")
    if "extractor" in ours and ours["extractor"] != theirs["extractor"]:
        out.append(f"{ours['extractor']} features instead of {theirs['extractor']}")
    for key, what in (("seeds", "seed(s)"), ("repeats", "repeat(s)"), ("max_iter", "iterations"),
                      ("max_time", "s per solver")):
        if key in ours and ours[key] < theirs[key]:
            out.append(f"{ours[key]:g} {what} instead of {theirs[key]:g}")
    for key, what in (("Ks", "K"), ("fractions", "fractions"), ("etas", "eta"), ("lams", "lam")):
        if key in ours and not set(theirs[key]) <= set(ours[key]):
            out.append(f"{what} = {_join(ours[key])} instead of {_join(theirs[key])}")
    if experiment == "table1":
        return out
    # per-run options: ours on each dataset, the paper's on its first (its epochs are the same on each)
    paper_options = _options(paper, experiment, theirs["datasets"][0])
    epochs = _per_dataset(config, experiment, "epochs")
    if paper_options.get("epochs") and any(e is not None and e < paper_options["epochs"] for e in epochs.values()):
        out.append(f"{_values(epochs)} epoch(s) instead of {paper_options['epochs']}")
    mine = _options(config, experiment, ours["datasets"][0])
    for key, what in (("max_images", "training images"), ("max_eval_images", "test images")):
        if mine.get(key) is not None and paper_options.get(key) is None:
            out.append(f"{mine[key]} {what} instead of all")
    if mine.get("network") not in (None, "auto") and mine.get("network") != paper_options.get("network"):
        out.append(f"{mine['network']} network instead of {paper_options.get('network')}")
    return out


def _options(config: dict, experiment: str, dataset: str) -> dict[str, Any]:
    return run_options(config, experiment, dataset, variants(config, experiment)[-1])


def experiments_overview(config: dict, paper: dict) -> list[dict[str, Any]]:
    """One entry per experiment of the paper: ``what``, ``results`` (the paper's tables or figure it makes),
    ``data`` and ``size`` as ``config`` runs it, ``setting`` (``paper``, ``reduced``, ``full study`` for the
    lam study at the paper config's size, or ``not run``) and ``reductions`` (how it is smaller than in
    ``paper``, the paper's config: ["2 seed(s) instead of 6", ...]).

    Both configs validated (defaults filled, :func:`cce.pipeline.config.validate_config`).
    """
    out = []
    for experiment, what, results in EXPERIMENTS:
        entry = {"experiment": experiment, "what": what, "results": results, "data": "", "size": [],
                 "setting": "not run", "reductions": []}
        out.append(entry)
        section = config.get(experiment)
        if not section:
            continue
        if experiment == "table1":
            data = "random predictions (softmax of standard normal logits)"
        else:
            data = _join(section["datasets"])
        if experiment in ("clustering", "deep", "weak"):
            data += "; methods " + _join(section["methods"])
        if experiment == "noisy":
            data += "; losses " + _join(section["losses"])
        if experiment == "lam_study":
            data += f"; {section['method']} against " + (_join(section.get("baselines", [])) or "no baseline")
        entry.update(data=data, size=_size(config, experiment))
        entry["reductions"] = _reductions(config, paper, experiment) if paper.get(experiment) else []
        if entry["reductions"]:
            entry["setting"] = "reduced"
        else:
            entry["setting"] = "full study" if experiment == "lam_study" else "paper"
    return out


SETTING_TEXT = {"paper": "the paper's setting", "full study": "the full study",
                "reduced": "**reduced pipeline check**", "not run": "not run by this config"}


def experiments_summary(config: dict, paper: dict, config_files: list[str] = ()) -> str:
    """An rst section of :func:`experiments_overview`: per experiment what ``config`` ran of it (data, size)
    and whether that is the paper's setting or a reduced pipeline check, and why. ``config_files`` are named
    (file names only: a clone's location says nothing about its results)."""
    overview = experiments_overview(config, paper)
    reduced = [e["what"] for e in overview if e["setting"] == "reduced"]
    lines = ["What this configuration ran", "---------------------------", ""]
    if config_files:
        lines += ["Config: " + ", ".join(f"``{Path(f).name}``" for f in config_files) + ".", ""]
    if reduced:
        lines += [f"Reduced pipeline checks, not the paper's setting: {', '.join(reduced)}. Their numbers show "
                  "that each step runs and how the methods compare at this size; they are not expected to reach "
                  "the paper's.", ""]
    else:
        lines += ["Every experiment this config ran is at the paper's setting (``config/config.yaml``).", ""]
    for e in overview:
        lines.append(f"* **{e['what']}** ({e['results']}): {SETTING_TEXT[e['setting']]}.")
        if e["setting"] != "not run":
            lines += ["", f"  - Data: {_rst(e['data'])}.", f"  - Size: {_rst('; '.join(e['size']))}."]
            if e["reductions"]:
                against = "the full study" if e["experiment"] == "lam_study" else "the paper's setting"
                lines.append(f"  - Differs from {against}: {_rst('; '.join(e['reductions']))}.")
        lines.append("")
    lines += ["Figures 1 and 3 are drawn from the paper's formulas, whatever the config."]
    return "\n".join(lines) + "\n"


def _rst(text: str) -> str:
    # config values such as cifar100_20 or mi_adm end words in "_", an rst reference otherwise
    return text.replace("_", r"\_")


def write_landing_page(template: Path | str, config: dict, paper: dict, out: Path | str,
                       config_files: list[str] = ()) -> str:
    """``template`` (the report's introduction, Snakemake's Jinja included) followed by
    :func:`experiments_summary`, written to ``out`` when it changed; returns ``out``'s absolute path."""
    text = Path(template).read_text().rstrip("\n") + "\n\n" + experiments_summary(config, paper, config_files)
    out = Path(out).absolute()
    if not out.is_file() or out.read_text() != text:
        with atomic_path(out) as tmp:
            Path(tmp).write_text(text)
    return str(out)
