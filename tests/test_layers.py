"""The library's imports point downward: pipeline -> estimator -> training -> methods, data ->
pseudolabels, models -> losses, provenance -> lock -> leaves (device, io, metrics); predictions
(a run's saved predictions) sits beside lock, on io. Nothing but the
command line (cce.__main__) imports the pipeline; data never imports training or methods."""

import ast

from conftest import REPO

SRC = REPO / "src" / "cce"
# Rank of each top-level part of cce: a module may import only parts of a lower rank, or its own.
RANK = {
    "__main__": 8, "pipeline": 7, "estimator": 6, "training": 5, "methods": 4, "data": 4,
    "pseudolabels": 3, "models": 3, "losses": 2,
    "provenance": 2, "lock": 1.5, "predictions": 1.5,
    "device": 1, "io": 1, "metrics": 1, "paper": 1, "__init__": 0,
}


def _part(module: str) -> str:
    """The top-level part of a dotted name inside cce ("cce.data.fetch" -> "data")."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path):
    """Every cce module imported by the file at ``path``, at any depth (lazy imports too)."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1])  # the package that relative imports start from
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "cce")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "cce":
                continue
            if node.module is None or target.count(".") == 0:  # `from . import x`: x may be a module
                yield from (f"{target}.{a.name}" for a in node.names)
            else:
                yield target


def test_imports_point_downward():
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        own = _part(".".join(path.relative_to(SRC.parent).with_suffix("").parts))
        for target in _imports(path):
            other = _part(target)
            if other == own or other not in RANK:  # other: a name re-exported by cce/__init__
                continue
            if RANK[other] >= RANK[own] and not (own == "__init__" and other == "estimator"):
                wrong.append(f"{path.relative_to(SRC)} imports {target}")
    assert not wrong, "imports that point upward or sideways:\n" + "\n".join(wrong)


def test_data_never_imports_training_or_methods():
    for path in (SRC / "data").rglob("*.py"):
        assert not {_part(t) for t in _imports(path)} & {"training", "methods", "pipeline"}, path
