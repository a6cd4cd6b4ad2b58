"""The README's example of composing the pure functions runs and gives finite gradients."""

import pathlib
import re

import chex

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    chex.assert_shape(namespace["lengths"], (32, 10))
    chex.assert_tree_all_finite(namespace["grads"])
