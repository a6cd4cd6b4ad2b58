"""The layers of ARCHITECTURE.md, checked on the code: imports flow one way and nothing imports in a circle.

Every import counts, the lazy ones inside functions included. The rules live in ``LAYERS`` and
``SIDE_MODULES`` below; ARCHITECTURE.md explains them.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "capsjax"

# Each layer may import itself and the layers listed before it, never one listed after it. The ground
# floor, `capsjax.errors`, holds the error hierarchy that every layer raises.
LAYERS = (
    "capsjax.errors",
    "capsjax.ops",
    "capsjax.nn",
    "capsjax.data",
    "capsjax.training",
    "capsjax.analysis",
    "capsjax.cli",
)
# The package's face re-exports the two lowest layers, and the one loader of trained weights (imported
# lazily, inside `capsjax.load_weights`); no module of the package imports it.
FACADE = "capsjax"
FACADE_MAY_IMPORT = ("capsjax.errors", "capsjax.ops", "capsjax.nn", "capsjax.training.weights")
# Modules beside the layers, each with the layers it may import; no module of the package imports them.
# A side module may be a package: its submodules (e.g. `capsjax.testing._checks`) are part of it, with
# the same imports allowed, and only the side module itself may import them.
# `capsjax.testing` (check_routing) is for tests, the project's and its users'.
SIDE_MODULES = {"capsjax.testing": ("capsjax.errors", "capsjax.ops")}


def module_name(path: pathlib.Path, package_dir: pathlib.Path) -> str:
    parts = path.relative_to(package_dir.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path, modules: set[str]) -> set[str]:
    """Every capsjax module that ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from capsjax.data import registry` imports the module capsjax.data.registry.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in modules}
    return found


def import_graph(package_dir: pathlib.Path) -> dict[str, set[str]]:
    paths = {module_name(p, package_dir): p for p in package_dir.rglob("*.py")}
    return {name: imports_of(path, set(paths)) - {name} for name, path in paths.items()}


def layer_of(module: str) -> int | None:
    for rank, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            return rank
    return None


def side_module_of(module: str) -> str | None:
    """The side module that ``module`` is, or is a submodule of; None for a module of the layers."""
    for side in SIDE_MODULES:
        if module == side or module.startswith(side + "."):
            return side
    return None


def wrong_way_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports against the layers' direction, and modules that belong to no layer."""
    problems = []
    for module, imported in sorted(graph.items()):
        if module == FACADE:
            problems += [
                f"{module} -> {other} (the face re-exports only {', '.join(FACADE_MAY_IMPORT)})"
                for other in sorted(imported)
                if layer_of(other) not in (0, 1, 2) and other not in FACADE_MAY_IMPORT
            ]
            continue
        side = side_module_of(module)
        if side is not None:
            allowed = SIDE_MODULES[side]
            problems += [
                f"{module} -> {other} ({side} may import only {', '.join(allowed)})"
                for other in sorted(imported)
                if side_module_of(other) != side and (layer_of(other) is None or LAYERS[layer_of(other)] not in allowed)
            ]
            continue
        rank = layer_of(module)
        if rank is None and module != "capsjax.__main__":
            problems.append(f"{module} belongs to no layer of {LAYERS}")
            continue
        rank = len(LAYERS) - 1 if rank is None else rank
        for other in sorted(imported):
            if other == FACADE:
                problems.append(f"{module} -> {other} (nothing inside the package imports its face)")
            elif side_module_of(other) is not None:
                problems.append(f"{module} -> {other} (nothing inside the package imports a side module)")
            elif (layer_of(other) or 0) > rank:
                problems.append(f"{module} -> {other} ({LAYERS[rank]} may not import {LAYERS[layer_of(other)]})")
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary import circle found by depth-first search (each reported once)."""
    found, seen = [], set()

    def visit(module, path, on_path):
        for other in sorted(graph.get(module, ())):
            if other in on_path:
                circle = path[path.index(other) :]
                key = frozenset(circle)
                if key not in seen:
                    seen.add(key)
                    found.append(circle + [other])
            elif other not in done:
                visit(other, path + [other], on_path | {other})
        done.add(module)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start], {start})
    return found


def test_imports_flow_one_way():
    problems = wrong_way_imports(import_graph(PACKAGE))
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


def test_no_import_cycles():
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_library_imports_no_experiment_code():
    scripts = {p.stem for p in (ROOT / "experiments").rglob("*.py")} | {"experiments", "configs"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module
                else []
            )
            offenders += [f"{path.relative_to(ROOT)} imports {n}" for n in names if n.split(".")[0] in scripts]
    assert not offenders, offenders


def test_no_dynamic_imports_of_the_package():
    # __import__ / importlib.import_module would hide an import from the checks above.
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "__import__(" not in text and "import_module(" not in text, path


@pytest.fixture
def broken_package(tmp_path):
    """A tiny package with one import against the layers (a lazy one), one circle, and a side module (a
    package) whose private submodule imports too much, and which is imported, its submodule too."""
    package = tmp_path / "capsjax"
    files = {
        "__init__.py": "from capsjax.ops import a\n",
        "ops/__init__.py": "",
        "ops/a.py": "def f():\n    from capsjax.training import loop\n",
        "nn/__init__.py": "",
        "nn/b.py": "import capsjax.nn.c\n",
        "nn/c.py": "from capsjax.nn import b\n",
        "training/__init__.py": "",
        "training/loop.py": "import capsjax\n",
        "training/checks.py": "import capsjax.testing\n",
        "training/peek.py": "from capsjax.testing import _checks\n",
        "testing/__init__.py": "from capsjax.testing._checks import check\nimport capsjax.ops\n",
        "testing/_checks.py": "import capsjax.nn.b\nfrom capsjax.ops import a\n",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


def test_the_checks_catch_what_they_guard(broken_package):
    graph = import_graph(broken_package)
    problems = wrong_way_imports(graph)
    assert any("capsjax.ops.a -> capsjax.training.loop" in p for p in problems), problems
    assert any("capsjax.training.loop -> capsjax (nothing inside" in p for p in problems), problems
    assert any("capsjax.testing._checks -> capsjax.nn.b (capsjax.testing may import only" in p for p in problems)
    assert any("capsjax.training.checks -> capsjax.testing (nothing inside" in p for p in problems), problems
    assert any("capsjax.training.peek -> capsjax.testing._checks (nothing inside" in p for p in problems), problems
    # The side module's own imports of itself and of the layers it may use are no problem.
    assert not [p for p in problems if "capsjax.testing -> " in p or "capsjax.testing._checks -> capsjax.ops" in p]
    assert not [p for p in problems if "belongs to no layer" in p], problems
    found = sorted(sorted(set(c)) for c in cycles(graph))
    assert found == [["capsjax", "capsjax.ops.a", "capsjax.training.loop"], ["capsjax.nn.b", "capsjax.nn.c"]]
