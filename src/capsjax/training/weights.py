"""Trained weights in one compact file: a run's parameters (bfloat16 by default) with its config inside.

``export_weights(workdir, path)`` writes a msgpack file holding the format tag, the run's config
(JSON), its class names and the parameters, with the running batch statistics of a model with batch
norm (kept in float32 whatever ``dtype``: a few hundred numbers that every normalisation divides
by); ``load_weights(path)`` returns the model with float32 parameters, in evaluation mode,
``read_weights(path)`` the pieces (config, graph, parameters), ``fitting_params`` the parameters a
new run starts from (``capsjax train --init-weights``), ``average_weights`` one file holding the mean
of several files of one model (a uniform "model soup"). bfloat16 halves the file
(the paper's CapsNet: 16.4 MB instead of 32.9); accuracy must be measured from the stored file, after
that reduction: ``capsjax eval --weights FILE``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization

from capsjax.nn.interface import with_mode
from capsjax.training.checkpoint import restore_params
from capsjax.training.config import TrainConfig, from_dict, recorded_class_names, to_dict
from capsjax.training.state import create_model, split_model

FORMAT = "capsjax-weights-1"
STORAGE_DTYPES = ("bfloat16", "float32")


class Weights(NamedTuple):
    """What a weights file holds, ready to use: the config, the model's graph and float32 parameters
    (with the batch statistics of a model with batch norm: ``params`` is like ``TrainState.params``)."""

    config: TrainConfig
    graphdef: nnx.GraphDef
    params: nnx.State
    class_names: list[str] | None


def _storage_dict(params: nnx.State, dtype: str) -> dict:
    """``params`` as a pure dict for a file: parameters in ``dtype``, batch statistics in float32."""

    def for_storage(_, variable):
        kept = jnp.dtype(dtype) if isinstance(variable, nnx.Param) else np.float32
        return variable.replace(np.asarray(variable[...], kept))

    return nnx.to_pure_dict(nnx.map_state(for_storage, params))


def _write_weights(
    path: pathlib.Path, config: TrainConfig, class_names: list[str] | None, params: nnx.State, dtype: str, **extra
) -> dict:
    """Write a weights file at once (never half a file): the format tag, ``config`` and ``class_names``
    (JSON), ``extra`` fields (JSON) and ``params`` stored in ``dtype``; its path, size, SHA-256 and counts."""
    record = {
        "format": FORMAT,
        "config": json.dumps(to_dict(config)),
        "class_names": json.dumps(class_names),
        **{key: json.dumps(value) for key, value in extra.items()},
        "params": _storage_dict(params, dtype),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(serialization.msgpack_serialize(record))
    os.replace(partial, path)
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "dtype": dtype,
        "parameters": int(sum(x.size for x in jax.tree.leaves(nnx.filter_state(params, nnx.Param)))),
    }


def export_weights(
    workdir: str | os.PathLike, path: str | os.PathLike, *, step: int | None = None, dtype: str = "bfloat16"
) -> dict:
    """Write checkpoint ``step`` (default: the latest) of a run as a weights file.

    Returns:
      ``{"path", "bytes", "sha256", "dtype", "parameters"}`` (``parameters``: the number of
      ``nnx.Param`` scalars; batch statistics are stored but not counted).
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype: expected one of {STORAGE_DTYPES}, got {dtype!r}")
    workdir = pathlib.Path(workdir)
    config, _, params = restore_params(workdir, step=step)
    config = dataclasses.replace(config, init_weights=None)  # the model and recipe, not where a run began
    class_names = recorded_class_names(workdir / "config.json")
    return _write_weights(pathlib.Path(path), config, class_names, params, dtype)


def average_weights(sources: list[str | os.PathLike], output: str | os.PathLike, *, dtype: str = "bfloat16") -> dict:
    """Write one weights file holding the element-wise mean of several weights files of one model.

    A uniform "model soup" (Wortsman et al. 2022, "Model soups"): runs that continued from the same
    trained weights stay in one basin, where the mean of their parameters is a single model of the
    same size and cost. Every variable is averaged in float64 from the files' float32 values. Batch
    statistics are averaged too, which only approximates the averaged model's own (the paper's
    CapsNet has none; for a model with batch norm, re-estimate them). The new file keeps the first
    file's config and class names and lists the SHA-256 of its sources under ``averaged_from``.

    Args:
      sources: two or more weights files (``capsjax export``) of one model: the same ``model``, the
        same model config (``config.capsnet`` for a CapsNet), variables and class names; their
        training recipes may differ.
      output: the file to write (atomically).
      dtype: storage precision of the parameters, ``"bfloat16"`` or ``"float32"``.

    Returns:
      what ``export_weights`` returns, with ``averaged_from`` (the sources' SHA-256, in order).

    Raises:
      FileNotFoundError: a file is missing.
      ValueError: one line: fewer than two files, a file that is not weights, or a file whose model,
        model config or classes differ from the first file's (naming the first difference).

    Example::

        average_weights(["runs/a.msgpack", "runs/b.msgpack"], "weights/soup.msgpack")
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype: expected one of {STORAGE_DTYPES}, got {dtype!r}")
    if len(sources) < 2:
        raise ValueError(f"average_weights: give two or more weights files, got {len(sources)}")
    for source in sources:
        if not pathlib.Path(source).is_file():
            raise FileNotFoundError(f"{source}: no such weights file")
    sha256 = [hashlib.sha256(pathlib.Path(source).read_bytes()).hexdigest() for source in sources]
    members = [read_weights(source) for source in sources]
    for source, member in zip(sources[1:], members[1:], strict=True):
        difference = _model_difference(member, members[0])
        if difference is not None:
            raise ValueError(f"{source} does not fit {sources[0]}: {difference}")
    params = _mean_params([member.params for member in members])
    first = members[0]
    written = _write_weights(pathlib.Path(output), first.config, first.class_names, params, dtype, averaged_from=sha256)
    return {**written, "averaged_from": sha256}


def _model_difference(other: Weights, first: Weights) -> str | None:
    """The first difference that makes ``other`` another model than ``first`` (model name, model
    config field, class names), in words; None when they are one model. The variables need no check
    of their own: ``read_weights`` fitted each file's to its config, and the model is built from
    ``config.model`` and its config alone (``create_model``)."""
    if other.config.model != first.config.model:
        return f"a {other.config.model}, not a {first.config.model}"
    model = first.config.model
    mine, theirs = to_dict(getattr(other.config, model)), to_dict(getattr(first.config, model))
    for field in mine:
        if mine[field] != theirs.get(field):
            return f"config.{model}.{field} is {mine[field]!r}, not {theirs.get(field)!r}"
    if other.class_names != first.class_names:
        return "its class names differ"
    return None


def _mean_params(states: list[nnx.State]) -> nnx.State:
    """The element-wise mean of several states of one structure (float64 sums, float32 result), as a
    new state (the inputs are left as they are)."""
    pure = [nnx.to_pure_dict(state) for state in states]
    mean = jax.tree.map(lambda *xs: np.asarray(sum(np.asarray(x, np.float64) for x in xs) / len(xs), np.float32), *pure)
    params = jax.tree.map(lambda x: x, states[0])  # a copy, then filled in place
    nnx.replace_by_pure_dict(params, jax.tree.map(jnp.asarray, mean))
    return params


def read_weights(path: str | os.PathLike) -> Weights:
    """The config, graph and float32 parameters stored in a weights file.

    Raises:
      ValueError: the file is not a capsjax weights file, or its parameters do not fit its config.
    """
    path = pathlib.Path(path)
    try:
        record = serialization.msgpack_restore(path.read_bytes())
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: not a capsjax weights file ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path}: not a capsjax weights file (format tag {FORMAT!r} missing)")
    config = from_dict(TrainConfig, json.loads(record["config"]))
    graphdef, params = split_model(create_model(config))
    stored = jax.tree.map(lambda x: np.asarray(x, np.float32), record["params"])
    expected = nnx.to_pure_dict(params)
    if jax.tree.structure(stored) != jax.tree.structure(expected) or any(
        a.shape != b.shape for a, b in zip(jax.tree.leaves(stored), jax.tree.leaves(expected), strict=True)
    ):
        raise ValueError(f"{path}: its parameters do not match the model its config describes")
    nnx.replace_by_pure_dict(params, jax.tree.map(jnp.asarray, stored))
    return Weights(config, graphdef, params, json.loads(record["class_names"]))


def _first_mismatch(stored: dict, expected: dict) -> str | None:
    """The first variable (``"a/b/kernel"``) whose presence or shape differs between two pure dicts."""
    stored_leaves = dict(jax.tree_util.tree_flatten_with_path(stored)[0])
    expected_leaves = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    for key in sorted(set(stored_leaves) | set(expected_leaves), key=str):
        name = "/".join(str(getattr(k, "key", k)) for k in key)
        if key not in stored_leaves:
            return f"{name} is missing from the file"
        if key not in expected_leaves:
            return f"{name} is not in this run's model"
        if np.shape(stored_leaves[key]) != np.shape(expected_leaves[key]):
            return f"{name} has shape {np.shape(stored_leaves[key])}, this run's model {np.shape(expected_leaves[key])}"
    return None


def fitting_params(path: str | os.PathLike, params: nnx.State, *, model: str) -> nnx.State:
    """The float32 variables of a weights file, as a copy of ``params`` (a new ``model``'s variables,
    :func:`split_model`) holding the file's values: what a run started from trained weights begins
    with (``capsjax train --init-weights``).

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: one line naming the first variable that does not fit (another model, other sizes,
        another number of classes), or the file is not a weights file.
    """
    weights = read_weights(path)
    stored, expected = nnx.to_pure_dict(weights.params), nnx.to_pure_dict(params)
    mismatch = _first_mismatch(stored, expected)
    if mismatch is not None:
        raise ValueError(
            f"config.init_weights = {str(path)!r}: its {weights.config.model} does not fit "
            f"this run's {model}: {mismatch}"
        )
    fitted = jax.tree.map(lambda x: x, params)  # a copy, then filled in place
    nnx.replace_by_pure_dict(fitted, stored)
    return fitted


def load_weights(path: str | os.PathLike) -> nnx.Module:
    """The trained model stored in a weights file, with float32 parameters.

    Example (a file written by ``capsjax export``)::

        model = capsjax.load_weights("weights/capsnet_mnist.msgpack")
        scores = model(images, reconstruct=False).scores   # images [b, 28, 28, 1] in [0, 1]
    """
    weights = read_weights(path)
    return with_mode(nnx.merge(weights.graphdef, weights.params), training=False)
