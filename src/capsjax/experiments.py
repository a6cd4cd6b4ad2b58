"""Repeated runs of named config variants over seeds, summarised as mean +- std test error.

Used by the paper-reproduction scripts in ``experiments/`` (routing ablation, CNN baseline).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import statistics
from collections.abc import Mapping, Sequence

from capsjax.config import DataConfig, OptimConfig, TrainConfig
from capsjax.models import CapsNetConfig, CNNConfig
from capsjax.run import train_and_evaluate

# Budgets: "smoke" checks the machinery in well under a minute; "reduced" is what a 2-core CPU
# session affords (stated in RESULTS.md); "full" is the paper's scale (hours on a GPU).
BUDGETS = ("smoke", "reduced", "full")


def budget_config(budget: str, *, seeds: int | None = None) -> tuple[TrainConfig, tuple[int, ...]]:
    """The base config and seeds of a budget (model sizes and data counts)."""
    if budget == "smoke":
        base = TrainConfig(
            capsnet=CapsNetConfig(conv_channels=16, primary_types=4, class_dim=8, decoder_hidden=(32,)),
            cnn=CNNConfig(conv_channels=(8, 8, 4), hidden=(32, 16)),
            data=DataConfig(train_examples=256, test_examples=128),
            batch_size=64, eval_batch_size=128, epochs=1, log_every_steps=4, checkpoint_every_steps=1000,
        )
        default_seeds = 2
    elif budget == "reduced":
        # A 2-core CPU affords ~1 minute per run: a narrower CapsNet (64 conv channels, 8 primary
        # capsule types = 288 capsules; routing, class capsules and decoder as in the paper) and a
        # CNN narrowed alike, 3 epochs of 10,000 training images, the full test set.
        base = TrainConfig(
            capsnet=CapsNetConfig(conv_channels=64, primary_types=8),
            cnn=CNNConfig(conv_channels=(64, 64, 32)),
            data=DataConfig(train_examples=10000, test_examples=None),
            optim=OptimConfig(learning_rate=3e-3, decay_steps=100, decay_rate=0.9),
            batch_size=64, eval_batch_size=500, epochs=3, checkpoint_every_steps=1000,
        )
        default_seeds = 3
    elif budget == "full":
        base = TrainConfig(epochs=50)
        default_seeds = 3
    else:
        raise ValueError(f"budget: expected one of {BUDGETS}, got {budget!r}")
    return base, tuple(range(seeds or default_seeds))


def experiment_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every experiment script takes: --budget, --workdir, --data-dir, --seeds."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=BUDGETS, default="smoke")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--data-dir", help="folder with the MNIST IDX files")
    parser.add_argument("--seeds", type=int, help="number of seeds (default: the budget's)")
    return parser


def summarise(errors: Sequence[float]) -> dict:
    """Mean and sample standard deviation of test errors (percent)."""
    errors = [float(e) for e in errors]
    return {"errors_percent": errors, "mean": statistics.fmean(errors),
            "std": statistics.stdev(errors) if len(errors) > 1 else 0.0, "runs": len(errors)}


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
                summary = train_and_evaluate(dataclasses.replace(config, seed=seed), run_dir, data_dir=data_dir,
                                             resume=True, progress=progress)
                if summary["status"] != "completed":
                    # SIGINT/SIGTERM stopped this run (checkpointed): stop the whole experiment too;
                    # running it again resumes here.
                    raise KeyboardInterrupt(f"{name} seed {seed} interrupted at step {summary['step']}")
            errors.append(summary["test_error_percent"])
            speeds.append(summary["train_examples_per_sec"] or 0.0)
        results[name] = {**summarise(errors), "parameters": summary["parameters"],
                         "train_examples_per_sec": statistics.fmean(speeds)}
    return results


def save_results(results: Mapping[str, dict], workdir, *, header: str, paper=None) -> str:
    """Write ``results.json`` and ``results.md`` into ``workdir``; returns the Markdown."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = header + "\n\n" + results_table(results, paper)
    (workdir / "results.md").write_text(markdown)
    return markdown


def results_table(results: Mapping[str, dict], paper: Mapping[str, float] | None = None) -> str:
    """Markdown table: variant, test error mean +- std (runs), paper's error."""
    paper = paper or {}
    lines = ["| variant | test error % (mean +- std) | runs | parameters | paper error % |",
             "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        reference = f"{paper[name]:.2f}" if name in paper else "-"
        error = f"{r['mean']:.2f} +- {r['std']:.2f}"
        lines.append(f"| {name} | {error} | {r['runs']} | {r['parameters']:,} | {reference} |")
    return "\n".join(lines) + "\n"


def accuracy_history(run_dir) -> dict[int, float]:
    """``{step: test accuracy}`` of every evaluation a run logged (the last record of a step wins,
    as a resumed run may log a step twice)."""
    from capsjax.metrics import read_metrics

    return {int(r["step"]): r["test/accuracy"] for r in read_metrics(pathlib.Path(run_dir) / "metrics.jsonl")
            if "test/accuracy" in r}


def match_accuracy(histories: Mapping[str, Mapping[int, float]]) -> tuple[float, dict[str, int]]:
    """Early stopping at a common accuracy: the point where several models are equally good.

    The target is the lowest of the models' best accuracies (the level every model reached); each
    model gets its evaluated step whose accuracy is closest to it, the earliest on a tie. Matching on
    test accuracy is what Sabour et al. (2017, sec. 5.2) did for affNIST; the accuracies compared
    afterwards are on another test set.

    Args:
      histories: per model, ``{step: accuracy}`` (see :func:`accuracy_history`).

    Returns:
      ``(target, {model: step})``.

    Example:
      >>> match_accuracy({"a": {10: 0.90, 20: 0.97, 30: 0.98}, "b": {10: 0.93, 20: 0.96}})
      (0.96, {'a': 20, 'b': 20})
    """
    if not histories or not all(histories.values()):
        raise ValueError("histories: every model needs at least one evaluated step")
    target = min(max(history.values()) for history in histories.values())
    steps = {name: min(history, key=lambda step: (abs(history[step] - target), step))
             for name, history in histories.items()}
    return target, steps


def evaluate_checkpoints(run_dir, dataset, steps: Sequence[int], *, progress: bool = True) -> dict[int, float]:
    """``{step: accuracy %}`` of a run's checkpoints ``steps`` on ``dataset``."""
    from tqdm.auto import tqdm

    from capsjax.run import evaluate_checkpoint

    out = {}
    for step in tqdm(steps, desc=f"testing {run_dir} on {dataset.source}", unit="checkpoint", disable=not progress):
        out[int(step)] = 100.0 * evaluate_checkpoint(run_dir, step=step, dataset=dataset)["accuracy"]
    return out
