"""The README's code runs as shown: the example composing the pure functions (finite gradients), the
API table's names, and the check_routing snippet with the verdicts its table shows."""

import contextlib
import io
import pathlib
import re

import chex
import jax.numpy as jnp
import pytest

import capsjax
from capsjax import ROUTING_FUNCTIONS, dynamic_routing

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("routing", sorted(ROUTING_FUNCTIONS))
def test_readme_python_example_runs_with_each_routing_by_changing_one_line(routing):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    line = 'route = get_routing("dynamic")'
    assert line in code
    namespace: dict = {}
    exec(compile(code.replace(line, f'route = get_routing("{routing}")'), str(README), "exec"), namespace)
    chex.assert_shape(namespace["lengths"], (8, 10))
    chex.assert_tree_all_finite(namespace["grads"])
    assert float(jnp.abs(namespace["grads"]).max()) > 0


def test_every_name_in_the_readme_api_table_imports_from_capsjax():
    section = README.read_text().split("## API (import from `capsjax`)")[1].split("\n## ")[0]
    names = {
        match.group(0)
        for row in section.splitlines()
        if row.startswith("| `")
        for code in re.findall(r"`([^`]*)`", row.split("|")[1])
        if (match := re.match(r"[A-Za-z_]\w*", code))
    }
    assert {"squash", "em_routing", "spread_loss", "CapsNet"} <= names
    assert sorted(name for name in names if not hasattr(capsjax, name)) == []


def my_routing(votes, *, num_iters=3, bias=None):
    """The README's example of a routing of one's own: dynamic routing with leaky=True."""
    return dynamic_routing(votes, num_iters=num_iters, bias=bias, leaky=True)


def test_readme_check_routing_snippet_prints_the_verdicts_the_readme_shows():
    text = README.read_text()
    snippet = next(
        code for code in re.findall(r"```python\n(.*?)```", text, re.S) if "check_routing(my_routing)" in code
    )
    shown = next(table for table in re.findall(r"```text\n(.*?)```", text, re.S) if table.startswith("check_routing("))
    namespace = {"my_routing": my_routing}
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        exec(compile(snippet, str(README), "exec"), namespace)

    def verdicts(table: str) -> list[list[str]]:
        return [row.split()[:2] for row in table.splitlines()[2:] if row.strip()]

    assert printed.getvalue().splitlines()[0] == shown.splitlines()[0]
    assert verdicts(printed.getvalue()) == verdicts(shown)
    assert ["FAIL", "couplings_sum_to_one"] in verdicts(shown)
