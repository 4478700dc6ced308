"""Which runs an experiment consists of, their options and where their records go.

An experiment section of the config (``clustering``: Tables 2 and 5 on fixed
features; ``lam_study``: accuracy against lam; ``deep``: Tables 3 and 6, networks
trained from scratch) expands to runs, one per (dataset, variant, seed). A variant is a method name, or for the lam study the method
with its lam and lam scale, e.g. ``cce_plus-lam100-mean``. Every run's record
lives at ``results/runs/{experiment}/{dataset}/{variant}/seed{seed}.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..methods import get_method

# Experiments of a linear head on fixed features, and of a network trained from scratch.
HEAD_EXPERIMENTS = ("clustering", "lam_study")
DEEP_EXPERIMENTS = ("deep",)
EXPERIMENTS = HEAD_EXPERIMENTS + DEEP_EXPERIMENTS
RECORD_PATTERN = "results/runs/{experiment}/{dataset}/{variant}/seed{seed}.json"
# A run's variant: the method, or the method at a lam and lam_scale. Also the workflow's wildcard
# constraint, so it has plain groups only (Snakemake names its own).
VARIANT_PATTERN = r"([a-z0-9_]+)(?:-lam([0-9.e+-]+?)-(mean|batch))?"


def variant_name(method: str, lam: float, lam_scale: str) -> str:
    """The lam study's variant of ``method`` at ``lam`` and ``lam_scale``, e.g. ``cce_plus-lam100-mean``."""
    return f"{method}-lam{lam:g}-{lam_scale}"


def parse_variant(variant: str) -> tuple[str, dict[str, Any]]:
    """``cce_plus-lam0.1-batch`` -> ("cce_plus", {"lam": 0.1, "lam_scale": "batch"})."""
    match = re.fullmatch(VARIANT_PATTERN, variant)
    if not match:
        raise ValueError(f"not a run variant: {variant!r}")
    method, lam, scale = match.groups()
    if lam is None:
        return method, {}
    return method, {"lam": float(lam), "lam_scale": scale}


@dataclass(frozen=True)
class Run:
    experiment: str
    dataset: str
    variant: str
    seed: int

    def __post_init__(self):
        parse_variant(self.variant)  # a malformed variant fails here, not at first use

    @property
    def method(self) -> str:
        return parse_variant(self.variant)[0]

    @property
    def record(self) -> str:
        return RECORD_PATTERN.format(experiment=self.experiment, dataset=self.dataset, variant=self.variant,
                                     seed=self.seed)


def variants(config: dict, experiment: str) -> list[str]:
    section = config[experiment]
    if experiment in ("clustering", "deep"):
        return list(section["methods"])
    if experiment == "lam_study":
        swept = [variant_name(section["method"], lam, scale)
                 for scale in section["lam_scales"] for lam in section["lams"]]
        return list(section.get("baselines", [])) + swept
    raise KeyError(f"unknown experiment {experiment!r}; known: {', '.join(EXPERIMENTS)}")


def planned_runs(config: dict, experiment: str) -> list[Run]:
    """Every run of an experiment, in (dataset, variant, seed) order."""
    section = config[experiment]
    return [Run(experiment, dataset, variant, seed)
            for dataset in section["datasets"]
            for variant in variants(config, experiment)
            for seed in range(section["seeds"])]


def run_options(config: dict, experiment: str, dataset: str, variant: str) -> dict[str, Any]:
    """The complete options of one run: the method's defaults, then the experiment's
    shared ``training`` options (per-dataset values resolved for ``dataset``), then its
    ``method_options``, then the variant's lam and lam scale."""
    method, overrides = parse_variant(variant)
    section = config[experiment]
    if experiment in DEEP_EXPERIMENTS:
        from ..training.deep import get_deep_method

        spec = get_deep_method(method)
        trains = True  # every deep method trains the network
    else:
        spec = get_method(method)
        trains = spec.trains_head
    options: dict[str, Any] = {}
    if trains:
        for key, value in section.get("training", {}).items():
            if isinstance(value, dict):  # per-dataset values, e.g. Appendix F's weight decays
                if dataset not in value and "default" not in value:
                    raise ValueError(f"'{experiment}.training.{key}': no value for dataset {dataset!r} "
                                     "and no 'default'")
                value = value.get(dataset, value.get("default"))
            options[key] = value
    options.update(section.get("method_options", {}).get(method, {}))
    options.update(overrides)
    return spec.options(options)
