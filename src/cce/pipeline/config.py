"""Validation of the workflow configuration, before any job runs.

Two layers: the JSON schema in ``src/cce/pipeline/schemas/config.schema.yaml`` (keys,
types, ranges; fills defaults) and checks against the library's registries
(dataset, extractor and method names, option names, directories that must
exist). Every problem is reported with the dotted path of the key, e.g.
``clustering.seeds: -1 is less than the minimum of 1``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# Package data: the installed library validates configs without the repository around it.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names every offending key."""


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _key(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        prefix = "" if where == "<top level>" else where + "."
        keys = ", ".join(f"'{prefix}{k}'" for k in extra)
        hint = f" (allowed here: {', '.join(allowed)})" if allowed else ""
        return f"unknown key {keys}{hint}"
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        prefix = "" if where == "<top level>" else where + "."
        return f"missing key '{prefix}{missing}'"
    return f"'{where}': {error.message}"


def _fill_defaults(instance: Any, schema: dict, root: dict) -> None:
    if "$ref" in schema:  # local references only: "#/$defs/name"
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    if not isinstance(instance, dict):
        return
    properties = schema.get("properties", {})
    for name, sub in properties.items():
        if name not in instance and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        if name in instance:
            _fill_defaults(instance[name], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for name, value in instance.items():
            if name not in properties:
                _fill_defaults(value, extra, root)


def load_schema(path: Path | str = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def _registry_problems(config: dict) -> list[str]:
    """Names that the schema cannot know: datasets, extractors, methods and their options."""
    from .. import data, methods, models
    from ..data import features
    from ..training import deep

    problems = []

    def known(kind: str, key: str, value: str, names) -> None:
        if value not in names:
            problems.append(f"'{key}': unknown {kind} {value!r} (known: {', '.join(sorted(names))})")

    folders = data.image_folders(config.get("datasets"))  # datasets of one's own images (kind image_folder)
    for name, path in folders.items():
        if name in data.DATASETS:
            problems.append(f"'datasets.{name}': {name!r} is a registry dataset; give the image folder another name")
        elif path is not None and not Path(path).expanduser().is_dir():  # no path: the schema says so
            problems.append(f"'datasets.{name}.path': directory {path!r} does not exist")
    for name, opts in (config.get("datasets") or {}).items():
        if name not in folders:
            known("dataset", f"datasets.{name}", name, data.DATASETS)
        local_dir = (opts or {}).get("local_dir")
        if local_dir is not None and not Path(local_dir).is_dir():
            problems.append(f"'datasets.{name}.local_dir': directory {local_dir!r} does not exist")

    from ..training import weak

    for experiment in ("clustering", "lam_study", "deep", "weak", "noisy"):
        section = config.get(experiment)
        if not section:
            continue
        # deep runs train a Table 7 network (cce.training.deep), weak runs too with a fraction of the
        # labels (cce.training.weak); the others a linear head (cce.methods)
        registry = {"deep": deep.DEEP_METHODS, "noisy": {},
                    "weak": {m: deep.get_deep_method(m) for m in weak.WEAK_METHODS},
                    }.get(experiment, methods.METHODS)
        for i, name in enumerate(section.get("datasets", [])):
            if name in folders and experiment not in ("clustering", "lam_study"):
                problems.append(f"'{experiment}.datasets[{i}]': {name!r} is an image folder; image folders run in "
                                "clustering and lam_study (fixed features) only")
            known("dataset", f"{experiment}.datasets[{i}]", name, {**data.DATASETS, **folders})
            if name not in data.DATASETS:
                continue
            spec = data.DATASETS[name]
            if experiment in ("weak", "noisy") and not {"train", "test"} <= set(spec.split_sizes):
                problems.append(f"'{experiment}.datasets[{i}]': dataset {name!r} has no train and test splits "
                                f"(only {', '.join(spec.split_sizes)}); these runs train on one and test on the other")
            if experiment in ("deep", "weak"):
                try:
                    models.architecture_for(spec.image_shape)
                except ValueError as err:
                    problems.append(f"'{experiment}.datasets[{i}]': dataset {name!r}: {err}")
        if "extractor" in section:
            known("extractor", f"{experiment}.extractor", section["extractor"], features.EXTRACTORS)
        for i, name in enumerate(section.get("methods", [])):
            known("method", f"{experiment}.methods[{i}]", name, registry)
        for i, name in enumerate(section.get("baselines", [])):
            known("method", f"{experiment}.baselines[{i}]", name, methods.METHODS)
        if "method" in section:
            known("method", f"{experiment}.method", section["method"], methods.METHODS)
            if section["method"] in methods.METHODS and "lam" not in methods.METHODS[section["method"]].defaults:
                problems.append(f"'{experiment}.method': method {section['method']!r} has no lam to vary")
            if section["method"] in section.get("baselines", []):
                problems.append(f"'{experiment}.baselines': {section['method']!r} is the method whose lam is "
                                "varied; list only other methods")
        for name, opts in (section.get("method_options") or {}).items():
            if name not in registry:
                known("method", f"{experiment}.method_options.{name}", name, registry)
                continue
            allowed = registry[name].defaults
            unknown = [opt for opt in opts or {} if opt not in allowed]
            for opt in unknown:
                problems.append(
                    f"'{experiment}.method_options.{name}.{opt}': unknown option of method {name!r}"
                    f" (allowed: {', '.join(sorted(allowed)) or 'none'})"
                )
            if not unknown:
                try:  # values with a fixed set of choices (solver, ...)
                    registry[name].options(opts)
                except (deep.DeepRunError, ValueError) as err:
                    problems.append(f"'{experiment}.method_options.{name}': {err}")
        for key, value in (section.get("training") or {}).items():
            if isinstance(value, dict) and "default" not in value:
                for i, name in enumerate(section.get("datasets", [])):
                    if name not in value:
                        problems.append(f"'{experiment}.training.{key}': no value for dataset {name!r} "
                                        f"({experiment}.datasets[{i}]) and no 'default'")
        if experiment in ("weak", "noisy") and not problems:
            # the options these runs add (network, labelled_batch_size, ...) and their values
            from .experiments import run_options, variants

            for variant in variants(config, experiment):
                try:
                    run_options(config, experiment, section["datasets"][0], variant)
                except (deep.DeepRunError, ValueError) as err:
                    problems.append(f"'{experiment}.training' or '{experiment}.method_options': {err}")
    return problems


def validate_config(config: dict, schema_path: Path | str = SCHEMA_PATH) -> dict:
    """Validate ``config`` in place (filling schema defaults) and return it; raise :class:`ConfigError`."""
    if not isinstance(config, dict) or not config:
        raise ConfigError("the configuration is empty or not a mapping; pass --configfile config/config.yaml")
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    problems = [_describe(e) for e in errors]
    if not problems:
        _fill_defaults(config, schema, schema)
    try:
        problems += _registry_problems(config)
    except (AttributeError, TypeError):
        pass  # a value of the wrong type, already reported by the schema
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return config


def load_config(path: Path | str) -> dict:
    """Read a YAML config file and validate it."""
    try:
        with open(path) as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    return validate_config(config)
