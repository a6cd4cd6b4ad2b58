"""The fields of a training run: frozen dataclasses, each with its fields' rules beside them.

:class:`TrainConfig` holds one group per model (the model configs of :mod:`capsjax.nn` with their own
rules) and the data, optimizer and loss groups defined here. :func:`validate` checks every field, then
the rules that tie fields together for the model that trains; :func:`config_warnings` names the allowed
combinations that are probably mistakes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

import capsjax.nn.config_rules as rules
from capsjax.data.registry import DATASETS
from capsjax.errors import ConfigError
from capsjax.nn.capsnet import CapsNetConfig
from capsjax.nn.cnn import CNNConfig
from capsjax.nn.efficient_capsnet import EfficientCapsNetConfig
from capsjax.nn.matrix_capsnet import MatrixCapsNetConfig
from capsjax.nn.registry import MODELS

_PATH: rules.Rule = (lambda v: v is None or (isinstance(v, str) and v != ""), "None or a path")
_IMAGE_SIDE: rules.Rule = rules.at_most(rules.NON_NEGATIVE, rules.MAX_IMAGE_SIDE)


@dataclasses.dataclass(frozen=True)
class DataConfig(rules.Checked):
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
    blurred with std ``elastic_sigma`` pixels (4); ``flip`` mirrors half the images left to right
    (for clothes, not digits). Data whose targets a generator placed (MultiMNIST)
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
    flip: bool = False

    RULES: ClassVar[dict[str, rules.Rule]] = {
        "name": rules.one_of(DATASETS),
        "path": _PATH,
        "test_fraction": (lambda v: rules.positive_number(v) and v < 1, "a number within (0, 1)"),
        "resize": _IMAGE_SIDE,
        "crop": _IMAGE_SIDE,
        "train_examples": rules.or_none(rules.POSITIVE),
        "test_examples": rules.or_none(rules.POSITIVE),
        "max_shift": _IMAGE_SIDE,
        "canvas": _IMAGE_SIDE,
        "rotate_degrees": (lambda v: rules.non_negative_number(v) and v <= 180, "a number of degrees in [0, 180]"),
        "margin_shift": rules.BOOL,
        "squish_pixels": _IMAGE_SIDE,
        "erase_size": _IMAGE_SIDE,
        "elastic_alpha": (rules.non_negative_number, "a number >= 0 (0 is off)"),
        "elastic_sigma": (rules.positive_number, "a number of pixels > 0"),
        "flip": rules.BOOL,
    }

    def check_together(self, prefix: str = "config.") -> None:
        """A crop fits in the resized images.

        Raises:
          ConfigError: one line naming both fields.
        """
        if self.resize and self.crop > self.resize:
            raise rules.refuse(f"{prefix}crop", self.crop, f"at most {prefix}resize = {self.resize}")

    def augmentation(self) -> dict:
        """The keyword arguments of :func:`capsjax.ops.augmentation.augment` these settings ask for
        (``elastic_sigma`` only with an elastic distortion, so that all off is all false)."""
        options = {
            "rotate_degrees": self.rotate_degrees,
            "margin_shift": self.margin_shift,
            "squish_pixels": self.squish_pixels,
            "erase_size": self.erase_size,
            "elastic_alpha": self.elastic_alpha,
            "flip": self.flip,
        }
        if self.elastic_alpha:
            options["elastic_sigma"] = self.elastic_sigma
        return options


@dataclasses.dataclass(frozen=True)
class OptimConfig(rules.Checked):
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

    RULES: ClassVar[dict[str, rules.Rule]] = {
        "learning_rate": rules.POSITIVE_NUMBER,
        "decay_rate": (lambda v: rules.positive_number(v) and v <= 1, "a number in (0, 1]"),
        "decay_steps": rules.POSITIVE,
        "staircase": rules.BOOL,
        "average_decay": rules.BELOW_ONE,
    }


@dataclasses.dataclass(frozen=True)
class LossConfig(rules.Checked):
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

    RULES: ClassVar[dict[str, rules.Rule]] = {
        "m_plus": rules.PROBABILITY,
        "m_minus": rules.PROBABILITY,
        "lam": rules.NON_NEGATIVE_NUMBER,
        "margin_reduction": rules.one_of(("sum", "mean")),
        "recon_weight": rules.NON_NEGATIVE_NUMBER,
        "class_loss": rules.one_of(("margin", "spread")),
        "spread_margin_start": rules.PROBABILITY,
        "spread_margin_end": rules.PROBABILITY,
        "spread_margin_steps": rules.POSITIVE,
        "distill_weight": rules.NON_NEGATIVE_NUMBER,
    }


_BATCH: rules.Rule = rules.at_most(rules.POSITIVE, rules.MAX_BATCH)


@dataclasses.dataclass(frozen=True)
class TrainConfig(rules.Checked):
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

    RULES: ClassVar[dict[str, rules.Rule]] = {
        "model": rules.one_of(MODELS),
        "batch_size": _BATCH,
        "eval_batch_size": _BATCH,
        "epochs": rules.POSITIVE,
        "seed": rules.NON_NEGATIVE,
        "checkpoint_every_steps": rules.POSITIVE,
        "checkpoint_every_minutes": rules.or_none(rules.POSITIVE_NUMBER, "a finite number > 0, or None"),
        "eval_every_steps": rules.or_none(rules.POSITIVE),
        "keep_checkpoints": rules.or_none(
            rules.POSITIVE, "a positive integer (at least 1 checkpoint kept) or None (all)"
        ),
        "log_every_steps": rules.POSITIVE,
        "prefetch": rules.at_most(rules.NON_NEGATIVE, 64, "batches held ahead of the step"),
        "on_nonfinite": rules.one_of(("stop", "skip")),
        "init_weights": (lambda v: v is None or (isinstance(v, str) and v != ""), "None or a weights file"),
        "teachers": (
            lambda v: isinstance(v, tuple) and all(isinstance(p, str) and p != "" for p in v),
            "a tuple of weights files (empty: no distillation)",
        ),
    }

    def check_together(self, prefix: str = "config.") -> None:
        """The rules that tie fields together: those of the model that trains (the other models' groups
        are not built, and the run sizes every group's images to the data), of the data, and the
        batch against the training examples asked for.

        Raises:
          ConfigError: one line naming the fields that do not fit together.
        """
        getattr(self, self.model).check_together(f"{prefix}{self.model}.")
        self.data.check_together(f"{prefix}data.")
        examples = self.data.train_examples
        if examples is not None and self.batch_size > examples:
            raise rules.refuse(
                f"{prefix}batch_size",
                self.batch_size,
                f"at most {prefix}data.train_examples = {examples} (a step takes one batch of the training set)",
            )


def validate(config: TrainConfig) -> TrainConfig:
    """Check every field of ``config``, then the fields that go together; returns it unchanged.

    Raises:
      ConfigError: one line naming the first bad field, its value and what is allowed, e.g.
        ``config.batch_size = -8: expected a positive integer``.
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config: expected a TrainConfig, got {type(config).__name__}")
    config.check()
    return config


def config_warnings(config: TrainConfig) -> list[str]:
    """One line per allowed combination of ``config``'s fields that is probably a mistake (log them)."""
    warnings = []
    capsnet, routing = config.capsnet, config.capsnet.routing
    if config.model == "capsnet" and capsnet.scores == "length" and routing.name in ("em", "inverted_dot_product"):
        better = "activation" if routing.name == "em" else "linear"
        warnings.append(
            f"config.capsnet.scores = 'length' with config.capsnet.routing.name = {routing.name!r}: its class "
            f"capsules' lengths are not its scores; scores = {better!r} is how its paper classifies"
        )
    chunked = routing.chunk_size is not None and 0 < routing.chunk_size < config.batch_size
    if config.model == "capsnet" and routing.remat and chunked:
        warnings.append(
            f"config.capsnet.routing.remat = True does nothing with config.capsnet.routing.chunk_size = "
            f"{routing.chunk_size}: each chunk is recomputed in the backward pass anyway"
        )
    if config.teachers and config.loss.distill_weight == 0:
        warnings.append(
            f"config.teachers names {len(config.teachers)} file(s) but config.loss.distill_weight = 0: "
            "they are read and run every step for nothing"
        )
    if config.model == "cnn" and config.loss.class_loss != "margin":
        warnings.append(
            f"config.loss.class_loss = {config.loss.class_loss!r} with config.model = 'cnn': "
            "the CNN has logits and trains with cross-entropy"
        )
    return warnings


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


def field_paths(config, prefix: str = "") -> list[str]:
    """Dotted paths of every leaf field of a (nested) config dataclass."""
    paths = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        path = prefix + field.name
        paths += field_paths(value, path + ".") if dataclasses.is_dataclass(value) else [path]
    return paths


field_rules = rules.field_rules
