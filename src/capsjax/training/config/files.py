"""Config files: a Python file with ``get_config()`` to start a run, a run's ``config.json`` to continue it.

A config file is Python, executed when it is loaded (as ml_collections config files are): load only
config files you trust. A run writes its config as ``config.json`` in its work directory, with the
data folder and class names it found beside the fields; ``capsjax train --resume --workdir DIR``
continues from it. Every problem with either file is one :class:`~capsjax.errors.ConfigError` line
naming the file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import pathlib
import typing
from collections.abc import Sequence

from capsjax.data.atomic import write_json
from capsjax.errors import ConfigError, StorageError, first_line
from capsjax.training.config.schema import TrainConfig, validate

RECORDED = ("data_dir", "class_names")
"""What ``config.json`` records beside the config's fields (:func:`save_config`)."""


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """A config file, or a run's ``config.json``, that is not where it was asked for."""


def _first_line(err: BaseException) -> str:
    """What a user's config file raised: its type and the first line of its message."""
    return f"{type(err).__name__}: {first_line(err)}" if str(err).strip() else type(err).__name__


def _check_python_file(path: pathlib.Path) -> None:
    """A config file exists and is a ``.py`` file; a run's ``config.json`` gets told how to continue it."""
    if not path.is_file():
        raise ConfigFileNotFoundError(f"config file not found: {path}")
    if path.suffix == ".json":
        raise ConfigError(
            f"{path}: a config file is a Python file with get_config(); a run's config.json is continued "
            f"with --resume --workdir {path.parent}"
        )
    if path.suffix != ".py":
        raise ConfigError(f"{path}: expected a Python config file (.py) with get_config()")


def _run_module(path: pathlib.Path):
    """Execute the config file as a module; its errors become one line naming the file (and the line)."""
    spec = importlib.util.spec_from_file_location(f"capsjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        where = f"{err.filename or path}:{err.lineno}" if err.lineno else str(err.filename or path)
        raise ConfigError(f"{where}: syntax error: {err.msg}") from err
    except Exception as err:  # the file's own code: any error is the file's
        raise ConfigError(f"{path}: loading it raised {_first_line(err)}") from err
    return module


def load_config_file(path: str | pathlib.Path) -> TrainConfig:
    """Execute a config file and return its ``get_config()``.

    The file is Python, run as it is loaded: load only config files you trust.

    Raises:
      ConfigFileNotFoundError: no such file (also a ``FileNotFoundError``).
      ConfigError: one line naming the file: not a ``.py`` file (a run's ``config.json`` says to
        continue it with ``--resume``), a syntax error (with its line), an error raised while loading
        it or by ``get_config()``, no ``get_config()``, or a result that is not a ``TrainConfig``.
    """
    path = pathlib.Path(path)
    _check_python_file(path)
    module = _run_module(path)
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"{path}: no get_config() function (a config file defines get_config() -> TrainConfig)")
    try:
        config = module.get_config()
    except Exception as err:  # the file's own code
        raise ConfigError(f"{path}: get_config() raised {_first_line(err)}") from err
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"{path}: get_config() must return a TrainConfig, got {type(config).__name__}")
    return config


def to_dict(config) -> dict:
    """A JSON-ready dict of a config."""
    return dataclasses.asdict(config)


def _from_value(hint, value, key: str, strict: bool):
    """``value`` of the field whose type is ``hint`` (a config group, a tuple, or a plain value)."""
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a group of fields (an object), got {value!r}")
        return from_dict(hint, value, strict=strict, prefix=f"{key}.")
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


def from_dict(cls, data: dict, *, strict: bool = True, prefix: str = ""):
    """Rebuild a (nested) config dataclass from :func:`to_dict`'s output; fields it lacks keep their defaults.

    Args:
      cls: the config class, e.g. :class:`TrainConfig`.
      data: field names to values, groups as nested dicts and tuples as lists.
      strict: refuse a key that names no field (False skips it).
      prefix: the dotted path of ``data`` within the whole config, for messages.

    Raises:
      ConfigError: one line naming the dotted key: a key that names no field (``strict``), or a group
        or tuple that is not a dict or list. The values themselves are checked by :func:`validate`.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a group of fields (an object), got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if strict and unknown:
        raise ConfigError(f"unknown key {prefix + unknown[0]!r}; {cls.__name__} has the keys {names}")
    kwargs = {name: _from_value(hints[name], data[name], prefix + name, strict) for name in names if name in data}
    return cls(**kwargs)


def save_config(
    config: TrainConfig, path: pathlib.Path, *, data_dir: str | None = None, class_names: Sequence[str] | None = None
) -> None:
    """Write ``config`` as JSON, atomically; ``data_dir`` (the folder the data came from) and ``class_names``
    (label k's name, for image-folder data) are recorded beside its fields.

    Raises:
      StorageError: the file cannot be written, naming it.
    """
    record = to_dict(config) | ({"data_dir": data_dir} if data_dir else {})
    record |= {"class_names": list(class_names)} if class_names else {}
    write_json(path, record)


def _read_record(path: pathlib.Path) -> dict:
    """``config.json`` as a dict.

    Raises:
      ConfigFileNotFoundError: no such file.
      StorageError: the file cannot be read.
      ConfigError: not JSON, or not a JSON object.
    """
    try:
        text = pathlib.Path(path).read_text()
    except FileNotFoundError:
        raise ConfigFileNotFoundError(f"{path}: no such file (a run writes its config.json when it starts)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise StorageError(f"{path}: cannot read the file ({getattr(err, 'strerror', None) or err})") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path}: expected a JSON object of config fields, got {type(record).__name__}")
    return record


def recorded_data_dir(path: pathlib.Path) -> str | None:
    """The data folder a work directory's ``config.json`` recorded (None if it holds none)."""
    return _read_record(path).get("data_dir")


def recorded_class_names(path: pathlib.Path) -> list[str] | None:
    """The class names a work directory's ``config.json`` recorded (None if it holds none)."""
    return _read_record(path).get("class_names")


def read_config(path: pathlib.Path) -> TrainConfig:
    """The config a run's ``config.json`` holds (:func:`save_config`), checked as a new one is.

    Raises:
      ConfigFileNotFoundError: no such file.
      ConfigError: one line naming the file: not JSON, an unknown key (named by its dotted path), a
        value of the wrong type, or a value :func:`validate` refuses.
    """
    record = {key: value for key, value in _read_record(path).items() if key not in RECORDED}
    try:
        return validate(from_dict(TrainConfig, record))
    except (ConfigError, TypeError) as err:
        raise ConfigError(f"{path}: {err}") from None
