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
import math
import pathlib
import types
import typing
from collections.abc import Sequence

from capsjax.data.registry import DATASETS
from capsjax.errors import ConfigError
from capsjax.nn.capsnet import EM_COSTS, SCORES, CapsNetConfig
from capsjax.nn.cnn import CNNConfig
from capsjax.nn.efficient_capsnet import EfficientCapsNetConfig
from capsjax.nn.layers import KERNEL_INITS
from capsjax.nn.matrix_capsnet import MatrixCapsNetConfig
from capsjax.nn.registry import MODELS
from capsjax.ops.convolution import LOWERINGS
from capsjax.ops.routing import ROUTING_FUNCTIONS


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data to train on. ``None`` counts mean the whole split; ``canvas`` > 0 centres the
    images on a larger black canvas (40 for the affNIST-style experiment).

    ``path``: a dataset in files instead of a named one (``--data PATH``): an image folder, a
    ``.npz``, CIFAR, SVHN or smallNORB (:mod:`capsjax.data.file_formats`); ``test_fraction`` splits
    an image folder without train/ and test/ (seeded by ``seed`` of the run). ``resize`` > 0
    resizes every image to ``resize x resize`` when loaded; ``crop`` > 0 trains on random
    ``crop x crop`` windows (on device) and tests on the centre one (smallNORB's recipe: resize 48,
    crop 32).

    Training images are augmented on device (test images never are): random shifts of up to
    ``max_shift`` pixels (the CapsNet paper's 2), and, off by default, Efficient-CapsNet's MNIST
    augmentation (:mod:`capsjax.ops.augmentation`): rotations up to ``rotate_degrees`` (30),
    ``margin_shift`` (moves within the empty margins), horizontal squishes up to ``squish_pixels``
    (7) and an erased ``erase_size`` square (4); and elastic distortions of half the images
    (Simard et al. 2003) with a displacement field scaled by ``elastic_alpha`` (34; 0 is off) and
    blurred with std ``elastic_sigma`` pixels (4). Data whose targets a generator placed (MultiMNIST)
    is not augmented.
    """

    name: str = "mnist"
    path: str | None = None
    test_fraction: float = 0.1
    resize: int = 0
    crop: int = 0
    train_examples: int | None = None
    test_examples: int | None = None
    max_shift: int = 2
    canvas: int = 0
    rotate_degrees: float = 0.0
    margin_shift: bool = False
    squish_pixels: int = 0
    erase_size: int = 0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0

    def augmentation(self) -> dict:
        """The keyword arguments of :func:`capsjax.ops.augmentation.augment` these settings ask for
        (``elastic_sigma`` only with an elastic distortion, so that all off is all false)."""
        options = {
            "rotate_degrees": self.rotate_degrees,
            "margin_shift": self.margin_shift,
            "squish_pixels": self.squish_pixels,
            "erase_size": self.erase_size,
            "elastic_alpha": self.elastic_alpha,
        }
        if self.elastic_alpha:
            options["elastic_sigma"] = self.elastic_sigma
        return options


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam with an exponentially decaying learning rate (0.96 every 2000 steps, as the official code).

    ``average_decay`` > 0 also keeps an exponential moving average of the parameters (Polyak
    averaging; 0.999 averages over about the last 1000 steps), and evaluation, checkpoints read
    back for export, figures and analysis use that average instead of the last step's parameters.
    0 (the default) keeps none.
    """

    learning_rate: float = 1e-3
    decay_rate: float = 0.96
    decay_steps: int = 2000
    staircase: bool = False
    average_decay: float = 0.0


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Margin loss (eq. 4) plus the weighted reconstruction loss; ``recon_weight=0`` disables it.

    ``class_loss`` is the class loss of a model without logits: ``"margin"`` (eq. 4 on the scores)
    or ``"spread"`` (matrix capsules, Hinton et al. 2018), whose margin grows linearly from
    ``spread_margin_start`` to ``spread_margin_end`` over ``spread_margin_steps`` training steps
    (evaluation uses the end margin). A model with logits (the CNN) always gets cross-entropy.
    """

    m_plus: float = 0.9
    m_minus: float = 0.1
    lam: float = 0.5
    margin_reduction: str = "sum"
    recon_weight: float = 0.0005
    class_loss: str = "margin"
    spread_margin_start: float = 0.2
    spread_margin_end: float = 0.9
    spread_margin_steps: int = 50_000
    # Knowledge distillation (Hinton et al. 2015), on with ``TrainConfig.teachers``: this weight times
    # the squared distance between the model's class scores and the teachers' mean scores.
    distill_weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. ``model`` picks ``capsnet``, ``cnn`` (the paper's baseline),
    ``matrix_capsnet`` (matrix capsules with EM routing, Hinton et al. 2018) or ``efficient_capsnet``
    (Efficient-CapsNet, Mazzia et al. 2021)."""

    model: str = "capsnet"
    capsnet: CapsNetConfig = CapsNetConfig()
    cnn: CNNConfig = CNNConfig()
    efficient_capsnet: EfficientCapsNetConfig = EfficientCapsNetConfig()
    matrix_capsnet: MatrixCapsNetConfig = MatrixCapsNetConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    batch_size: int = 128
    eval_batch_size: int = 500
    epochs: int = 1
    seed: int = 0
    checkpoint_every_steps: int = 500
    # Also a checkpoint after the step that ends this many minutes since the last one (None: off).
    checkpoint_every_minutes: float | None = 10.0
    # Also evaluate on the test split (and checkpoint) every this many steps, besides each epoch's end.
    eval_every_steps: int | None = None
    # Checkpoints kept in the work directory (the newest ones); None keeps every one.
    keep_checkpoints: int | None = 2
    log_every_steps: int = 50
    prefetch: int = 2
    # A step with a non-finite loss or gradient: "stop" the run with an error (the last good
    # checkpoint stays), or "skip" its update and count it.
    on_nonfinite: str = "stop"
    # A weights file (``capsjax export``) to start from instead of a random initialisation: its
    # parameters must fit this run's model; the optimizer and the learning-rate schedule start afresh.
    init_weights: str | None = None
    # Weights files (``capsjax export``) of trained models whose mean class scores, on the same
    # augmented training images, the model is also trained toward (``loss.distill_weight``): one
    # model learns from an ensemble. Their classes and image shape must be this run's.
    teachers: tuple[str, ...] = ()


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
    return validate(config)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value) -> bool:
    return _is_int(value) and value > 0


def _positive_or_none(value) -> bool:
    return value is None or _positive(value)


def _non_negative(value) -> bool:
    return _is_int(value) and value >= 0


def _positive_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _non_negative_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _probability(value) -> bool:
    return _non_negative_number(value) and value <= 1


def _positive_tuple(value) -> bool:
    return isinstance(value, tuple) and all(_positive(v) for v in value)


def _one_of(names) -> tuple:
    return (lambda value: value in names), f"one of {sorted(names)}"


_POSITIVE = (_positive, "a positive integer")
_POSITIVE_OR_NONE = (_positive_or_none, "a positive integer or None")
_NON_NEGATIVE = (_non_negative, "an integer >= 0")
_POSITIVE_NUMBER = (_positive_number, "a finite number > 0")
_NON_NEGATIVE_NUMBER = (_non_negative_number, "a finite number >= 0")
_PROBABILITY = (_probability, "a number in [0, 1]")
_SIZES = (_positive_tuple, "a tuple of positive integers")
_IMAGE_SHAPE = (lambda v: _positive_tuple(v) and len(v) == 3, "(height, width, channels), positive")
_NUM_CLASSES = (lambda v: _is_int(v) and v >= 2, "an integer >= 2")
_LAYER_SIZES = (lambda v: _positive_tuple(v) and len(v) > 0, "a non-empty tuple of positive integers")

# Field path -> (rule, what is allowed). Every field of TrainConfig and its groups is listed;
# tests/test_config.py checks that none is missing.
_RULES = {
    "model": _one_of(MODELS),
    "batch_size": _POSITIVE,
    "eval_batch_size": _POSITIVE,
    "epochs": _POSITIVE,
    "seed": _NON_NEGATIVE,
    "checkpoint_every_steps": _POSITIVE,
    "checkpoint_every_minutes": (lambda v: v is None or _positive_number(v), "a finite number > 0, or None"),
    "eval_every_steps": _POSITIVE_OR_NONE,
    "keep_checkpoints": (_positive_or_none, "a positive integer (at least 1 checkpoint kept) or None (all)"),
    "log_every_steps": _POSITIVE,
    "prefetch": _NON_NEGATIVE,
    "on_nonfinite": _one_of(("stop", "skip")),
    "init_weights": (lambda v: v is None or (isinstance(v, str) and v != ""), "None or a weights file"),
    "teachers": (
        lambda v: isinstance(v, tuple) and all(isinstance(p, str) and p != "" for p in v),
        "a tuple of weights files (empty: no distillation)",
    ),
    "data.name": _one_of(DATASETS),
    "data.train_examples": _POSITIVE_OR_NONE,
    "data.test_examples": _POSITIVE_OR_NONE,
    "data.max_shift": _NON_NEGATIVE,
    "data.canvas": _NON_NEGATIVE,
    "data.rotate_degrees": (lambda v: _non_negative_number(v) and v <= 180, "a number of degrees in [0, 180]"),
    "data.margin_shift": (lambda v: isinstance(v, bool), "true or false"),
    "data.squish_pixels": _NON_NEGATIVE,
    "data.erase_size": _NON_NEGATIVE,
    "data.elastic_alpha": (_non_negative_number, "a number >= 0 (0 is off)"),
    "data.elastic_sigma": (_positive_number, "a number of pixels > 0"),
    "data.path": (lambda v: v is None or (isinstance(v, str) and v != ""), "None or a path"),
    "data.test_fraction": (lambda v: _positive_number(v) and v < 1, "a number within (0, 1)"),
    "data.resize": _NON_NEGATIVE,
    "data.crop": _NON_NEGATIVE,
    "optim.learning_rate": _POSITIVE_NUMBER,
    "optim.decay_rate": (lambda v: _positive_number(v) and v <= 1, "a number in (0, 1]"),
    "optim.decay_steps": _POSITIVE,
    "optim.staircase": (lambda v: isinstance(v, bool), "true or false"),
    "optim.average_decay": (lambda v: _non_negative_number(v) and v < 1, "a number in [0, 1)"),
    "loss.m_plus": _PROBABILITY,
    "loss.m_minus": _PROBABILITY,
    "loss.lam": _NON_NEGATIVE_NUMBER,
    "loss.margin_reduction": _one_of(("sum", "mean")),
    "loss.recon_weight": _NON_NEGATIVE_NUMBER,
    "loss.class_loss": _one_of(("margin", "spread")),
    "loss.spread_margin_start": _PROBABILITY,
    "loss.spread_margin_end": _PROBABILITY,
    "loss.spread_margin_steps": _POSITIVE,
    "loss.distill_weight": _NON_NEGATIVE_NUMBER,
    "capsnet.image_shape": _IMAGE_SHAPE,
    "capsnet.num_classes": _NUM_CLASSES,
    "capsnet.conv_channels": _POSITIVE,
    "capsnet.conv_kernel": _POSITIVE,
    "capsnet.primary_types": _POSITIVE,
    "capsnet.primary_dim": _POSITIVE,
    "capsnet.primary_kernel": _POSITIVE,
    "capsnet.primary_stride": _POSITIVE,
    "capsnet.class_dim": _POSITIVE,
    "capsnet.routing.name": _one_of(ROUTING_FUNCTIONS),
    "capsnet.routing.num_iters": _POSITIVE,
    "capsnet.routing.bias": (lambda v: isinstance(v, bool), "true or false"),
    "capsnet.routing.leaky": (lambda v: isinstance(v, bool), "true or false"),
    "capsnet.routing.stop_gradient": (lambda v: isinstance(v, bool), "true or false"),
    "capsnet.routing.remat": (lambda v: isinstance(v, bool), "true or false"),
    "capsnet.routing.learn": (lambda v: isinstance(v, bool), "true or false"),
    "capsnet.routing.em_cost": _one_of(EM_COSTS),
    "capsnet.routing.chunk_size": (lambda v: v is None or (_is_int(v) and v >= 0), "None or an integer >= 0"),
    "capsnet.decoder_hidden": _SIZES,
    "capsnet.w_init_std": _POSITIVE_NUMBER,
    "capsnet.conv_lowering": _one_of(LOWERINGS),
    "capsnet.compute_dtype": _one_of(("float32", "bfloat16")),
    "capsnet.scores": _one_of(SCORES),
    "capsnet.kernel_init": _one_of(KERNEL_INITS),
    "cnn.image_shape": _IMAGE_SHAPE,
    "cnn.num_classes": _NUM_CLASSES,
    "cnn.conv_channels": _SIZES,
    "cnn.kernel_size": _POSITIVE,
    "cnn.hidden": _SIZES,
    "cnn.dropout": (lambda v: _non_negative_number(v) and v < 1, "a number in [0, 1)"),
    "cnn.conv_lowering": _one_of(LOWERINGS),
    "cnn.compute_dtype": _one_of(("float32", "bfloat16")),
    "efficient_capsnet.image_shape": _IMAGE_SHAPE,
    "efficient_capsnet.num_classes": _NUM_CLASSES,
    "efficient_capsnet.conv_channels": _LAYER_SIZES,
    "efficient_capsnet.conv_kernels": _LAYER_SIZES,
    "efficient_capsnet.conv_strides": _LAYER_SIZES,
    "efficient_capsnet.primary_kernel": _POSITIVE,
    "efficient_capsnet.primary_dim": _POSITIVE,
    "efficient_capsnet.class_dim": _POSITIVE,
    "efficient_capsnet.decoder_hidden": _SIZES,
    "efficient_capsnet.w_init_std": _POSITIVE_NUMBER,
    "efficient_capsnet.batch_norm_momentum": (lambda v: _probability(v) and v < 1, "a number in [0, 1)"),
    "efficient_capsnet.batch_norm_epsilon": _POSITIVE_NUMBER,
    "efficient_capsnet.conv_lowering": _one_of(LOWERINGS),
    "efficient_capsnet.compute_dtype": _one_of(("float32", "bfloat16")),
    "matrix_capsnet.image_shape": _IMAGE_SHAPE,
    "matrix_capsnet.num_classes": _NUM_CLASSES,
    "matrix_capsnet.conv_channels": _POSITIVE,
    "matrix_capsnet.conv_kernel": _POSITIVE,
    "matrix_capsnet.conv_stride": _POSITIVE,
    "matrix_capsnet.primary_types": _POSITIVE,
    "matrix_capsnet.caps1_types": _POSITIVE,
    "matrix_capsnet.caps1_kernel": _POSITIVE,
    "matrix_capsnet.caps1_stride": _POSITIVE,
    "matrix_capsnet.caps2_types": _POSITIVE,
    "matrix_capsnet.caps2_kernel": _POSITIVE,
    "matrix_capsnet.caps2_stride": _POSITIVE,
    "matrix_capsnet.num_iters": _POSITIVE,
    "matrix_capsnet.conv_lowering": _one_of(LOWERINGS),
    "matrix_capsnet.compute_dtype": _one_of(("float32", "bfloat16")),
}


def field_paths(config, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf field of a (nested) config dataclass."""
    paths = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        path = prefix + field.name
        paths += field_paths(value, path + ".") if dataclasses.is_dataclass(value) else [path]
    return paths


def validate(config: TrainConfig) -> TrainConfig:
    """Check every field of ``config``; returns it unchanged.

    Raises:
      ConfigError: one line naming the first bad field, its value and what is allowed, e.g.
        ``config.batch_size = -8: expected a positive integer``.
    """
    for path in field_paths(config):
        value = config
        for name in path.split("."):
            value = getattr(value, name)
        rule, allowed = _RULES[path]
        if not rule(value):
            raise ConfigError(f"config.{path} = {value!r}: expected {allowed}")
    return config


def check_augmentation(config: TrainConfig, image_shape: Sequence[int], *, has_targets: bool) -> None:
    """Check that the training images can take ``config.data``'s augmentation, once their shape is known.

    Args:
      config: the run's config.
      image_shape: ``(height, width, channels)`` of the training images as the model sees them.
      has_targets: the data comes with generated reconstruction targets (MultiMNIST), which a
        rotation, squish, erased patch or margin shift of the input would no longer match.

    Raises:
      ConfigError: one line naming the field, its value and what the images allow.
    """
    height, width = image_shape[0], image_shape[1]
    asked = {name: value for name, value in config.data.augmentation().items() if value}
    if has_targets and asked:
        name, value = next(iter(asked.items()))
        raise ConfigError(
            f"config.data.{name} = {value!r}: expected off for data with generated targets ({config.data.name})"
        )
    if config.data.squish_pixels >= width:
        raise ConfigError(
            f"config.data.squish_pixels = {config.data.squish_pixels}: expected fewer than the image width {width}"
        )
    largest_patch = (min(height, width) - 2) // 2
    if config.data.erase_size > largest_patch:
        raise ConfigError(
            f"config.data.erase_size = {config.data.erase_size}: expected at most {largest_patch} "
            f"for {height}x{width} images"
        )


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


def save_config(
    config: TrainConfig, path: pathlib.Path, *, data_dir: str | None = None, class_names: Sequence[str] | None = None
) -> None:
    """Write ``config`` as JSON; ``data_dir`` (the folder the data came from) and ``class_names`` (label k's
    name, for image-folder data) are recorded beside its fields."""
    record = to_dict(config) | ({"data_dir": data_dir} if data_dir else {})
    record |= {"class_names": list(class_names)} if class_names else {}
    path.write_text(json.dumps(record, indent=2) + "\n")


def recorded_data_dir(path: pathlib.Path) -> str | None:
    """The data folder a work directory's ``config.json`` recorded (None if it holds none)."""
    return json.loads(path.read_text()).get("data_dir")


def recorded_class_names(path: pathlib.Path) -> list[str] | None:
    """The class names a work directory's ``config.json`` recorded (None if it holds none)."""
    return json.loads(path.read_text()).get("class_names")


def read_config(path: pathlib.Path) -> TrainConfig:
    return from_dict(TrainConfig, json.loads(path.read_text()))
