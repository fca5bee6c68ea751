"""Imports follow the data flow: spec -> plan -> execute -> store -> analyse, no arrow back up.

Every import of one rlharness module by another (lazy and type-only ones
included) must point to the same layer or one below. The analysis functions
that only turn tables into numbers or figures sit low, beside the vocabulary
they use, so that a run's publisher and the sweep's objectives may call them;
the analysis that reads the catalog or a study sits on top.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = "rlharness"
"""The package itself (its ``__init__`` sets Ray's token mode); its modules are placed by name."""
LAYERS: tuple[tuple[str, ...], ...] = (
    ("rlharness.errors", "rlharness.outcomes", "rlharness.processes"),
    (PACKAGE, "rlharness.masking", "rlharness.ray_env", "rlharness_envs", "rlharness.live"),
    (
        "rlharness.analysis.style",
        "rlharness.analysis.statistics",
        "rlharness.analysis.cells",
        "rlharness.analysis.knobs",
        "rlharness.analysis.plots",
    ),
    ("rlharness.spec",),
    (
        "rlharness.environments",
        "rlharness.memory",
        "rlharness.agents",
        "rlharness.runner",
    ),
    ("rlharness.results", "rlharness.integrity", "rlharness.catalog"),
    ("rlharness.storage", "rlharness.runtime_env"),
    ("rlharness.publish", "rlharness.resume", "rlharness.local_run"),
    ("rlharness.sweep",),
    ("rlharness.analysis",),
    ("rlharness.cli",),
)
"""Bottom to top; a module belongs to the layer of the longest name that it is or is inside.

The sweep's study storage sits above the results store, which never needs it."""


def layer(module: str) -> int:
    """The layer of ``module``; a module in no layer fails the test with its name."""
    found = [
        (len(name), index)
        for index, names in enumerate(LAYERS)
        for name in names
        if module == name or (module.startswith(name + ".") and name != PACKAGE)
    ]
    assert found, f"{module} is in no layer of tests/test_layers.py: place it there"
    return max(found)[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str) -> set[str]:
    """The rlharness modules ``source`` imports: for ``from package import module``, the module."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                inner = REPO.joinpath(*node.module.split("."), alias.name)
                is_module = inner.with_suffix(".py").exists() or inner.is_dir()
                found.add(f"{node.module}.{alias.name}" if is_module else node.module)
    return {name for name in found if name.split(".")[0] in ("rlharness", "rlharness_envs")}


def upward(module: str, source: str) -> list[str]:
    """The imports of ``module`` (its ``source``) from a layer above its own."""
    return [
        f"{module} imports {target}"
        for target in sorted(imports(source))
        if layer(target) > layer(module)
    ]


def test_no_module_imports_one_from_a_layer_above_it():
    found = [
        problem
        for path in sorted((REPO / "rlharness").rglob("*.py"))
        for problem in upward(module_name(path), path.read_text())
    ]
    assert found == []


def test_the_check_finds_an_upward_import():
    assert upward("rlharness.results", "from rlharness.storage import mask") == [
        "rlharness.results imports rlharness.storage"
    ]
    lazy = "def f():\n    from rlharness.sweep import driver\n"
    assert upward("rlharness.catalog", lazy) == ["rlharness.catalog imports rlharness.sweep.driver"]
    assert upward("rlharness.analysis.report", "from rlharness.sweep.study import RESULTS") == []
