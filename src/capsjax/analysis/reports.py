"""Experiment results as files: one writer of ``<stem>.json`` + ``<stem>.md``, and the Markdown error table."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping


def write_results(workdir: str | pathlib.Path, results, markdown: str, *, stem: str = "results") -> str:
    """Write ``results`` as ``workdir/<stem>.json`` and ``markdown`` as ``workdir/<stem>.md``; returns the Markdown."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (workdir / f"{stem}.md").write_text(markdown)
    return markdown


def results_table(
    results: Mapping[str, dict],
    paper: Mapping[str, float] | None = None,
    *,
    name_column: str = "variant",
    error_column: str = "test error % (mean +- std)",
) -> str:
    """Markdown table of :func:`capsjax.training.sweeps.run_variants` results: name, test error mean +- std,
    runs, parameters and the paper's error beside it.

    Example:
      >>> print(results_table({"a": {"mean": 0.4, "std": 0.1, "runs": 3, "parameters": 1000}}, {"a": 0.25}), end="")
      | variant | test error % (mean +- std) | runs | parameters | paper error % |
      |---|---:|---:|---:|---:|
      | a | 0.40 +- 0.10 | 3 | 1,000 | 0.25 |
    """
    paper = paper or {}
    lines = [f"| {name_column} | {error_column} | runs | parameters | paper error % |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        reference = f"{paper[name]:.2f}" if name in paper else "-"
        error = f"{r['mean']:.2f} +- {r['std']:.2f}"
        lines.append(f"| {name} | {error} | {r['runs']} | {r['parameters']:,} | {reference} |")
    return "\n".join(lines) + "\n"
