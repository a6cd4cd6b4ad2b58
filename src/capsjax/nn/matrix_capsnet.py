"""The matrix capsule network with EM routing (Hinton, Sabour, Frosst 2018) and its configuration."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

import capsjax.nn.config_rules as rules
from capsjax.errors import ConfigError
from capsjax.nn.interface import ModelOutput, check_images
from capsjax.nn.layers import Conv2D
from capsjax.nn.matrix_capsules import ClassCapsules, ConvCapsules, PrimaryMatrixCapsules
from capsjax.ops.convolution import LOWERINGS, conv_output_size
from capsjax.ops.matrix_votes import receptive_field_centres

PRESETS = {
    "paper": {},
    "small": {"conv_channels": 64, "primary_types": 8, "caps1_types": 16, "caps2_types": 16},
}
"""Sizes by name: ``"paper"`` is A=B=C=D=32 (310K parameters in the paper; 316,394 here on
smallNORB), ``"small"`` the paper's smaller network A=64, B=8, C=D=16 (68K; 67,154 here)."""


@dataclasses.dataclass(frozen=True)
class MatrixCapsNetConfig(rules.Checked):
    """The matrix capsule network. The defaults are the paper's smallNORB network (A=B=C=D=32) on
    32x32 grayscale crops with 5 classes; :meth:`preset` gives the named sizes of :data:`PRESETS`.

    The paper's letters: A = ``conv_channels``, B = ``primary_types``, C = ``caps1_types``, D =
    ``caps2_types``.
    """

    image_shape: tuple[int, int, int] = (32, 32, 1)
    num_classes: int = 5
    conv_channels: int = 32
    conv_kernel: int = 5
    conv_stride: int = 2
    primary_types: int = 32
    caps1_types: int = 32
    caps1_kernel: int = 3
    caps1_stride: int = 2
    caps2_types: int = 32
    caps2_kernel: int = 3
    caps2_stride: int = 1
    num_iters: int = 3
    conv_lowering: str = "auto"
    compute_dtype: str = "float32"  # of the two convolutions; EM routing always runs in float32

    RULES: ClassVar[dict[str, rules.Rule]] = {
        "image_shape": rules.IMAGE_SHAPE,
        "num_classes": rules.NUM_CLASSES,
        "conv_channels": rules.SIZE,
        "conv_kernel": rules.KERNEL,
        "conv_stride": rules.KERNEL,
        "primary_types": rules.SIZE,
        "caps1_types": rules.SIZE,
        "caps1_kernel": rules.KERNEL,
        "caps1_stride": rules.KERNEL,
        "caps2_types": rules.SIZE,
        "caps2_kernel": rules.KERNEL,
        "caps2_stride": rules.KERNEL,
        "num_iters": rules.NUM_ITERS,
        "conv_lowering": rules.one_of(LOWERINGS),
        "compute_dtype": rules.COMPUTE_DTYPE,
    }

    @classmethod
    def preset(cls, name: str, **overrides) -> MatrixCapsNetConfig:
        """The config of a named size (``"paper"`` or ``"small"``), with any other fields overridden.

        Raises:
          ConfigError: an unknown name.
        """
        if name not in PRESETS:
            raise ConfigError(f"name: unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**(PRESETS[name] | overrides))

    def check_together(self, prefix: str = "config.") -> None:
        """The image fits the convolution and both convolutional capsule layers.

        Raises:
          ConfigError: one line naming the image shape and the kernels and strides.
        """
        smallest = smallest_image(self.layer_geometry())
        if min(self.image_shape[:2]) < smallest:
            layers = ", ".join(
                f"{prefix}{name}_kernel = {getattr(self, name + '_kernel')}, "
                f"{prefix}{name}_stride = {getattr(self, name + '_stride')}"
                for name in ("conv", "caps1", "caps2")
            )
            raise rules.refuse(f"{prefix}image_shape", self.image_shape, f"at least {smallest}x{smallest} for {layers}")

    def layer_geometry(self) -> tuple[tuple[int, int], ...]:
        """``(kernel, stride)`` of the four VALID convolutions over positions, from the image up."""
        return (
            (self.conv_kernel, self.conv_stride),
            (1, 1),  # primary capsules
            (self.caps1_kernel, self.caps1_stride),
            (self.caps2_kernel, self.caps2_stride),
        )


def smallest_image(geometry) -> int:
    """The smallest image side for which every VALID convolution of ``geometry`` has an output."""
    size = 1
    for kernel, stride in reversed(geometry):
        size = (size - 1) * stride + kernel
    return size


class MatrixCapsNet(nnx.Module):
    """The matrix capsule network of Hinton, Sabour, Frosst (2018), Fig. 1.

    ReLU conv A@5x5 stride 2 -> primary capsules (B types, 1x1) -> ConvCaps1 (C types, 3x3 stride
    2) -> ConvCaps2 (D types, 3x3 stride 1) -> class capsules with coordinate addition; EM routing
    between the capsule layers. The class activations are the scores; there is no decoder.

    Args:
      config: a :class:`MatrixCapsNetConfig`; None means the paper's smallNORB network.
      rngs: parameter initialisation.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from capsjax.nn import MatrixCapsNet, MatrixCapsNetConfig, count_params
      >>> build = lambda: MatrixCapsNet(MatrixCapsNetConfig.preset("small"), rngs=nnx.Rngs(0))
      >>> count_params(nnx.eval_shape(build))
      67154
      >>> out = jax.eval_shape(lambda x: build()(x), jnp.zeros((2, 32, 32, 1)))
      >>> out.scores.shape, out.capsules.shape, out.couplings.shape
      ((2, 5), (2, 5, 16), (2, 256, 5))
    """

    def __init__(self, config: MatrixCapsNetConfig | None = None, *, rngs: nnx.Rngs):
        config = config or MatrixCapsNetConfig()
        self.config = config
        height, width, channels = config.image_shape
        geometry = config.layer_geometry()
        smallest = smallest_image(geometry)
        if min(height, width) < smallest:
            raise ValueError(
                f"config.image_shape {config.image_shape} is too small for the conv and capsule layers "
                f"((kernel, stride) {list(geometry)}): the smallest image that works is {smallest}x{smallest}"
            )
        dtype = jnp.dtype(config.compute_dtype)
        self.conv = Conv2D(
            channels,
            config.conv_channels,
            config.conv_kernel,
            stride=config.conv_stride,
            lowering=config.conv_lowering,
            dtype=dtype,
            rngs=rngs,
        )
        self.primary = PrimaryMatrixCapsules(
            config.conv_channels,
            num_types=config.primary_types,
            lowering=config.conv_lowering,
            dtype=dtype,
            rngs=rngs,
        )
        caps = dict(num_iters=config.num_iters, rngs=rngs)
        self.caps1 = ConvCapsules(
            config.primary_types,
            config.caps1_types,
            kernel_size=config.caps1_kernel,
            stride=config.caps1_stride,
            **caps,
        )
        self.caps2 = ConvCapsules(
            config.caps1_types, config.caps2_types, kernel_size=config.caps2_kernel, stride=config.caps2_stride, **caps
        )
        self.classes = ClassCapsules(config.caps2_types, config.num_classes, **caps)
        grid = (height, width)
        for kernel, stride in geometry:
            grid = tuple(conv_output_size(n, kernel, stride) for n in grid)
        self.class_input_grid = grid

    def encode(self, x: Float[Array, "batch height width channels"]):
        """Images -> class capsules: :class:`~capsjax.ops.em_routing.EMRoutingResult` with a batch axis
        (poses ``[batch, classes, 16]``, activations ``[batch, classes]``, assignments
        ``[batch, h * w * caps2_types, classes]`` and their logarithm, log_assignments)."""
        check_images(x, self.config.image_shape)
        primary = self.primary(jax.nn.relu(self.conv(x)))
        caps1 = self.caps1(primary.poses, primary.activations)
        caps2 = self.caps2(caps1.poses, caps1.activations)
        coordinates = receptive_field_centres(
            self.class_input_grid, self.config.image_shape[:2], self.config.layer_geometry()
        )
        return self.classes(caps2.poses, caps2.activations, coordinates=coordinates)

    def __call__(
        self, x: Float[Array, "batch height width channels"], labels=None, *, dropout_key=None, reconstruct: bool = True
    ) -> ModelOutput:
        """Classify.

        Args:
          x: images ``[batch, height, width, channels]`` in [0, 1].
          labels, dropout_key, reconstruct: unused (no decoder, no dropout); accepted so that models
            are interchangeable.

        Returns:
          :class:`ModelOutput` with ``scores`` the class activations ``[batch, classes]`` in (0, 1),
          ``capsules`` the class poses ``[batch, classes, 16]`` and ``couplings`` the class layer's
          final EM assignments ``[batch, h * w * caps2_types, classes]``; train it with the spread
          loss (``LossConfig.class_loss="spread"``).
        """
        routed = self.encode(x)
        return ModelOutput(scores=routed.activations, capsules=routed.poses, couplings=routed.assignments)
