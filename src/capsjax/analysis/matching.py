"""Comparing models at the same clean accuracy (early stopping at a common level), as Sabour et al. do for affNIST."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

from tqdm.auto import tqdm

from capsjax.data.dataset import ArrayDataset
from capsjax.training.evaluation import evaluate_checkpoint
from capsjax.training.metrics import read_metrics


def accuracy_history(run_dir) -> dict[int, float]:
    """``{step: test accuracy}`` of every evaluation a run logged (the last record of a step wins,
    as a resumed run may log a step twice)."""
    return {
        int(r["step"]): r["test/accuracy"]
        for r in read_metrics(pathlib.Path(run_dir) / "metrics.jsonl")
        if "test/accuracy" in r
    }


def match_accuracy(
    histories: Mapping[str, Mapping[int, float]], *, level: float | None = None
) -> tuple[float, dict[str, int]]:
    """Early stopping at a common accuracy: the point where several models are equally good.

    The target is ``level``, by default the lowest of the models' best accuracies (the level every
    model reached); each model gets its evaluated step whose accuracy is closest to it, the earliest
    on a tie (a model that never reached the target: its best step). Matching on
    test accuracy is what Sabour et al. (2017, sec. 5.2) did for affNIST; the accuracies compared
    afterwards are on another test set.

    Args:
      histories: per model, ``{step: accuracy}`` (see :func:`accuracy_history`).
      level: the accuracy to match, e.g. one model's best (Hinton et al. 2018 stop the capsule
        models at the CNN's); None for the lowest best.

    Returns:
      ``(target, {model: step})``.

    Example:
      >>> match_accuracy({"a": {10: 0.90, 20: 0.97, 30: 0.98}, "b": {10: 0.93, 20: 0.96}})
      (0.96, {'a': 20, 'b': 20})
    """
    if not histories or not all(histories.values()):
        raise ValueError("histories: every model needs at least one evaluated step")
    target = min(max(history.values()) for history in histories.values()) if level is None else level
    steps = {
        name: min(history, key=lambda step: (abs(history[step] - target), step)) for name, history in histories.items()
    }
    return target, steps


def evaluate_checkpoints(
    run_dir, dataset: ArrayDataset, steps: Sequence[int], *, progress: bool = True
) -> dict[int, float]:
    """``{step: accuracy %}`` of a run's checkpoints ``steps`` on ``dataset``."""
    out = {}
    for step in tqdm(steps, desc=f"testing {run_dir} on {dataset.source}", unit="checkpoint", disable=not progress):
        out[int(step)] = 100.0 * evaluate_checkpoint(run_dir, step=step, dataset=dataset)["accuracy"]
    return out
