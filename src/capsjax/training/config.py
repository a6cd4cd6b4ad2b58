"""Experiment configuration: frozen dataclasses, config files and ``--config.a.b=value`` overrides.

A config file is a Python file with ``get_config() -> TrainConfig`` (see ``experiments/configs``).
Overrides address nested fields by dotted path and are parsed to the field's type, so
``--config.capsnet.routing.num_iters=1`` or ``--config.epochs=2`` work without code edits.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import pathlib
import types
import typing
from collections.abc import Sequence

from capsjax.nn.capsnet import CapsNetConfig
from capsjax.nn.cnn import CNNConfig


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data to train on. ``None`` counts mean the whole split; ``canvas`` > 0 centres the
    images on a larger black canvas (40 for the affNIST-style experiment)."""

    name: str = "mnist"
    train_examples: int | None = None
    test_examples: int | None = None
    max_shift: int = 2
    canvas: int = 0


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam with an exponentially decaying learning rate (0.96 every 2000 steps, as the official code)."""

    learning_rate: float = 1e-3
    decay_rate: float = 0.96
    decay_steps: int = 2000
    staircase: bool = False


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Margin loss (eq. 4) plus the weighted reconstruction loss; ``recon_weight=0`` disables it."""

    m_plus: float = 0.9
    m_minus: float = 0.1
    lam: float = 0.5
    margin_reduction: str = "sum"
    recon_weight: float = 0.0005


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. ``model`` picks ``capsnet`` or ``cnn`` (the paper's baseline)."""

    model: str = "capsnet"
    capsnet: CapsNetConfig = CapsNetConfig()
    cnn: CNNConfig = CNNConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    batch_size: int = 128
    eval_batch_size: int = 500
    epochs: int = 1
    seed: int = 0
    checkpoint_every_steps: int = 500
    # Also evaluate on the test split (and checkpoint) every this many steps, besides each epoch's end.
    eval_every_steps: int | None = None
    # Checkpoints kept in the work directory (the newest ones); None keeps every one.
    keep_checkpoints: int | None = 2
    log_every_steps: int = 50
    prefetch: int = 2


def load_config_file(path: str | pathlib.Path) -> TrainConfig:
    """Import a config file and call its ``get_config()``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"capsjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {path} has no get_config() function")
    config = module.get_config()
    if not isinstance(config, TrainConfig):
        raise ValueError(f"{path}: get_config() must return a TrainConfig, got {type(config).__name__}")
    return config


def _parse_value(text: str, field_type, path: str):
    origin = typing.get_origin(field_type)
    args = [a for a in typing.get_args(field_type) if a is not type(None)]
    if text.lower() == "none" and type(None) in typing.get_args(field_type):
        return None
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        field_type, origin = args[0], typing.get_origin(args[0])
    if field_type is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"--config.{path}: expected true/false, got {text!r}")
    if field_type in (int, float, str):
        try:
            return field_type(text)
        except ValueError:
            raise ValueError(f"--config.{path}: expected {field_type.__name__}, got {text!r}") from None
    if origin is tuple:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"--config.{path}: expected a tuple like (512, 1024), got {text!r}") from None
        return tuple(value) if isinstance(value, list | tuple) else (value,)
    raise ValueError(f"--config.{path}: cannot override a field of type {field_type}")


def override(config, path: str, text: str):
    """Return ``config`` with the dotted field ``path`` set from the string ``text``."""
    head, _, rest = path.partition(".")
    fields = {f.name: f for f in dataclasses.fields(config)}
    if head not in fields:
        raise ValueError(f"--config.{path}: {type(config).__name__} has no field {head!r}; fields: {sorted(fields)}")
    current = getattr(config, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"--config.{path}: {head!r} is not a group of settings")
        return dataclasses.replace(config, **{head: override(current, rest, text)})
    hints = typing.get_type_hints(type(config))
    if dataclasses.is_dataclass(current):
        raise ValueError(f"--config.{path}: {head!r} is a group; set one of its fields")
    return dataclasses.replace(config, **{head: _parse_value(text, hints[head], path)})


def apply_overrides(config: TrainConfig, args: Sequence[str]) -> TrainConfig:
    """Apply ``--config.a.b=value`` (or ``--config.a.b value``) arguments in order."""
    args = list(args)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--config."):
            raise ValueError(f"unknown argument {arg!r} (overrides look like --config.epochs=2)")
        key, eq, value = arg[len("--config.") :].partition("=")
        if not eq:
            if not args:
                raise ValueError(f"{arg}: missing value")
            value = args.pop(0)
        config = override(config, key, value)
    return config


def to_dict(config) -> dict:
    """A JSON-ready dict of a config."""
    return dataclasses.asdict(config)


def from_dict(cls, data: dict):
    """Rebuild a (nested) config dataclass from :func:`to_dict`'s output."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            continue
        value, hint = data[field.name], hints[field.name]
        if dataclasses.is_dataclass(hint):
            value = from_dict(hint, value)
        elif typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)


def save_config(config: TrainConfig, path: pathlib.Path) -> None:
    path.write_text(json.dumps(to_dict(config), indent=2) + "\n")


def read_config(path: pathlib.Path) -> TrainConfig:
    return from_dict(TrainConfig, json.loads(path.read_text()))
