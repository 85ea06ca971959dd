"""The module layout holds: every import runs down the layers, and no import hides inside a function.

Layers, lowest first: core; audit; directory; book (records beside the clients) and notify; access; risk; then the
two that orchestrate, intake (what the CRM and HR push) and transfer (the handover workflow), with ops beside them;
last the composition roots that bind them (app.main, app.worker, app.cli, app.demo, app.metadata). A module imports
only from lower layers (and itself): a lower module that needs a handover fact receives it (a statement, or a callable
bound in a composition root).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

LAYERS: dict[str, int] = {
    "core": 0,
    "audit": 1,
    "directory": 2,
    "jobs": 2,  # runs what the composition root binds; knows no operation
    "book": 3,  # records owned alongside clients: reads the directory; transfer moves them
    "notify": 3,
    "access": 4,
    "risk": 5,
    "intake": 6,
    "transfer": 6,
    "ops": 6,
    "main": 7,
    "worker": 7,
    "cli": 8,  # the command line starts the roots
    "demo": 7,
    "metadata": 7,
}
# The list, spelled out: each of these must fail even if the layers above were reordered.
FORBIDDEN = {
    ("core", "*"),
    ("access", "transfer"),
    ("notify", "transfer"),
    ("risk", "transfer"),
    ("directory", "transfer"),
    ("audit", "transfer"),
    ("intake", "transfer"),
    ("audit", "directory"),
    ("directory", "access"),
    ("jobs", "transfer"),
    ("book", "transfer"),
}
# Entry points may import lazily (the CLI keeps `handover --help` fast).
LAZY_IMPORTS_ALLOWED = {"cli"}


def _module_of(path: Path) -> str:
    return path.relative_to(APP).parts[0].removesuffix(".py")


def _imports(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    found: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app."):
            target = node.module.split(".")[1]
            if target in LAYERS:
                found.append((node, target))
            else:  # `from app import x`-style submodule names
                found.append((node, target))
        elif isinstance(node, ast.ImportFrom) and node.module == "app":
            found.extend((node, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((node, alias.name.split(".")[1]) for alias in node.names if alias.name.startswith("app."))
    return found


def _edges() -> list[tuple[str, str, str, int]]:
    edges = []
    for path in sorted(APP.rglob("*.py")):
        source = _module_of(path)
        if source not in LAYERS:
            continue
        for node, target in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if target != source:
                edges.append((source, target, str(path.relative_to(APP.parent)), getattr(node, "lineno", 0)))
    return edges


def test_every_module_is_placed_in_a_layer() -> None:
    modules = {_module_of(p) for p in APP.rglob("*.py")} - {"__init__"}
    assert modules <= set(LAYERS), f"place these in LAYERS: {sorted(modules - set(LAYERS))}"


def test_imports_run_down_the_layers() -> None:
    upward = [
        f"{where}:{line}: {source} (layer {LAYERS[source]}) imports {target} (layer {LAYERS.get(target)})"
        for source, target, where, line in _edges()
        if target not in LAYERS or LAYERS[target] >= LAYERS[source]
    ]
    assert upward == []


@pytest.mark.parametrize(("source", "target"), sorted(FORBIDDEN))
def test_no_forbidden_edge(source: str, target: str) -> None:
    hits = [f"{where}:{line}" for s, t, where, line in _edges() if s == source and (target == "*" or t == target)]
    assert hits == [], f"{source} must not import {target}"


def test_no_import_of_an_app_module_inside_a_function() -> None:
    """A function-level import hides a dependency from the reader (and from this test's layers)."""
    hidden = []
    for path in sorted(APP.rglob("*.py")):
        if _module_of(path) in LAZY_IMPORTS_ALLOWED:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for top in tree.body:
            for node in ast.walk(top):
                if node is top:
                    continue
                if isinstance(node, ast.ImportFrom | ast.Import) and any(t for _, t in _imports(node)):
                    hidden.append(f"{path.relative_to(APP.parent)}:{node.lineno}")
    assert hidden == []


def test_the_checks_catch_what_they_claim() -> None:
    """The parser finds the edges the rules are about (a test that cannot fail is a defect)."""
    tree = ast.parse("from app.transfer import service\nimport app.notify.worker\nfrom app import metadata\n")
    assert [t for _, t in _imports(tree)] == ["transfer", "notify", "metadata"]
    nested = ast.parse("def f():\n    from app.transfer.models import Handover\n")
    inner = [n for n in ast.walk(nested.body[0]) if isinstance(n, ast.ImportFrom)]
    assert [t for _, t in _imports(inner[0])] == ["transfer"]
