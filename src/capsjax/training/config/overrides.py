"""``--config.a.b=value`` command-line overrides of a config's nested fields.

Each override addresses a field by its dotted path and is parsed to the field's type, so
``--config.capsnet.routing.num_iters=1`` or ``--config.epochs=2`` work without code edits; the
result is validated once all are applied.

Example:
  >>> from capsjax.training.config import TrainConfig, apply_overrides
  >>> config = apply_overrides(TrainConfig(), ["--config.epochs=2", "--config.capsnet.decoder_hidden=(64, 128)"])
  >>> config.epochs, config.capsnet.decoder_hidden
  (2, (64, 128))
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from collections.abc import Sequence

from capsjax.errors import ConfigError, UsageError
from capsjax.training.config.schema import TrainConfig, validate

PREFIX = "--config."
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _parse_bool(text: str, path: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ConfigError(f"{PREFIX}{path}: expected true/false, got {text!r}")


def _parse_tuple(text: str, path: str) -> tuple:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ConfigError(f"{PREFIX}{path}: expected a tuple like (512, 1024), got {text!r}") from None
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _parse_value(text: str, field_type, path: str):
    """``text`` as a value of ``field_type`` (bool, int, float, str, a tuple, or one of them or None)."""
    options = typing.get_args(field_type)
    if text.lower() == "none" and type(None) in options:
        return None
    if typing.get_origin(field_type) in (typing.Union, types.UnionType):
        rest = [option for option in options if option is not type(None)]
        if len(rest) == 1:
            field_type = rest[0]
    if field_type is bool:
        return _parse_bool(text, path)
    if field_type in (int, float, str):
        try:
            return field_type(text)
        except ValueError:
            raise ConfigError(f"{PREFIX}{path}: expected {field_type.__name__}, got {text!r}") from None
    if typing.get_origin(field_type) is tuple:
        return _parse_tuple(text, path)
    raise ConfigError(f"{PREFIX}{path}: cannot override a field of type {field_type}")


def override(config, path: str, text: str):
    """Return ``config`` with the dotted field ``path`` set from the string ``text``.

    Raises:
      ConfigError: one line naming ``--config.<path>``: no such field (listing the fields there are), a
        group where a field was expected or the other way round, or a value that does not parse.
    """
    return _set(config, path.split("."), text, path)


def _set(config, names: list[str], text: str, path: str):
    """``config`` with the field that ``names`` lead to set from ``text`` (``path``: the whole dotted path)."""
    head, rest = names[0], names[1:]
    fields = [field.name for field in dataclasses.fields(config)]
    if head not in fields:
        raise ConfigError(f"{PREFIX}{path}: {type(config).__name__} has no field {head!r}; fields: {sorted(fields)}")
    current = getattr(config, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ConfigError(f"{PREFIX}{path}: {head!r} is not a group of settings")
        return dataclasses.replace(config, **{head: _set(current, rest, text, path)})
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"{PREFIX}{path}: {head!r} is a group; set one of its fields")
    field_type = typing.get_type_hints(type(config))[head]
    return dataclasses.replace(config, **{head: _parse_value(text, field_type, path)})


def split_overrides(args: Sequence[str]) -> list[tuple[str, str]]:
    """``--config.a.b=value`` (or ``--config.a.b value``) arguments as ``(path, value)`` pairs, in order.

    Raises:
      UsageError: an argument that is not an override, or one whose value is missing.
    """
    args, pairs = list(args), []
    while args:
        arg = args.pop(0)
        if not arg.startswith(PREFIX):
            raise UsageError(f"unknown argument {arg!r} (overrides look like --config.epochs=2)")
        key, eq, value = arg[len(PREFIX) :].partition("=")
        if not eq:
            if not args:
                raise UsageError(f"{arg}: missing value")
            value = args.pop(0)
        pairs.append((key, value))
    return pairs


def apply_overrides(config: TrainConfig, args: Sequence[str]) -> TrainConfig:
    """Apply ``--config.a.b=value`` (or ``--config.a.b value``) arguments in order, then validate.

    Raises:
      UsageError: an argument that is not an override.
      ConfigError: an override that names no field or does not parse, or a result that does not validate.
    """
    for path, value in split_overrides(args):
        config = override(config, path, value)
    return validate(config)
