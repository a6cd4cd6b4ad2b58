"""Sphinx configuration of the capsjax docs site (``make docs``; any warning is an error).

Guides (``guides/``), the API reference from the docstrings (``api/``), the examples of ``../examples``
run at build time by sphinx-gallery (into ``gallery/``), the command line read from the real parser
(sphinx-argparse), Markdown files of the repository included as they are (myst-parser), and MathJax
served from the built site (sphinx-mathjax-offline): the built site needs no network.
"""

import inspect
import logging
import os
import pathlib
import re
import sys

import capsjax
import capsjax.errors

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"
sys.path.insert(0, str(DOCS / "_ext"))  # cli_reference: the parser for the command line page

# Furo's a11y-pygments dependency sets the root logger to print INFO records when it is imported; the
# gallery's examples would then fill the build's output with JAX's, orbax's and capsjax's INFO lines.
# The root handler shows warnings and errors only (Sphinx's own messages do not pass through it).
_root_handler = logging.StreamHandler()
_root_handler.setLevel(logging.WARNING)
logging.basicConfig(handlers=[_root_handler], level=logging.WARNING, force=True)

project = "capsjax"
author = "the capsjax developers"
copyright = "the capsjax developers"
release = version = capsjax.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax: no CDN
    "myst_parser",
    "sphinxarg.ext",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
smartquotes_action = "qe"  # quotes and ellipses only: "--resume" stays two hyphens
exclude_patterns = ["_build", "_generated", "_ext"]

autodoc_member_order = "bysource"
# Each module page documents what the module defines, not the names it re-exports in __all__ (those have
# their own entry where they are defined, and on api/capsjax.rst): no object is described twice.
autodoc_default_options = {"ignore-module-all": True}
autodoc_typehints = "none"  # shapes are in the docstrings; jaxtyping annotations read badly as signatures
autosummary_generate = False  # the tables of api/capsjax.rst link to entries on the same page
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # NamedTuple fields are documented once, by their Attributes section

# ARCHITECTURE.md and the experiment notes are included by guides/*.md; their "#section" links work.
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": ["../examples"],
    "gallery_dirs": ["gallery"],
    "filename_pattern": r"/plot_",  # every examples/plot_*.py runs at build time
    "abort_on_example_error": True,
    "min_reported_time": 0,  # every example shows its running time
    "write_computation_times": True,  # gallery/sg_execution_times: every example's time in one table
    "reference_url": {"capsjax": None},  # names in the examples' code link to the API reference
    "remove_config_comments": True,
    "download_all_examples": False,
}

html_theme = "furo"
html_title = f"capsjax {release}"
html_static_path = []
html_show_sourcelink = False


def _write_readme_example(_app) -> None:
    """The README's first Python block (the composition example, which a test runs) for literalinclude."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    GENERATED.mkdir(exist_ok=True)
    (GENERATED / "compose.py").write_text(blocks[0])


def _write_exit_codes(_app) -> None:
    """The exit-code table of the command line: codes and meanings from the table in capsjax.errors'
    docstring, with the error classes that carry each code."""
    rows = re.findall(r"^(\d+)\s{2,}(\S.*)$", capsjax.errors.__doc__, re.M)
    if not rows:
        raise RuntimeError("capsjax.errors: its docstring has no exit-code table")
    raised_by: dict[int, list[str]] = {}
    for name in capsjax.errors.__all__:
        error = getattr(capsjax.errors, name)
        if inspect.isclass(error) and issubclass(error, capsjax.errors.CapsjaxError):
            raised_by.setdefault(error.exit_code, []).append(f":class:`~capsjax.errors.{name}`")
    raised_by.setdefault(capsjax.errors.EXIT_INTERRUPTED, []).append("``KeyboardInterrupt``")
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 10 50 40", ""]
    lines += ["   * - exit code", "     - meaning", "     - raised as"]
    for code, meaning in rows:
        errors = ", ".join(raised_by.get(int(code), [])) or "-"
        lines += [f"   * - {code}", f"     - {meaning.strip()}", f"     - {errors}"]
    GENERATED.mkdir(exist_ok=True)
    (GENERATED / "exit_codes.rst").write_text("\n".join(lines) + "\n")


# Markdown files of the repository shown as pages of the site: a link to one goes to its page.
MARKDOWN_PAGES = {
    ROOT / "ARCHITECTURE.md": DOCS / "guides" / "architecture.md",
    ROOT / "experiments" / "RESULTS.md": DOCS / "guides" / "results.md",
    ROOT / "experiments" / "bench_cpu.md": DOCS / "guides" / "benchmarks.md",
}
_MARKDOWN_LINK = re.compile(r"(\]\()(?![a-z][a-z0-9+.-]*:|#|/)([^)\s#]+)")


def _relink_included_markdown(app, relative_path, _parent, content) -> None:
    """Links and images of an included Markdown file, which are relative to that file, made relative
    to the page that includes it; a link to one of ``MARKDOWN_PAGES`` goes to its page."""
    included = (DOCS / relative_path).resolve()
    if included.suffix != ".md":
        return
    page_dir = (DOCS / app.env.docname).parent

    def relink(match: re.Match) -> str:
        target = (included.parent / match.group(2)).resolve()
        if target in MARKDOWN_PAGES:
            return match.group(1) + os.path.relpath(MARKDOWN_PAGES[target], page_dir)
        # Another Markdown file is a file to download, not a page (myst would look for a page).
        scheme = "path:" if target.suffix == ".md" else ""
        return match.group(1) + scheme + os.path.relpath(target, page_dir)

    content[0] = _MARKDOWN_LINK.sub(relink, content[0])


def _offline_execution_times(app, docname, source) -> None:
    """sphinx-gallery's execution-time pages load jQuery and DataTables from CDNs to sort their table:
    the table stays, the scripts go (the site works offline)."""
    if docname.endswith("sg_execution_times"):
        source[0] = re.sub(r"\n  \.\. raw:: html\n.*?(?=\n  \.\. list-table::)", "\n", source[0], flags=re.S)


def _check_public_names_documented(app) -> None:
    """Every name of ``capsjax.__all__`` has its entry in api/capsjax.rst (a new public name fails the build)."""
    from sphinx.util import logging

    page = (DOCS / "api" / "capsjax.rst").read_text()
    listed = set(re.findall(r"^\.\. (?:auto\w+:: capsjax\.|py:data:: )(\w+)\s*$", page, re.M))
    missing = sorted(set(capsjax.__all__) - listed)
    if missing:
        logging.getLogger(__name__).warning("api/capsjax.rst: public names without an entry: %s", ", ".join(missing))


def setup(app):
    app.connect("builder-inited", _write_readme_example)
    app.connect("builder-inited", _write_exit_codes)
    app.connect("builder-inited", _check_public_names_documented)
    app.connect("include-read", _relink_included_markdown)
    app.connect("source-read", _offline_execution_times)
