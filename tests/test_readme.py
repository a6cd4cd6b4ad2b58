"""The README's code runs as shown: the example composing the pure functions (finite gradients, with each
routing), the API table (exactly the names of ``capsjax.__all__``), the check_routing snippet as pasted
(with the verdicts its table shows) and the snippet that loads the shipped weights."""

import contextlib
import io
import pathlib
import re

import chex
import jax.numpy as jnp
import pytest

import capsjax
from capsjax import ROUTING_FUNCTIONS

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def run_block(code: str) -> tuple[dict, str]:
    """Runs a README block in a fresh namespace, as a reader pasting it would; returns it and what it printed."""
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(code, str(README), "exec"), namespace)
    return namespace, printed.getvalue()


@pytest.mark.parametrize("routing", sorted(ROUTING_FUNCTIONS))
def test_readme_python_example_runs_with_each_routing_by_changing_one_line(routing):
    code = python_blocks()[0]
    line = 'route = get_routing("dynamic")'
    assert line in code
    namespace, printed = run_block(code.replace(line, f'route = get_routing("{routing}")'))
    chex.assert_shape(namespace["lengths"], (8, 10))
    chex.assert_tree_all_finite(namespace["grads"])
    assert float(jnp.abs(namespace["grads"]).max()) > 0
    assert "finite grads True" in printed


def test_the_readme_api_table_lists_exactly_the_public_names_of_capsjax():
    section = README.read_text().split("## API (import from `capsjax`)")[1].split("\n## ")[0]
    names = {
        match.group(0)
        for row in section.splitlines()
        if row.startswith("| `")
        for code in re.findall(r"`([^`]*)`", row.split("|")[1])
        if (match := re.match(r"[A-Za-z_]\w*", code))
    }
    assert {"squash", "em_routing", "spread_loss", "CapsNet", "load_weights"} <= names
    assert sorted(name for name in names if not hasattr(capsjax, name)) == []
    assert sorted(names - set(capsjax.__all__)) == [], "in the README's API table but not in capsjax.__all__"
    assert sorted(set(capsjax.__all__) - names) == [], "in capsjax.__all__ but missing from the README's API table"


def test_readme_check_routing_snippet_runs_as_pasted_and_prints_the_verdicts_the_readme_shows():
    text = README.read_text()
    snippet = next(code for code in python_blocks() if "check_routing(my_routing)" in code)
    shown = next(table for table in re.findall(r"```text\n(.*?)```", text, re.S) if table.startswith("check_routing("))
    _, printed = run_block(snippet)

    def verdicts(table: str) -> list[list[str]]:
        return [row.split()[:2] for row in table.splitlines()[2:] if row.strip()]

    assert printed.splitlines()[0] == shown.splitlines()[0]
    assert verdicts(printed) == verdicts(shown)
    assert ["FAIL", "couplings_sum_to_one"] in verdicts(shown)


def test_readme_load_weights_snippet_runs_from_the_repository_root(monkeypatch):
    snippet = next(code for code in python_blocks() if "load_weights(" in code)
    monkeypatch.chdir(ROOT)
    namespace, printed = run_block(snippet)
    chex.assert_shape(namespace["out"].scores, (2, 10))
    assert printed.strip() == "CapsNet (2, 10)"
