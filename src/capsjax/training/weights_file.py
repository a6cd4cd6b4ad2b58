"""Reading one weights file: its record, its config (strictly), its class names, and its variables,
compared with those of the model its config describes and checked finite.

A weights file is input from anywhere: :func:`read_weights` checks it whole (its config, the shapes
its config implies, every value finite) before anything the size of its model is allocated, and
refuses it with one :class:`~capsjax.errors.WeightsError` line naming the file. The format tag, the
storage dtypes and the size limit (:func:`parameter_limit`) live here too. Writing, exporting,
averaging and loading weights files is :mod:`capsjax.training.weights`, which re-exports every public
name of this module (import them from there).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import typing
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization

from capsjax.errors import ConfigError, StorageError, WeightsError, first_line
from capsjax.training.config import TrainConfig, from_dict, validate
from capsjax.training.state import create_model, split_model

FORMAT = "capsjax-weights-1"
STORAGE_DTYPES = ("bfloat16", "float32")
_STORED_DTYPES = tuple(np.dtype(jnp.dtype(name)) for name in STORAGE_DTYPES)
MAX_PARAMETERS = 2**31
"""The most scalars a weights file's model may have on any machine (8 GiB in float32; the paper's
CapsNet has 8.2 million, its baseline CNN 35.4 million): a config asking for more is refused before
anything is built (:func:`parameter_limit`)."""
# What msgpack (its decoding errors derive from ValueError) and flax's array decoding raise on bytes
# that are not a weights file, or are cut short.
_UNREADABLE = (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError)


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No weights file at the path given."""


class Weights(NamedTuple):
    """What a weights file holds, ready to use: the config, the model's graph and float32 parameters
    (with the batch statistics of a model with batch norm: ``params`` is like ``TrainState.params``)."""

    config: TrainConfig
    graphdef: nnx.GraphDef
    params: nnx.State
    class_names: list[str] | None


def read_weights(path: str | os.PathLike) -> Weights:
    """The config, graph and float32 parameters stored in a weights file, checked before anything is built.

    The file is checked in this order, and nothing the size of the model is allocated before the last
    check: it is a capsjax weights file (msgpack with the format tag, a ``"config"`` and ``"params"``);
    its config names only settings that exist (at every level) and passes
    :func:`capsjax.training.config.validate`; its class names, if any, are one per class; the model
    its config describes can be built, and holds at most :func:`parameter_limit` scalars (its
    variables' shapes come from ``nnx.eval_shape``, which allocates nothing); every variable of that
    model is in the file with the same shape (bfloat16 or float32), and no other; and every stored
    value is finite. The model's graph is the abstract model's: no random initialisation is made.

    Raises:
      WeightsNotFoundError: no file at ``path`` (a ``FileNotFoundError``).
      WeightsError: one line naming the file and what is wrong: not a weights file (not msgpack,
        cut short, no format tag), no config, an unknown config setting (its dotted name, e.g.
        ``config.capsnet.routing.num_iterz``), a config value the config's validation refuses (its
        field), a model too large for this machine, the first variable that is missing, unexpected,
        of another shape or dtype, or not finite (its path, e.g. ``decoder/layers/0/kernel``).
      StorageError: the file exists but cannot be read.
    """
    path = pathlib.Path(path)
    record = _read_record(path)
    config = _read_config(path, record["config"])
    class_names = _read_class_names(path, record.get("class_names", "null"), config)
    graphdef, params = _abstract_variables(path, config)
    nnx.replace_by_pure_dict(params, _stored_variables(path, record["params"], nnx.to_pure_dict(params)))
    return Weights(config, graphdef, params, class_names)


def parameter_limit() -> int:
    """The most scalars (parameters and batch statistics) the model of a weights file may have:
    :data:`MAX_PARAMETERS`, or fewer where this machine's memory cannot hold them in float32."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return MAX_PARAMETERS
    return min(MAX_PARAMETERS, memory // 4)


def _read_record(path: pathlib.Path) -> dict:
    """The msgpack record of a weights file, with its format tag, ``"config"`` and ``"params"`` present."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsNotFoundError(f"{path}: no such weights file") from None
    except OSError as err:
        raise StorageError(err.errno, f"cannot read the weights file ({err.strerror or err})", str(path)) from None
    try:
        record = serialization.msgpack_restore(data)
    except _UNREADABLE as err:
        raise WeightsError(f"{path}: not a capsjax weights file ({first_line(err)})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a capsjax weights file (format tag {FORMAT!r} missing)")
    for key in ("config", "params"):
        if key not in record:
            raise WeightsError(f"{path}: a capsjax weights file without its {key!r}; export it again")
    return record


def _read_config(path: pathlib.Path, text) -> TrainConfig:
    """The validated config of a weights file from its JSON ``text``; unknown settings are refused."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError) as err:
        raise WeightsError(f"{path}: its config is not JSON text ({first_line(err)})") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: its config is not a JSON object but {type(data).__name__}")
    problem = _config_problem(TrainConfig, data, "config")
    if problem is not None:
        raise WeightsError(f"{path}: {problem}")
    try:
        return validate(from_dict(TrainConfig, data))
    except ConfigError as err:
        raise WeightsError(f"{path}: {err}") from None
    except (TypeError, ValueError) as err:
        raise WeightsError(f"{path}: its config cannot be read ({first_line(err)})") from None


def _config_problem(cls, data: dict, prefix: str) -> str | None:
    """The first key of ``data`` (a config record of dataclass ``cls``, at dotted ``prefix``) that
    ``cls`` has no field for, or that holds no JSON object where a group of settings belongs or no
    list where a tuple does, in words; None when there is none. Missing keys are allowed: a file
    written before a setting existed gets its default."""
    hints = typing.get_type_hints(cls)
    fields = {field.name for field in dataclasses.fields(cls)}
    for key, value in data.items():
        name = f"{prefix}.{key}"
        if key not in fields:
            return f"{name} is not a setting of {cls.__name__}: remove it (a file of another capsjax version?)"
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                return f"{name} = {_short(value)}: expected a group of settings (a JSON object)"
            problem = _config_problem(hint, value, name)
            if problem is not None:
                return problem
        elif typing.get_origin(hint) is tuple and not isinstance(value, list):
            return f"{name} = {_short(value)}: expected a list"
    return None


def _read_class_names(path: pathlib.Path, text, config: TrainConfig) -> list[str] | None:
    """The class names of a weights file (None, or one name per class of its model)."""
    try:
        names = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        names = ...  # neither None nor a list: refused below
    classes = getattr(config, config.model).num_classes
    if names is not None and not (
        isinstance(names, list) and len(names) == classes and all(isinstance(name, str) for name in names)
    ):
        raise WeightsError(f"{path}: its class_names are not {classes} names, one per class of its {config.model}")
    return names


def _abstract_variables(path: pathlib.Path, config: TrainConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """The graph and the abstract variables (``jax.ShapeDtypeStruct`` values) of the model ``config``
    describes, from ``nnx.eval_shape``: nothing is allocated; refused above :func:`parameter_limit`."""
    try:
        graphdef, params = split_model(nnx.eval_shape(lambda: create_model(config)))
    except (TypeError, ValueError, OverflowError) as err:
        raise WeightsError(
            f"{path}: its config describes no {config.model} that can be built ({first_line(err)})"
        ) from None
    count = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
    limit = parameter_limit()
    if count > limit:
        raise WeightsError(
            f"{path}: its config describes a {config.model} of {count:,} parameters, more than the {limit:,} "
            "this machine can hold: the file is damaged, or made for a larger machine"
        )
    return graphdef, params


def _stored_variables(path: pathlib.Path, stored, expected: dict) -> dict:
    """The file's variables as float32 arrays in the structure of ``expected`` (the abstract model's
    pure dict), once every variable is there with its shape, in a storage dtype, and finite."""
    if not isinstance(stored, dict):
        raise WeightsError(f"{path}: its params are not a tree of arrays but {type(stored).__name__}")
    stored = _flat(stored)
    wanted = {_path_name(key): leaf for key, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]}
    for name in sorted(stored.keys() | wanted.keys()):
        problem = _variable_problem(name, stored.get(name, _ABSENT), wanted.get(name, _ABSENT))
        if problem is not None:
            raise WeightsError(f"{path}: its parameters do not match the model its config describes: {problem}")
    values = {}
    for name in sorted(stored):
        value = np.asarray(stored[name], np.float32)
        finite = np.isfinite(value)
        if not finite.all():
            raise WeightsError(
                f"{path}: {name} holds {value.size - int(finite.sum())} non-finite values (NaN or inf) of "
                f"{value.size}: the weights are damaged; export them again from a checkpoint with finite values"
            )
        values[name] = value
    return jax.tree_util.tree_map_with_path(lambda key, _: jnp.asarray(values[_path_name(key)]), expected)


_ABSENT = object()


def _variable_problem(name: str, stored, wanted) -> str | None:
    """What is wrong with stored variable ``name`` (an array, or ``_ABSENT``) given the model's abstract
    one (a ``jax.ShapeDtypeStruct``, or ``_ABSENT`` when the model has none); None when it fits."""
    if stored is _ABSENT:
        return f"{name} {tuple(wanted.shape)} is missing from the file"
    if wanted is _ABSENT:
        return f"{name} is in the file but not in the model"
    if not isinstance(stored, np.ndarray | np.generic):
        return f"{name} is not an array but {type(stored).__name__}"
    if stored.dtype not in _STORED_DTYPES:
        return f"{name} has dtype {stored.dtype}, expected one of {STORAGE_DTYPES}"
    if tuple(stored.shape) != tuple(wanted.shape):
        return f"{name} has shape {tuple(stored.shape)} in the file, {tuple(wanted.shape)} in the model"
    return None


def _flat(tree: dict, prefix: str = "") -> dict:
    """The leaves of a nested dict by path, ``{"decoder/layers/0/kernel": leaf}`` (an empty dict has none)."""
    leaves = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            leaves |= _flat(value, f"{prefix}{key}/")
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def _path_name(key_path) -> str:
    """``"a/b/kernel"`` for a JAX key path."""
    return "/".join(str(getattr(key, "key", getattr(key, "idx", key))) for key in key_path)


def _short(value, width: int = 60) -> str:
    """``repr(value)``, cut to ``width`` characters."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
