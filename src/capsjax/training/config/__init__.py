"""Experiment configuration: frozen dataclasses, config files and ``--config.a.b=value`` overrides.

A config file is a Python file with ``get_config() -> TrainConfig`` (see ``experiments/configs``),
executed when it is loaded: load only config files you trust. Overrides address nested fields by
dotted path and are parsed to the field's type, so ``--config.capsnet.routing.num_iters=1`` or
``--config.epochs=2`` work without code edits.

Modules: ``schema`` (the dataclasses of a run, their rules, :func:`validate`, :func:`config_warnings`),
``overrides`` (``--config.a.b=value``) and ``files`` (config files and a run's ``config.json``).
"""

from capsjax.errors import ConfigError
from capsjax.nn.capsnet import CapsNetConfig, RoutingConfig
from capsjax.nn.cnn import CNNConfig
from capsjax.nn.efficient_capsnet import EfficientCapsNetConfig
from capsjax.nn.matrix_capsnet import MatrixCapsNetConfig
from capsjax.training.config.files import (
    ConfigFileNotFoundError,
    from_dict,
    load_config_file,
    read_config,
    recorded_class_names,
    recorded_data_dir,
    save_config,
    to_dict,
)
from capsjax.training.config.overrides import apply_overrides, override, split_overrides
from capsjax.training.config.schema import (
    DataConfig,
    LossConfig,
    OptimConfig,
    TrainConfig,
    check_augmentation,
    config_warnings,
    field_paths,
    field_rules,
    validate,
)

__all__ = [
    "CNNConfig",
    "CapsNetConfig",
    "ConfigError",
    "ConfigFileNotFoundError",
    "DataConfig",
    "EfficientCapsNetConfig",
    "LossConfig",
    "MatrixCapsNetConfig",
    "OptimConfig",
    "RoutingConfig",
    "TrainConfig",
    "apply_overrides",
    "check_augmentation",
    "config_warnings",
    "field_paths",
    "field_rules",
    "from_dict",
    "load_config_file",
    "override",
    "read_config",
    "recorded_class_names",
    "recorded_data_dir",
    "save_config",
    "split_overrides",
    "to_dict",
    "validate",
]
