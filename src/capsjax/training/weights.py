"""Trained weights in one compact file: a run's parameters (bfloat16 by default) with its config inside.

``export_weights(workdir, path)`` writes a msgpack file holding the format tag, the run's config
(JSON), its class names and the parameters, with the running batch statistics of a model with batch
norm (kept in float32 whatever ``dtype``: a few hundred numbers that every normalisation divides
by); ``load_weights(path)`` returns the model with float32 parameters, in evaluation mode,
``read_weights(path)`` the pieces (config, graph, parameters), ``fitting_params`` the parameters a
new run starts from (``capsjax train --init-weights``), ``read_teachers`` the models a run distils
from, ``average_weights`` one file holding the mean of several files of one model (a uniform "model
soup"), ``write_weights`` a file from a config and variables. bfloat16 halves the file (the paper's
CapsNet: 16.4 MB instead of 32.9); accuracy must be measured from the stored file, after that
reduction: ``capsjax eval --weights FILE``.

A weights file is input from anywhere: reading one checks it whole before anything the size of its
model is allocated, and refuses it with one :class:`~capsjax.errors.WeightsError` line naming the
file. That reading lives in :mod:`capsjax.training.weights_file` (``read_weights``, ``Weights``,
``WeightsNotFoundError``, ``parameter_limit``, ``FORMAT``, ...); this module re-exports it, so
import every name from here. Files are written atomically (:mod:`capsjax.data.atomic`): a full disk
leaves the previous file and no temporary one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization

from capsjax.data.atomic import write_bytes
from capsjax.errors import ConfigError, UsageError, WeightsError, first_line
from capsjax.nn.interface import with_mode
from capsjax.training.checkpoint import restore_params
from capsjax.training.config import TrainConfig, recorded_class_names, to_dict
from capsjax.training.steps import teacher_scores
from capsjax.training.weights_file import (
    FORMAT,
    MAX_PARAMETERS,
    STORAGE_DTYPES,
    Weights,
    WeightsNotFoundError,
    _path_name,
    parameter_limit,
    read_weights,
)


def _storage_dict(params: nnx.State, dtype: str) -> dict:
    """``params`` as a pure dict for a file: parameters in ``dtype``, batch statistics in float32."""

    def for_storage(_, variable):
        kept = jnp.dtype(dtype) if isinstance(variable, nnx.Param) else np.float32
        return variable.replace(np.asarray(variable[...], kept))

    return nnx.to_pure_dict(nnx.map_state(for_storage, params))


def _check_dtype(dtype: str) -> None:
    if dtype not in STORAGE_DTYPES:
        raise UsageError(f"dtype: expected one of {STORAGE_DTYPES}, got {dtype!r}")


def write_weights(
    path: str | os.PathLike,
    config: TrainConfig,
    params: nnx.State,
    *,
    class_names: list[str] | None = None,
    dtype: str = "bfloat16",
    **extra,
) -> dict:
    """Write a model's variables with its config as a weights file, atomically (never half a file).

    Args:
      path: the file to write; its folder is made if needed.
      config: the config of the model ``params`` belong to (stored as JSON).
      params: the model's variables (:func:`~capsjax.training.state.split_model`, like
        ``TrainState.params``): parameters stored in ``dtype``, batch statistics in float32.
      class_names: label k's name, one per class, or None.
      dtype: storage precision of the parameters, ``"bfloat16"`` or ``"float32"``.
      **extra: more fields to record beside them (stored as JSON), e.g. ``averaged_from``.

    Returns:
      ``{"path", "bytes", "sha256", "dtype", "parameters"}`` (``parameters``: the number of
      ``nnx.Param`` scalars; batch statistics are stored but not counted).

    Raises:
      UsageError: ``dtype`` is not a storage dtype.
      StorageError: the file cannot be written (a full disk, no permission), naming ``path``; a
        previous file there is kept and no temporary file is left.
    """
    _check_dtype(dtype)
    record = {
        "format": FORMAT,
        "config": json.dumps(to_dict(config)),
        "class_names": json.dumps(class_names),
        **{key: json.dumps(value) for key, value in extra.items()},
        "params": _storage_dict(params, dtype),
    }
    data = serialization.msgpack_serialize(record)
    write_bytes(path, data)
    return {
        "path": str(path),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "dtype": dtype,
        "parameters": int(sum(x.size for x in jax.tree.leaves(nnx.filter_state(params, nnx.Param)))),
    }


def export_weights(
    workdir: str | os.PathLike, path: str | os.PathLike, *, step: int | None = None, dtype: str = "bfloat16"
) -> dict:
    """Write checkpoint ``step`` (default: the latest) of a run as a weights file (:func:`write_weights`).

    Returns:
      ``{"path", "bytes", "sha256", "dtype", "parameters"}`` (``parameters``: the number of
      ``nnx.Param`` scalars; batch statistics are stored but not counted).

    Raises:
      UsageError: ``dtype`` is not a storage dtype.
      StorageError: the file cannot be written, naming ``path`` (the previous file, if any, is kept).
    """
    _check_dtype(dtype)
    workdir = pathlib.Path(workdir)
    config, _, params = restore_params(workdir, step=step)
    config = dataclasses.replace(config, init_weights=None)  # the model and recipe, not where a run began
    class_names = recorded_class_names(workdir / "config.json")
    return write_weights(path, config, params, class_names=class_names, dtype=dtype)


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
      WeightsNotFoundError: a file is missing (a ``FileNotFoundError``).
      UsageError: fewer than two files, or ``dtype`` is not a storage dtype.
      WeightsError: one line: a file that is not weights (see :func:`read_weights`), or a file whose
        model, model config or classes differ from the first file's (naming the first difference).
      StorageError: ``output`` cannot be written, naming it (the previous file, if any, is kept).

    Example::

        average_weights(["runs/a.msgpack", "runs/b.msgpack"], "weights/soup.msgpack")
    """
    _check_dtype(dtype)
    if len(sources) < 2:
        raise UsageError(f"average_weights: give two or more weights files, got {len(sources)}")
    for source in sources:
        if not pathlib.Path(source).is_file():
            raise WeightsNotFoundError(f"{source}: no such weights file")
    sha256 = [hashlib.sha256(pathlib.Path(source).read_bytes()).hexdigest() for source in sources]
    members = [read_weights(source) for source in sources]
    for source, member in zip(sources[1:], members[1:], strict=True):
        difference = _model_difference(member, members[0])
        if difference is not None:
            raise WeightsError(f"{source} does not fit {sources[0]}: {difference}")
    params = _mean_params([member.params for member in members])
    first = members[0]
    written = write_weights(
        output, first.config, params, class_names=first.class_names, dtype=dtype, averaged_from=sha256
    )
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


def _first_mismatch(stored: dict, expected: dict) -> str | None:
    """The first variable (``"a/b/kernel"``) whose presence or shape differs between two pure dicts."""
    stored_leaves = dict(jax.tree_util.tree_flatten_with_path(stored)[0])
    expected_leaves = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    for key in sorted(set(stored_leaves) | set(expected_leaves), key=str):
        name = _path_name(key)
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
      WeightsNotFoundError: no file at ``path`` (a ``FileNotFoundError``).
      WeightsError: one line naming the first variable that does not fit (another model, other sizes,
        another number of classes), or what :func:`read_weights` refuses in the file.
    """
    weights = read_weights(path)
    stored, expected = nnx.to_pure_dict(weights.params), nnx.to_pure_dict(params)
    mismatch = _first_mismatch(stored, expected)
    if mismatch is not None:
        raise WeightsError(
            f"config.init_weights = {str(path)!r}: its {weights.config.model} does not fit "
            f"this run's {model}: {mismatch}"
        )
    fitted = jax.tree.map(lambda x: x, params)  # a copy, then filled in place
    nnx.replace_by_pure_dict(fitted, stored)
    return fitted


def read_teachers(
    config: TrainConfig, graphdef: nnx.GraphDef, abstract_params: nnx.State
) -> tuple[tuple[nnx.GraphDef, nnx.State], ...]:
    """The models of ``config.teachers`` as ``(graph, params)``, checked against this run's model.

    Raises:
      ConfigError: one line, when a file is missing or its model does not give class scores of the
        shape this run's model gives for the run's images.
    """
    image_shape = getattr(config, config.model).image_shape
    images = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)

    def scores_shape(graph, params) -> tuple:
        return jax.eval_shape(lambda p, x: teacher_scores([(graph, p)], x), params, images).shape

    wanted = scores_shape(graphdef, abstract_params)
    teachers = []
    for path in config.teachers:
        if not pathlib.Path(path).is_file():
            raise ConfigError(f"config.teachers: {path!r}: no such file")
        weights = read_weights(path)
        try:
            given = scores_shape(weights.graphdef, weights.params)
        except (ValueError, TypeError) as err:
            raise ConfigError(
                f"config.teachers: {path}: its {weights.config.model} cannot take this run's images "
                f"{tuple(image_shape)}: {first_line(err)}"
            ) from None
        if given != wanted:
            raise ConfigError(
                f"config.teachers: {path}: its {weights.config.model} gives class scores of shape {given} for "
                f"images {tuple(image_shape)}, this run's model {wanted}"
            )
        teachers.append((weights.graphdef, weights.params))
    return tuple(teachers)


def load_weights(path: str | os.PathLike) -> nnx.Module:
    """The trained model stored in a weights file, with float32 parameters, in evaluation mode.

    The file is checked whole before the model is built (:func:`read_weights`, which says what it
    raises: a missing file, a damaged one, a config that describes another or an oversized model,
    non-finite values).

    Example (a file written by ``capsjax export``)::

        model = capsjax.load_weights("weights/capsnet_mnist.msgpack")
        scores = model(images, reconstruct=False).scores   # images [b, 28, 28, 1] in [0, 1]
    """
    weights = read_weights(path)
    return with_mode(nnx.merge(weights.graphdef, weights.params), training=False)


# Public names, those of the module they come from included, in the order the API reference shows them.
__all__ = [
    "FORMAT",
    "STORAGE_DTYPES",
    "MAX_PARAMETERS",
    "WeightsNotFoundError",
    "Weights",
    "write_weights",
    "export_weights",
    "average_weights",
    "read_weights",
    "parameter_limit",
    "fitting_params",
    "read_teachers",
    "load_weights",
]
