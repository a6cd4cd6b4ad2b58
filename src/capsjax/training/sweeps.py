"""Repeated runs of named config variants over seeds, summarised as mean +- std test error.

Used by the paper-reproduction scripts in ``experiments/`` (routing ablation, CNN baseline).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import statistics
from collections.abc import Mapping, Sequence

from capsjax.training.config import TrainConfig
from capsjax.training.loop import train_and_evaluate


def summarise(errors: Sequence[float]) -> dict:
    """Mean and sample standard deviation of test errors (percent)."""
    errors = [float(e) for e in errors]
    return {
        "errors_percent": errors,
        "mean": statistics.fmean(errors),
        "std": statistics.stdev(errors) if len(errors) > 1 else 0.0,
        "runs": len(errors),
    }


def run_variants(
    variants: Mapping[str, TrainConfig],
    *,
    seeds: Sequence[int],
    workdir: str | pathlib.Path,
    data_dir=None,
    progress: bool = True,
) -> dict:
    """Train every variant with every seed (resuming unfinished runs); returns the summary per variant.

    Each run lives in ``workdir/<variant>/seed<k>``; a finished run (its ``summary.json`` says
    completed) is read back instead of retrained, so an interrupted experiment continues.
    """
    workdir = pathlib.Path(workdir)
    results = {}
    for name, config in variants.items():
        errors, speeds = [], []
        for seed in seeds:
            run_dir = workdir / name / f"seed{seed}"
            summary_path = run_dir / "summary.json"
            summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
            if summary.get("status") != "completed":
                summary = train_and_evaluate(
                    dataclasses.replace(config, seed=seed), run_dir, data_dir=data_dir, resume=True, progress=progress
                )
                if summary["status"] != "completed":
                    # SIGINT/SIGTERM stopped this run (checkpointed): stop the whole experiment too;
                    # running it again resumes here.
                    raise KeyboardInterrupt(f"{name} seed {seed} interrupted at step {summary['step']}")
            errors.append(summary["test_error_percent"])
            speeds.append(summary["train_examples_per_sec"] or 0.0)
        results[name] = {
            **summarise(errors),
            "parameters": summary["parameters"],
            "train_examples_per_sec": statistics.fmean(speeds),
        }
    return results
