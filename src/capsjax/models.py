"""Models built from the layers: the CapsNet of Sabour et al. (2017) and the paper's baseline CNN.

A model is chosen by name (:func:`build_model`); both return :class:`ModelOutput`, so the training
loop does not care which one it trains.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from capsjax._checks import check_shape
from capsjax.layers import Conv2D, Decoder, PrimaryCapsules, RoutedCapsules
from capsjax.masking import label_mask, length_mask
from capsjax.squash import safe_norm


@dataclasses.dataclass(frozen=True)
class RoutingConfig:
    """Routing between primary and class capsules; defaults are the paper's."""

    name: str = "dynamic"
    num_iters: int = 3
    bias: bool = False
    leaky: bool = False
    stop_gradient: bool = False
    remat: bool = False


@dataclasses.dataclass(frozen=True)
class CapsNetConfig:
    """The CapsNet architecture. The defaults are the paper's MNIST network (8,215,568 parameters)."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    conv_channels: int = 256
    conv_kernel: int = 9
    primary_types: int = 32
    primary_dim: int = 8
    primary_kernel: int = 9
    primary_stride: int = 2
    class_dim: int = 16
    routing: RoutingConfig = RoutingConfig()
    decoder_hidden: tuple[int, ...] = (512, 1024)
    w_init_std: float = 0.01
    conv_lowering: str = "auto"
    compute_dtype: str = "float32"


@dataclasses.dataclass(frozen=True)
class CNNConfig:
    """The paper's baseline CNN (sec. 5): conv 256, 256, 128 (5x5, stride 1, SAME), FC 328, 192,
    dropout, softmax; 35.4M parameters on MNIST."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    conv_channels: tuple[int, ...] = (256, 256, 128)
    kernel_size: int = 5
    hidden: tuple[int, ...] = (328, 192)
    dropout: float = 0.5
    conv_lowering: str = "auto"
    compute_dtype: str = "float32"


class ModelOutput(NamedTuple):
    """What a classifier returns for a batch.

    Attributes:
      lengths: class scores ``[batch, classes]`` (capsule lengths for CapsNet, in [0, 1);
        softmax probabilities for the CNN). The prediction is their argmax (their top ``k`` for
        images holding ``k`` objects; softmax keeps the logits' order, so the top ``k`` are the
        same whichever cross-entropy trained the CNN).
      capsules: class capsules ``[batch, classes, dim]`` (None for the CNN).
      reconstructions: ``[batch, height, width, channels]`` (None without a decoder).
      couplings: routing coefficients ``[batch, in_caps, classes]`` (None for the CNN).
      logits: unnormalised scores ``[batch, classes]`` of a classifier (None for CapsNet); when
        present, training uses cross-entropy on them instead of the margin loss (softmax for one
        label per image, per-class sigmoid for several; see ``capsjax.train.classification_loss``).
    """

    lengths: Float[Array, "batch classes"]
    capsules: Any = None
    reconstructions: Any = None
    couplings: Any = None
    logits: Any = None


def _check_images(x, image_shape) -> None:
    check_shape("x", x, ("batch", *image_shape))


class CapsNet(nnx.Module):
    """The CapsNet of Sabour et al. (2017), Fig. 1 and 2.

    conv 256@9x9 ReLU -> primary capsules (32 x 8D on a 6x6 grid) -> 10 x 16D class capsules by
    dynamic routing -> decoder 512 -> 1024 -> 784 from the masked class capsules.

    Args:
      config: a :class:`CapsNetConfig`; None means the paper's MNIST network.
      rngs: parameter initialisation.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from capsjax import CapsNet
      >>> out = CapsNet(rngs=nnx.Rngs(0))(jnp.zeros((2, 28, 28, 1)))
      >>> out.lengths.shape, out.capsules.shape, out.reconstructions.shape
      ((2, 10), (2, 10, 16), (2, 28, 28, 1))
    """

    def __init__(self, config: CapsNetConfig | None = None, *, rngs: nnx.Rngs):
        config = config or CapsNetConfig()
        self.config = config
        dtype = jnp.dtype(config.compute_dtype)
        height, width, channels = config.image_shape
        self.conv = Conv2D(
            channels, config.conv_channels, config.conv_kernel, lowering=config.conv_lowering,
            dtype=dtype, rngs=rngs,
        )
        self.primary = PrimaryCapsules(
            config.conv_channels, num_types=config.primary_types, caps_dim=config.primary_dim,
            kernel_size=config.primary_kernel, stride=config.primary_stride,
            lowering=config.conv_lowering, dtype=dtype, rngs=rngs,
        )
        grid_h, grid_w = self.primary.grid_size(
            height - config.conv_kernel + 1, width - config.conv_kernel + 1
        )
        if grid_h < 1 or grid_w < 1:
            raise ValueError(f"config.image_shape {config.image_shape} is too small for the kernels")
        self.num_primary = grid_h * grid_w * config.primary_types
        routing = config.routing
        self.classes = RoutedCapsules(
            self.num_primary, config.primary_dim, config.num_classes, config.class_dim,
            routing=routing.name, num_iters=routing.num_iters,
            routing_options={"leaky": routing.leaky, "stop_gradient": routing.stop_gradient},
            use_bias=routing.bias, remat=routing.remat, w_init_std=config.w_init_std,
            dtype=dtype, rngs=rngs,
        )
        self.decoder = Decoder(
            config.num_classes, config.class_dim, config.image_shape,
            hidden=config.decoder_hidden, dtype=dtype, rngs=rngs,
        )

    def primary_capsules(self, x: Float[Array, "batch height width channels"]) -> Float[Array, "batch in_caps in_dim"]:
        """Images -> primary capsules ``[batch, in_caps, primary_dim]`` (ordered row, column, type)."""
        _check_images(x, self.config.image_shape)
        return self.primary(jax.nn.relu(self.conv(x)))

    def encode(self, x: Float[Array, "batch height width channels"]):
        """Images -> (class capsules ``[batch, classes, dim]``, couplings ``[batch, in_caps, classes]``)."""
        routed = self.classes(self.primary_capsules(x))
        return routed.v, routed.c

    def reconstruct(
        self, capsules: Float[Array, "batch classes dim"], mask: Float[Array, "batch classes"]
    ) -> Float[Array, "batch height width channels"]:
        """Decode the capsules selected by ``mask`` (one-hot rows) into images."""
        return self.decoder(capsules, mask)

    def __call__(
        self, x: Float[Array, "batch height width channels"], labels=None, *, dropout_key=None
    ) -> ModelOutput:
        """Classify and reconstruct.

        Args:
          x: images ``[batch, height, width, channels]`` in [0, 1].
          labels: integer classes ``[batch]`` to mask the decoder input with (training); None
            masks by the longest capsule (evaluation). With ``[batch, objects]`` labels
            (MultiMNIST) each object's capsule is decoded alone: reconstructions are then
            ``[batch, objects, height, width, channels]``.
          dropout_key: unused (CapsNet has no dropout); accepted so that models are interchangeable.

        Returns:
          :class:`ModelOutput`.
        """
        capsules, couplings = self.encode(x)
        lengths = safe_norm(capsules, eps=1e-9)
        if labels is None:
            reconstructions = self.reconstruct(capsules, length_mask(lengths))
        elif labels.ndim == 2:
            reconstructions = jnp.stack(
                [self.reconstruct(capsules, label_mask(labels[:, k], self.config.num_classes))
                 for k in range(labels.shape[1])], axis=1)
        else:
            reconstructions = self.reconstruct(capsules, label_mask(labels, self.config.num_classes))
        return ModelOutput(lengths=lengths, capsules=capsules, reconstructions=reconstructions, couplings=couplings)


def count_params(model: nnx.Module) -> int:
    """Number of scalar parameters of a model."""
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))


class BaselineCNN(nnx.Module):
    """The paper's baseline CNN (Sabour et al. 2017, sec. 5), trained with cross-entropy (softmax
    for one label per image, per-class sigmoid for MultiMNIST's two).

    Example:
      >>> from flax import nnx
      >>> from capsjax.models import BaselineCNN, count_params
      >>> count_params(BaselineCNN(rngs=nnx.Rngs(0)))
      35445522
    """

    def __init__(self, config: CNNConfig | None = None, *, rngs: nnx.Rngs):
        config = config or CNNConfig()
        self.config = config
        dtype = jnp.dtype(config.compute_dtype)
        height, width, channels = config.image_shape
        widths = [channels, *config.conv_channels]
        self.convs = nnx.List([
            Conv2D(a, b, config.kernel_size, padding="SAME", lowering=config.conv_lowering, dtype=dtype, rngs=rngs)
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        ])
        sizes = [height * width * widths[-1], *config.hidden, config.num_classes]
        self.dense = nnx.List(
            [nnx.Linear(a, b, dtype=dtype, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )

    def __call__(self, x, labels=None, *, dropout_key=None) -> ModelOutput:
        """``x [batch, height, width, channels]`` -> :class:`ModelOutput` with ``logits``.

        ``dropout_key`` switches on dropout (before the last layer, as in the paper); None is evaluation.
        ``labels`` is unused (no decoder).
        """
        _check_images(x, self.config.image_shape)
        h = x
        for conv in self.convs:
            h = jax.nn.relu(conv(h))
        h = h.reshape(h.shape[0], -1)
        for layer in self.dense[:-1]:
            h = jax.nn.relu(layer(h))
        if dropout_key is not None and self.config.dropout > 0:
            keep = jax.random.bernoulli(dropout_key, 1.0 - self.config.dropout, h.shape)
            h = jnp.where(keep, h / (1.0 - self.config.dropout), 0.0)
        logits = self.dense[-1](h).astype(jnp.float32)
        return ModelOutput(lengths=jax.nn.softmax(logits, axis=-1), logits=logits)


MODELS = {"capsnet": CapsNet, "cnn": BaselineCNN}


def build_model(name: str, config, *, rngs: nnx.Rngs) -> nnx.Module:
    """Build a model by name: ``"capsnet"`` or ``"cnn"``, from its config dataclass."""
    if name not in MODELS:
        raise ValueError(f"model: unknown name {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](config, rngs=rngs)
