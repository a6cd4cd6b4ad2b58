"""Flax NNX capsule layers. Thin: they own parameters and call the pure functions.

Here: the convolutions (:class:`Conv2D`, :class:`DepthwiseConv2D`), :class:`PrimaryCapsules`, and the
heads on top of the class capsules (:class:`ClassReadout`, :class:`Decoder`). The routed capsule layers
(:class:`RoutedCapsules`, :class:`InvertedAttentionCapsules`) and how a batch is routed live in
:mod:`capsjax.nn.routed_capsules`; this module re-exports them, so every layer is imported from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from capsjax.nn.routed_capsules import (
    InvertedAttentionCapsules,
    RoutedCapsules,
    input_activations,
    map_in_chunks,
    resolve_chunk_size,
)
from capsjax.ops.convolution import Lowering, conv2d, conv_output_size, depthwise_conv2d
from capsjax.ops.masking import label_mask, length_mask, mask_capsules
from capsjax.ops.squashing import safe_norm, squash

# Every public name, the re-exported ones included (the API reference documents them here), in the
# order of the reference.
__all__ = [
    "KERNEL_INITS",
    "kernel_initializer",
    "Conv2D",
    "DepthwiseConv2D",
    "PrimaryCapsules",
    "RoutedCapsules",
    "map_in_chunks",
    "resolve_chunk_size",
    "input_activations",
    "InvertedAttentionCapsules",
    "ClassReadout",
    "Decoder",
]

KERNEL_INITS = {
    "lecun_normal": nnx.initializers.lecun_normal(),  # Flax's default
    "glorot_uniform": nnx.initializers.glorot_uniform(),  # Keras's default
}


def kernel_initializer(name: str):
    """The initializer :data:`KERNEL_INITS` names (fan-in and fan-out count a conv's window).

    Raises:
      ValueError: a name not in :data:`KERNEL_INITS`.
    """
    if name not in KERNEL_INITS:
        raise ValueError(f"kernel_init: expected one of {list(KERNEL_INITS)}, got {name!r}")
    return KERNEL_INITS[name]


class Conv2D(nnx.Module):
    """VALID 2-D convolution with a pluggable lowering (see :mod:`capsjax.ops.convolution`).

    Parameters: ``kernel [kh, kw, in_channels, out_channels]`` (``kernel_init``, a name in
    :data:`KERNEL_INITS`; LeCun-normal by default) and ``bias [out_channels]`` (zeros).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: str = "VALID",
        lowering: Lowering = "auto",
        kernel_init: str = "lecun_normal",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        shape = (kernel_size, kernel_size, in_channels, out_channels)
        self.kernel = nnx.Param(kernel_initializer(kernel_init)(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32))
        self.stride = stride
        self.padding = padding
        self.lowering = lowering
        self.dtype = dtype

    def __call__(self, x: Float[Array, "batch height width in_channels"]) -> jax.Array:
        kernel = self.kernel[...].astype(self.dtype)
        y = conv2d(x.astype(self.dtype), kernel, stride=self.stride, padding=self.padding, lowering=self.lowering)
        return y + self.bias[...].astype(self.dtype)[None, None, None, :]


class DepthwiseConv2D(nnx.Module):
    """VALID depthwise 2-D convolution (:func:`capsjax.ops.convolution.depthwise_conv2d`).

    Parameters as ``nnx.Conv`` with ``feature_group_count=channels`` names, shapes and initialises
    them (so its checkpoints load): ``kernel [kh, kw, 1, channels]`` (LeCun-normal over the
    ``kh * kw`` inputs of each output) and ``bias [channels]`` (zeros).

    Args:
      channels: input and output channels.
      kernel_size: the square kernel's side.
      stride: spatial stride.
      dtype: compute dtype (parameters are float32).
      rngs: ``nnx.Rngs`` with a ``params`` stream.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from capsjax.nn import DepthwiseConv2D
      >>> DepthwiseConv2D(4, 9, rngs=nnx.Rngs(0))(jnp.ones((2, 9, 9, 4))).shape
      (2, 1, 1, 4)
    """

    def __init__(self, channels: int, kernel_size: int, *, stride: int = 1, dtype=jnp.float32, rngs: nnx.Rngs):
        shape = (kernel_size, kernel_size, 1, channels)
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.stride = stride
        self.dtype = dtype

    def __call__(self, x: Float[Array, "batch height width channels"]) -> jax.Array:
        y = depthwise_conv2d(x.astype(self.dtype), self.kernel[...].astype(self.dtype), stride=self.stride)
        return y + self.bias[...].astype(self.dtype)[None, None, None, :]


class PrimaryCapsules(nnx.Module):
    """Convolution -> capsules -> squash (Sabour et al. 2017, sec. 4).

    A ``kernel_size`` conv with ``num_types * caps_dim`` channels; each grid position holds
    ``num_types`` capsules of ``caps_dim`` dims. For MNIST: 20x20x256 -> 6x6 grid x 32 types x 8D
    = 1152 capsules. Capsules are ordered (row, column, type).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        num_types: int = 32,
        caps_dim: int = 8,
        kernel_size: int = 9,
        stride: int = 2,
        lowering: Lowering = "auto",
        kernel_init: str = "lecun_normal",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.conv = Conv2D(
            in_channels,
            num_types * caps_dim,
            kernel_size,
            stride=stride,
            lowering=lowering,
            kernel_init=kernel_init,
            dtype=dtype,
            rngs=rngs,
        )
        self.num_types = num_types
        self.caps_dim = caps_dim
        self.kernel_size = kernel_size
        self.stride = stride

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Grid of capsule positions for an input feature map of ``height x width``."""
        return (
            conv_output_size(height, self.kernel_size, self.stride),
            conv_output_size(width, self.kernel_size, self.stride),
        )

    def __call__(self, features: Float[Array, "batch height width channels"]) -> Float[Array, "batch caps caps_dim"]:
        y = self.conv(features)
        batch, grid_h, grid_w, _ = y.shape
        capsules = y.reshape(batch, grid_h * grid_w * self.num_types, self.caps_dim)
        return squash(capsules.astype(jnp.float32))


class ClassReadout(nnx.Module):
    """A class score from each class capsule's pose: ``sigmoid(w_k^T v_k + b_k)``, one learned
    ``w [classes, dim]`` (normal, std 0.1) and ``b [classes]`` (zeros) per class; how a model
    whose capsules' lengths carry no meaning (inverted dot-product routing's layer-normed poses)
    scores its classes for the margin loss."""

    def __init__(self, num_classes: int, caps_dim: int, *, rngs: nnx.Rngs):
        self.weight = nnx.Param(0.1 * jax.random.normal(rngs.params(), (num_classes, caps_dim), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_classes,), jnp.float32))

    def __call__(self, capsules: Float[Array, "batch classes dim"]) -> Float[Array, "batch classes"]:
        logits = jnp.einsum("bkd,kd->bk", capsules.astype(jnp.float32), self.weight[...]) + self.bias[...][None]
        return jax.nn.sigmoid(logits)


class Decoder(nnx.Module):
    """Reconstruction network: masked class capsules -> FC ReLU layers -> sigmoid image.

    The paper's: 160 -> 512 -> 1024 -> 784 (Sabour et al. 2017, Fig. 2).
    """

    def __init__(
        self,
        num_classes: int,
        caps_dim: int,
        image_shape: Sequence[int],
        *,
        hidden: Sequence[int] = (512, 1024),
        kernel_init: str = "lecun_normal",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        sizes = [num_classes * caps_dim, *hidden, math.prod(image_shape)]
        init = kernel_initializer(kernel_init)
        self.layers = nnx.List(
            [
                nnx.Linear(a, b, kernel_init=init, dtype=dtype, rngs=rngs)
                for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            ]
        )
        self.image_shape = tuple(image_shape)

    def __call__(
        self, capsules: Float[Array, "batch classes dim"], mask: Float[Array, "batch classes"]
    ) -> Float[Array, "batch height width channels"]:
        h = jax.vmap(mask_capsules)(capsules, mask)
        for layer in self.layers[:-1]:
            h = jax.nn.relu(layer(h))
        image = jax.nn.sigmoid(self.layers[-1](h).astype(jnp.float32))
        return image.reshape((capsules.shape[0],) + self.image_shape)

    def by_labels(self, capsules: Float[Array, "batch classes dim"], labels=None, scores=None) -> jax.Array:
        """Reconstructions from the capsules the labels pick.

        ``labels [batch]`` (training) decode each label's capsule; None (evaluation) the capsule of
        the highest ``scores [batch, classes]`` (None: the longest capsule); ``[batch, objects]``
        (MultiMNIST) each object's capsule alone, giving ``[batch, objects, height, width,
        channels]`` instead of ``[batch, height, width, channels]``.
        """
        num_classes = capsules.shape[1]
        if labels is None:
            return self(capsules, length_mask(safe_norm(capsules, eps=1e-9) if scores is None else scores))
        if labels.ndim == 2:
            objects = [self(capsules, label_mask(labels[:, k], num_classes)) for k in range(labels.shape[1])]
            return jnp.stack(objects, axis=1)
        return self(capsules, label_mask(labels, num_classes))
