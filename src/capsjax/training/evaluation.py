"""Evaluation: accuracy over a dataset, a checkpoint's metrics, and a model's outputs on uint8 images."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterable

import jax
import numpy as np
from flax import nnx

from capsjax.data.dataset import ArrayDataset
from capsjax.data.pipeline import eval_batches
from capsjax.nn.interface import ModelOutput, with_mode
from capsjax.ops.preprocess import to_float
from capsjax.training.checkpoint import restore_params
from capsjax.training.config import recorded_data_dir
from capsjax.training.datasets import load_data_split
from capsjax.training.sharding import Sharding
from capsjax.training.steps import make_eval_step
from capsjax.training.weights import read_weights


def evaluate(eval_step: Callable, params, batches: Iterable, sharding: Sharding) -> dict:
    """Accuracy and mean loss over eval batches ``(images, labels, valid)``."""
    totals = {"correct": 0, "loss_sum": 0.0, "count": 0}
    for batch in batches:
        out = eval_step(params, *sharding.batch(batch))
        for k in totals:
            totals[k] += np.asarray(out[k]).item()
    count = max(totals["count"], 1)
    accuracy = totals["correct"] / count
    return {
        "accuracy": accuracy,
        "error_percent": 100.0 * (1.0 - accuracy),
        "loss": totals["loss_sum"] / count,
        "count": totals["count"],
    }


def evaluate_checkpoint(
    workdir: str | pathlib.Path, *, data_dir=None, step: int | None = None, dataset: ArrayDataset | None = None
) -> dict:
    """Metrics of checkpoint ``step`` (default: the latest) of a run on ``dataset`` (default: the
    run's test split, as its config asks, from ``data_dir`` or else the folder the run recorded)."""
    config, graphdef, params = restore_params(workdir, step=step)
    sharding = Sharding.over_local_devices()
    if data_dir is None:
        data_dir = recorded_data_dir(pathlib.Path(workdir) / "config.json")
    if dataset is None:
        dataset = load_data_split(config, "test", data_dir)
    return evaluate(
        make_eval_step(graphdef, config),
        sharding.replicated(params),
        eval_batches(dataset, batch_size=config.eval_batch_size),
        sharding,
    )


def evaluate_weights(path, *, data_dir=None, dataset: ArrayDataset | None = None) -> dict:
    """Metrics of the model in a weights file (:mod:`capsjax.training.weights`) on ``dataset``
    (default: the test split its config names, found as ``capsjax train`` finds data)."""
    weights = read_weights(path)
    sharding = Sharding.over_local_devices()
    if dataset is None:
        dataset = load_data_split(weights.config, "test", data_dir)
    return evaluate(
        make_eval_step(weights.graphdef, weights.config),
        sharding.replicated(weights.params),
        eval_batches(dataset, batch_size=weights.config.eval_batch_size),
        sharding,
    )


@jax.jit
def _forward(model: nnx.Module, images: jax.Array, labels: jax.Array | None) -> ModelOutput:
    return model(to_float(images), labels)


def model_outputs(
    model: nnx.Module, images: np.ndarray, labels: np.ndarray | None = None, *, batch_size: int = 500
) -> ModelOutput:
    """A model's outputs on uint8 images ``[n, h, w, c]``, computed in jitted batches, as NumPy arrays.

    The model runs in evaluation mode (batch norm by its running averages), whatever its own mode.

    Args:
      model: a capsjax model (see :mod:`capsjax.nn.interface`).
      images: ``[n, height, width, channels]`` uint8.
      labels: optional labels ``[n]`` or ``[n, objects]`` that choose the decoded capsules.
      batch_size: images per compiled call (the last batch may be smaller).

    Returns:
      :class:`ModelOutput` whose present fields have a leading axis of ``n``.
    """
    model = with_mode(model, training=False)
    chunks = []
    for start in range(0, len(images), batch_size):
        chunk_labels = None if labels is None else labels[start : start + batch_size]
        chunks.append(jax.device_get(_forward(model, images[start : start + batch_size], chunk_labels)))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *chunks)
