"""Sphinx configuration of the capsjax API reference (``make docs``; warnings are errors)."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]

project = "capsjax"
author = "the capsjax developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "_generated"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # shapes are in the docstrings; jaxtyping annotations read badly as signatures
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # NamedTuple fields are documented once, by their Attributes section
html_theme = "alabaster"
html_static_path = []


def _write_readme_example(_app) -> None:
    """The README's first Python block (the composition example, which a test runs) for literalinclude."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    generated = pathlib.Path(__file__).parent / "_generated"
    generated.mkdir(exist_ok=True)
    (generated / "compose.py").write_text(blocks[0])


def setup(app):
    app.connect("builder-inited", _write_readme_example)
