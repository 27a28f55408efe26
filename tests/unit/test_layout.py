"""The code's shape: small modules, layers that import only downward, and no import circle.

Every import counts: at module level, inside functions (lazy, to keep dbt out of the triggerer) and
under ``TYPE_CHECKING``. A lazy import still says "this code needs that one", so it follows the layers
like any other (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "dbt_watcher"
MAX_LINES = 400

#: Bottom to top. A module imports only from its own layer or the layers below it. Packages that share a
#: layer in a tuple of their own are siblings that must not import each other (the tasks and the UI).
LAYERS: tuple[tuple[str | tuple[str, ...], ...], ...] = (
    (
        "dbt_watcher.errors",
        "dbt_watcher.compat",
        "dbt_watcher.airflow_lines",
        "dbt_watcher.task_states",
        "dbt_watcher.strenum",
        "dbt_watcher.files",
        "dbt_watcher.modes",
    ),  # foundation
    ("dbt_watcher.invocation",),  # running dbt: commands, runners, node events, profiles
    ("dbt_watcher.project",),  # the project: locate, manifest, selection, graph, caches
    ("dbt_watcher.channel",),  # the run's status channel
    ("dbt_watcher.rules",),  # shared rules: verdict, emission, artifacts, links, naming
    ("dbt_watcher.checks", "dbt_watcher.config"),  # the group's parameters
    ("dbt_watcher.runtime",),  # what every task knows at run time; a task's dbt
    (("dbt_watcher.producer", "dbt_watcher.consumer", "dbt_watcher.ui"),),  # the tasks, and the UI beside them
    ("dbt_watcher.group", "dbt_watcher.cli", "dbt_watcher.plugin", "dbt_watcher.provider_info", "dbt_watcher"),
)

#: (importer, imported) pairs allowed to break the rule above, each with why. Keep it short.
ALLOWED: dict[tuple[str, str], str] = {}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every module of the package that ``path`` imports, wherever the import stands."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            targets = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        imported.update(t for t in targets if t in known)
    return imported


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}


def _place(module: str) -> tuple[int, str]:
    """The layer of a module, and the sibling package it belongs to within that layer."""
    best: tuple[int, str, int] | None = None  # layer, owner, length of the matching prefix
    for level, layer in enumerate(LAYERS):
        for entry in layer:
            for owner in entry if isinstance(entry, tuple) else (entry,):
                if (module == owner or module.startswith(owner + ".")) and (best is None or len(owner) > best[2]):
                    best = (level, owner if isinstance(entry, tuple) else "", len(owner))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0], best[1]


def test_no_module_is_longer_than_the_limit() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        _place(module)


def test_imports_run_only_down_the_layers() -> None:
    upward = []
    for module, targets in sorted(_graph().items()):
        level, sibling = _place(module)
        for target in sorted(targets):
            target_level, target_sibling = _place(target)
            across = level == target_level and sibling != target_sibling
            if (target_level > level or across) and (module, target) not in ALLOWED:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_circle() -> None:
    graph = _graph()
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            pytest.fail("import circle: " + " -> ".join([*visiting[visiting.index(name) :], name]))
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for module in sorted(graph):
        visit(module)


def test_the_contract_sees_lazy_and_type_only_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from dbt_watcher.group import render\n"
        "def f():\n    from dbt_watcher.consumer.trigger import ConsumerTrigger\n"
    )
    known = {"dbt_watcher.group.render", "dbt_watcher.consumer.trigger", "dbt_watcher.group"}
    assert _imports(sample, known) == {"dbt_watcher.group.render", "dbt_watcher.consumer.trigger"}
