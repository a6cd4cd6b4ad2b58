"""The gallery in examples/: every script is a sphinx-gallery example, and the fastest ones run.

The docs build executes every ``examples/plot_*.py`` (sphinx-gallery, aborting on an error); here
each script's form is checked (a title, cells, imports of the library and its dependencies only,
weights that exist) and the two that need neither data nor weights run as plain scripts.
"""

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("plot_*.py"))
# Top-level packages an example may import besides the standard library: capsjax and what it installs.
ALLOWED = {"capsjax", "numpy", "matplotlib", "jax", "flax", "PIL"}


def test_the_gallery_has_its_header_and_examples():
    header = (EXAMPLES / "GALLERY_HEADER.rst").read_text().splitlines()
    assert header[:2] == ["Gallery", "======="]
    assert len(SCRIPTS) >= 8, [p.name for p in SCRIPTS]


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_an_example_has_a_title_cells_and_allowed_imports(path):
    source = path.read_text()
    tree = ast.parse(source)
    doc = ast.get_docstring(tree, clean=False)
    assert doc, f"{path.name}: no module docstring"
    lines = doc.strip("\n").splitlines()
    assert len(lines) >= 4 and set(lines[1]) == {"="} and len(lines[1]) >= len(lines[0]), (
        f"{path.name}: the docstring must open with a title underlined by '=', then an introduction"
    )
    assert source.count("\n# %%\n") >= 2, f"{path.name}: expected text cells ('# %%')"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in ALLOWED or top in sys.stdlib_module_names, f"{path.name} imports {name}"


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_an_example_finds_the_shipped_weights_without_file(path):
    """sphinx-gallery runs a script from the examples folder, where ``__file__`` may be undefined."""
    source = path.read_text()
    for name in re.findall(r'"(\w+\.msgpack)"', source):
        assert (EXAMPLES.parent / "weights" / name).is_file(), f"{path.name}: weights/{name} is missing"
        assert "except NameError" in source and "Path.cwd()" in source, f"{path.name}: no fallback for __file__"


def run_example(name: str) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=180, env=env, cwd=EXAMPLES
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_plot_squash_runs():
    out = run_example("plot_squash.py")
    assert "|s| = 1.0  ->  |squash(s)| = 0.5000" in out
    assert "grad |squash(s)|^2 at s=0 = [0.0, 0.0]" in out


def test_plot_check_routing_runs_and_gives_its_verdicts():
    out = run_example("plot_check_routing.py")
    verdicts = re.findall(r"check_routing\((\w+),.*?(all passed|\d+ FAILED)", out)
    assert verdicts == [
        ("cosine_routing", "all passed"),
        ("wrong_axis_routing", "1 FAILED"),
        ("nan_gradient_routing", "1 FAILED"),
    ], out
    assert re.search(r"FAIL\s+couplings_sum_to_one", out) and re.search(r"FAIL\s+finite_at_zero_votes", out), out
