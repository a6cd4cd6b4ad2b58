"""Efficient-CapsNet (Mazzia, Salvetti, Chiaberge 2021) and its configuration.

Four convolutions with batch norm, primary capsules from one depthwise convolution, class
capsules by non-iterative self-attention routing (:func:`capsjax.self_attention_routing`) with
learned log priors, and the reconstruction decoder of :class:`capsjax.CapsNet`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

import capsjax.nn.config_rules as rules
from capsjax.nn.interface import ModelOutput, check_images
from capsjax.nn.layers import Conv2D, Decoder, DepthwiseConv2D, RoutedCapsules, resolve_chunk_size
from capsjax.ops.attention_routing import efficient_squash
from capsjax.ops.convolution import LOWERINGS, conv_output_size
from capsjax.ops.squashing import safe_norm


@dataclasses.dataclass(frozen=True)
class EfficientCapsNetConfig(rules.Checked):
    """The Efficient-CapsNet architecture. The defaults are the paper's MNIST network: 161,824
    parameters without the decoder (the paper's "161K"), 1,573,168 with it.

    Convolution ``i`` has ``conv_channels[i]`` channels, a ``conv_kernels[i]`` square kernel and
    stride ``conv_strides[i]`` (VALID), then ReLU, then batch norm (the official code's order). The
    primary capsules are a depthwise ``primary_kernel`` convolution of the last feature map, cut into
    capsules of ``primary_dim`` (MNIST: 9x9 on 9x9x128 -> 1x1x128 -> 16 capsules of 8D).
    ``w_init_std`` is the std of the class capsules' transformation matrices: the official code's
    He-normal, sqrt(2 / 1280) with Keras' fan-in of a ``[10, 16, 8, 16]`` weight. The batch-norm
    momentum and epsilon are Keras' defaults, which the official code uses.
    """

    image_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    conv_channels: tuple[int, ...] = (32, 64, 64, 128)
    conv_kernels: tuple[int, ...] = (5, 3, 3, 3)
    conv_strides: tuple[int, ...] = (1, 1, 1, 2)
    primary_kernel: int = 9
    primary_dim: int = 8
    class_dim: int = 16
    decoder_hidden: tuple[int, ...] = (512, 1024)
    w_init_std: float = 0.0395
    batch_norm_momentum: float = 0.99
    batch_norm_epsilon: float = 1e-3
    conv_lowering: str = "auto"
    compute_dtype: str = "float32"
    eval_chunk_size: int | None = None  # examples per chunk of the convs in evaluation; None: 8 on CPU, 0 elsewhere

    RULES: ClassVar[dict[str, rules.Rule]] = {
        "image_shape": rules.IMAGE_SHAPE,
        "num_classes": rules.NUM_CLASSES,
        "conv_channels": rules.sizes(non_empty=True),
        "conv_kernels": rules.sizes(rules.MAX_IMAGE_SIDE, non_empty=True),
        "conv_strides": rules.sizes(rules.MAX_IMAGE_SIDE, non_empty=True),
        "primary_kernel": rules.KERNEL,
        "primary_dim": rules.SIZE,
        "class_dim": rules.SIZE,
        "decoder_hidden": rules.sizes(),
        "w_init_std": rules.POSITIVE_NUMBER,
        "batch_norm_momentum": rules.BELOW_ONE,
        "batch_norm_epsilon": rules.POSITIVE_NUMBER,
        "conv_lowering": rules.one_of(LOWERINGS),
        "compute_dtype": rules.COMPUTE_DTYPE,
        "eval_chunk_size": rules.or_none(rules.NON_NEGATIVE, "None or an integer >= 0"),
    }

    def check_together(self, prefix: str = "config.") -> None:
        """One kernel and stride per convolution; capsules cut evenly from the last one; the image fits every layer.

        Raises:
          ConfigError: one line naming the fields that do not fit together.
        """
        channels = f"{prefix}conv_channels = {self.conv_channels}"
        for name in ("conv_kernels", "conv_strides"):
            value = getattr(self, name)
            if len(value) != len(self.conv_channels):
                expected = f"{len(self.conv_channels)} entries, one per entry of {channels}"
                raise rules.refuse(prefix + name, value, expected)
        if self.conv_channels[-1] % self.primary_dim:
            raise rules.refuse(
                f"{prefix}conv_channels",
                self.conv_channels,
                f"a last entry that is a multiple of {prefix}primary_dim = {self.primary_dim} "
                "(the depthwise conv's channels are cut into capsules)",
            )
        smallest = _smallest_image(self)
        if min(self.image_shape[:2]) < smallest:
            raise rules.refuse(
                f"{prefix}image_shape",
                self.image_shape,
                f"at least {smallest}x{smallest} for {prefix}conv_kernels = {self.conv_kernels}, "
                f"{prefix}conv_strides = {self.conv_strides} and {prefix}primary_kernel = {self.primary_kernel}",
            )


def _check_layout(config: EfficientCapsNetConfig) -> None:
    """One-line ValueErrors for settings that do not fit together (each field alone is checked by the config)."""
    counts = {len(config.conv_channels), len(config.conv_kernels), len(config.conv_strides)}
    if len(counts) != 1 or not config.conv_channels:
        raise ValueError(
            "config.conv_channels, conv_kernels and conv_strides: expected one entry per convolution "
            f"(at least one), got {config.conv_channels}, {config.conv_kernels}, {config.conv_strides}"
        )
    if config.conv_channels[-1] % config.primary_dim:
        raise ValueError(
            f"config.conv_channels[-1] = {config.conv_channels[-1]}: expected a multiple of "
            f"primary_dim = {config.primary_dim} (the depthwise conv's channels are cut into capsules)"
        )


def _smallest_image(config: EfficientCapsNetConfig) -> int:
    """The smallest square image whose last feature map still fits the primary capsules' kernel."""
    size = config.primary_kernel
    for kernel, stride in zip(reversed(config.conv_kernels), reversed(config.conv_strides), strict=True):
        size = (size - 1) * stride + kernel
    return size


def _primary_grid_side(config: EfficientCapsNetConfig, size: int) -> int:
    """Primary capsule positions along an image side of ``size``; ValueError if a layer does not fit."""

    def too_small(layer: str) -> ValueError:
        smallest = _smallest_image(config)
        return ValueError(
            f"config.image_shape {config.image_shape} is too small for the {layer}: "
            f"the smallest image that works is {smallest}x{smallest}"
        )

    for i, (kernel, stride) in enumerate(zip(config.conv_kernels, config.conv_strides, strict=True)):
        if size < kernel:
            raise too_small(f"conv {i + 1} ({kernel}x{kernel}, stride {stride})")
        size = conv_output_size(size, kernel, stride)
    if size < config.primary_kernel:
        raise too_small(f"primary capsules' depthwise conv ({config.primary_kernel}x{config.primary_kernel})")
    return size - config.primary_kernel + 1


class EfficientCapsNet(nnx.Module):
    """Efficient-CapsNet (Mazzia, Salvetti, Chiaberge 2021), the MNIST network of its Table 1.

    conv 32@5x5, 64@3x3, 64@3x3, 128@3x3 stride 2 (each ReLU, then batch norm) -> depthwise 9x9
    conv -> 16 primary capsules of 8D (:func:`capsjax.efficient_squash`) -> 10 x 16D class capsules
    by self-attention routing with learned log priors -> decoder 512 -> 1024 -> 784 from the masked
    class capsules (as CapsNet's).

    Batch norm: the model is built in evaluation mode (the running averages, mean 0 and variance 1
    at first); :func:`capsjax.nn.interface.with_mode` with ``training=True`` (what the train step
    does) normalises by each batch's statistics and updates the running averages (``nnx.BatchStat``,
    kept in the training state and in checkpoints and weights files).

    Args:
      config: an :class:`EfficientCapsNetConfig`; None means the paper's MNIST network.
      rngs: parameter initialisation.

    Example (shapes only, through ``eval_shape``; ``EfficientCapsNet(rngs=nnx.Rngs(0))(images)`` computes):
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from capsjax.nn import EfficientCapsNet, count_params
      >>> model = nnx.eval_shape(lambda: EfficientCapsNet(rngs=nnx.Rngs(0)))
      >>> count_params(model) - count_params(model.decoder)
      161824
      >>> out = jax.eval_shape(lambda x: EfficientCapsNet(rngs=nnx.Rngs(0))(x), jnp.zeros((2, 28, 28, 1)))
      >>> out.scores.shape, out.capsules.shape, out.reconstructions.shape, out.couplings.shape
      ((2, 10), (2, 10, 16), (2, 28, 28, 1), (2, 16, 10))

    References:
      Mazzia, Salvetti, Chiaberge (2021), "Efficient-CapsNet: capsule network with self-attention
      routing", Scientific Reports 11, sec. "Efficient-CapsNet" and Fig. 1.
    """

    def __init__(self, config: EfficientCapsNetConfig | None = None, *, rngs: nnx.Rngs):
        config = config or EfficientCapsNetConfig()
        _check_layout(config)
        self.config = config
        dtype = jnp.dtype(config.compute_dtype)
        height, width, channels = config.image_shape
        grid_h, grid_w = _primary_grid_side(config, height), _primary_grid_side(config, width)
        widths = [channels, *config.conv_channels]
        self.convs = nnx.List(
            [
                Conv2D(a, b, k, stride=s, lowering=config.conv_lowering, dtype=dtype, rngs=rngs)
                for a, b, k, s in zip(widths[:-1], widths[1:], config.conv_kernels, config.conv_strides, strict=True)
            ]
        )
        self.norms = nnx.List(
            [
                nnx.BatchNorm(
                    b,
                    use_running_average=True,
                    momentum=config.batch_norm_momentum,
                    epsilon=config.batch_norm_epsilon,
                    dtype=dtype,
                    rngs=rngs,
                )
                for b in config.conv_channels
            ]
        )
        last = config.conv_channels[-1]
        # depthwise: one 9x9 filter per channel
        self.primary_conv = DepthwiseConv2D(last, config.primary_kernel, dtype=dtype, rngs=rngs)
        self.num_primary = grid_h * grid_w * last // config.primary_dim
        self.classes = RoutedCapsules(
            self.num_primary,
            config.primary_dim,
            config.num_classes,
            config.class_dim,
            routing="self_attention",
            num_iters=1,
            learn_routing=True,
            chunk_size=0,  # the votes are small ([batch, 16, 10, 16] on MNIST): route the whole batch at once
            w_init_std=config.w_init_std,
            dtype=dtype,
            rngs=rngs,
        )
        self.decoder = Decoder(
            config.num_classes,
            config.class_dim,
            config.image_shape,
            hidden=config.decoder_hidden,
            dtype=dtype,
            rngs=rngs,
        )

    def features(self, x: Float[Array, "batch height width channels"]) -> Float[Array, "batch h w channels"]:
        """The convolutions (each followed by ReLU and batch norm): images -> the last feature map."""
        h = x
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = norm(jax.nn.relu(conv(h)))
        return h

    def chunked_features(self, x: Float[Array, "batch height width channels"], chunk: int) -> jax.Array:
        """:meth:`features` ``chunk`` examples at a time (``lax.map``; the batch zero-padded to whole chunks).

        On CPU a few examples' feature maps stay in cache through all the convolutions: evaluation at
        batch 256 runs about 1.5-2x faster in chunks of 8 (experiments/bench_cpu.md). Evaluation only:
        training's batch norm needs the statistics of the whole batch.
        """
        batch = x.shape[0]
        padded = jnp.pad(x, ((0, -batch % chunk),) + ((0, 0),) * (x.ndim - 1))
        h = jax.lax.map(self.features, padded.reshape(-1, chunk, *x.shape[1:]))
        return h.reshape(-1, *h.shape[2:])[:batch]

    def primary_capsules(self, x: Float[Array, "batch height width channels"]) -> Float[Array, "batch in_caps in_dim"]:
        """Images -> primary capsules ``[batch, in_caps, primary_dim]`` (ordered row, column, capsule)."""
        check_images(x, self.config.image_shape)
        chunk = resolve_chunk_size(self.config.eval_chunk_size, on_cpu=8)
        evaluating = self.norms[0].use_running_average
        h = self.chunked_features(x, chunk) if evaluating and 0 < chunk < x.shape[0] else self.features(x)
        y = self.primary_conv(h)
        capsules = y.reshape(y.shape[0], self.num_primary, self.config.primary_dim)
        return efficient_squash(capsules.astype(jnp.float32))

    def encode(self, x: Float[Array, "batch height width channels"]):
        """Images -> (class capsules ``[batch, classes, dim]``, couplings ``[batch, in_caps, classes]``)."""
        routed = self.classes(self.primary_capsules(x))
        return routed.v, routed.c

    def reconstruct(
        self, capsules: Float[Array, "batch classes dim"], mask: Float[Array, "batch classes"]
    ) -> Float[Array, "batch height width channels"]:
        """Decode the capsules selected by ``mask`` (one-hot rows) into images (as CapsNet's)."""
        return self.decoder(capsules, mask)

    def __call__(
        self, x: Float[Array, "batch height width channels"], labels=None, *, dropout_key=None, reconstruct: bool = True
    ) -> ModelOutput:
        """Classify and reconstruct.

        Args:
          x: images ``[batch, height, width, channels]`` in [0, 1].
          labels: integer classes ``[batch]`` to mask the decoder input with (training); None masks
            by the longest capsule (evaluation); ``[batch, objects]`` decodes each object's capsule
            alone (reconstructions ``[batch, objects, height, width, channels]``).
          dropout_key: unused (no dropout); accepted so that models are interchangeable.
          reconstruct: run the decoder; False leaves ``reconstructions`` None.

        Returns:
          :class:`ModelOutput` with ``scores`` (class capsule lengths in [0, 1)) ``[batch, classes]``,
          ``capsules [batch, classes, class_dim]``, ``reconstructions`` and ``couplings`` (softmax
          plus log priors) ``[batch, in_caps, classes]``.
        """
        capsules, couplings = self.encode(x)
        lengths = safe_norm(capsules, eps=1e-9)
        reconstructions = self.decoder.by_labels(capsules, labels) if reconstruct else None
        return ModelOutput(scores=lengths, capsules=capsules, reconstructions=reconstructions, couplings=couplings)
