"""Which runs an experiment consists of, their options and where their records go.

An experiment section of the config expands to runs, one per (dataset, variant, seed):
``clustering`` (Tables 2 and 5, fixed features), ``lam_study`` (accuracy against lam),
``deep`` (Tables 3 and 6, networks trained from scratch), ``weak`` (Table 4, a fraction of the
labels) and ``noisy`` (Figure 2, corrupted labels). A variant is a method name, or the method
with what the experiment varies: ``cce_plus-lam100-mean`` (lam and lam scale),
``cce_plus-frac0.1`` (labelled fraction), ``collision-eta0.3`` (for ``noisy`` the "method" is
the loss, H2 here, and eta the corrupted fraction). Every run's record lives at
``results/runs/{experiment}/{dataset}/{variant}/seed{seed}.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..methods import get_method
from ..predictions import SUFFIX as PREDICTIONS_SUFFIX

# Experiments of a linear head on fixed features; of a network trained from scratch without
# labels; and with labels (a fraction of them, or corrupted ones).
HEAD_EXPERIMENTS = ("clustering", "lam_study")
DEEP_EXPERIMENTS = ("deep",)
TARGET_EXPERIMENTS = ("weak", "noisy")
EXPERIMENTS = HEAD_EXPERIMENTS + DEEP_EXPERIMENTS + TARGET_EXPERIMENTS
RECORD_PATTERN = "results/runs/{experiment}/{dataset}/{variant}/seed{seed}.json"
# Beside every record, the cluster and confidence of every image the run scored (cce.predictions).
PREDICTIONS_PATTERN = RECORD_PATTERN.removesuffix(".json") + PREDICTIONS_SUFFIX
# A run's variant: the method, alone or with its lam and lam_scale, labelled fraction or eta. Also
# the workflow's wildcard constraint, so it has plain groups only (Snakemake names its own).
VARIANT_PATTERN = r"([a-z0-9_]+)(?:-lam([0-9.e+-]+?)-(mean|batch)|-frac([0-9.e-]+)|-eta([0-9.e-]+))?"


def variant_name(method: str, lam: float, lam_scale: str) -> str:
    """The lam study's variant of ``method`` at ``lam`` and ``lam_scale``, e.g. ``cce_plus-lam100-mean``."""
    return f"{method}-lam{lam:g}-{lam_scale}"


def fraction_variant(method: str, fraction: float) -> str:
    """Table 4's variant of ``method`` with ``fraction`` of the labels, e.g. ``cce_plus-frac0.1``."""
    return f"{method}-frac{fraction:g}"


def eta_variant(loss: str, eta: float) -> str:
    """Figure 2's variant of ``loss`` with ``eta`` of the labels corrupted, e.g. ``collision-eta0.3``."""
    return f"{loss}-eta{eta:g}"


def parse_variant(variant: str) -> tuple[str, dict[str, Any]]:
    """``cce_plus-lam0.1-batch`` -> ("cce_plus", {"lam": 0.1, "lam_scale": "batch"});
    ``mi_d-frac0.05`` -> ("mi_d", {"fraction": 0.05}); ``shannon-eta0.9`` -> ("shannon", {"eta": 0.9})."""
    match = re.fullmatch(VARIANT_PATTERN, variant)
    if not match:
        raise ValueError(f"not a run variant: {variant!r}")
    method, lam, scale, fraction, eta = match.groups()
    if lam is not None:
        return method, {"lam": float(lam), "lam_scale": scale}
    if fraction is not None:
        return method, {"fraction": float(fraction)}
    if eta is not None:
        return method, {"eta": float(eta)}
    return method, {}


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
    if experiment == "weak":
        return [fraction_variant(m, f) for f in section["fractions"] for m in section["methods"]]
    if experiment == "noisy":
        return [eta_variant(loss, eta) for loss in section["losses"] for eta in section["etas"]]
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
    if experiment in TARGET_EXPERIMENTS:
        # the fraction or eta is the run's argument, not an option: it stays in the variant
        from ..training.weak import noisy_options, weak_options

        options = _training_options(section, experiment, dataset)
        if experiment == "weak":
            options.update(section.get("method_options", {}).get(method, {}))
            return weak_options(method, options)
        return noisy_options(options)
    if experiment in DEEP_EXPERIMENTS:
        from ..training.deep import get_deep_method

        spec = get_deep_method(method)
        trains = True  # every deep method trains the network
    else:
        spec = get_method(method)
        trains = spec.trains_head
    options = _training_options(section, experiment, dataset) if trains else {}
    options.update(section.get("method_options", {}).get(method, {}))
    options.update(overrides)
    return spec.options(options)


def _training_options(section: dict, experiment: str, dataset: str) -> dict[str, Any]:
    """The section's ``training`` options with per-dataset values resolved for ``dataset``."""
    options: dict[str, Any] = {}
    for key, value in section.get("training", {}).items():
        if isinstance(value, dict):  # per-dataset values, e.g. Appendix F's weight decays
            if dataset not in value and "default" not in value:
                raise ValueError(f"'{experiment}.training.{key}': no value for dataset {dataset!r} "
                                 "and no 'default'")
            value = value.get(dataset, value.get("default"))
        options[key] = value
    return options
