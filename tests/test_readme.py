"""The README's example of composing the pure functions runs and gives finite gradients."""

import pathlib
import re

import chex
import jax.numpy as jnp
import pytest

from capsjax import ROUTING_FUNCTIONS

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
