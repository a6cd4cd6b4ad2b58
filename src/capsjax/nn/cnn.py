"""The baseline CNN of Sabour et al. (2017, sec. 5) and its configuration."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

import capsjax.nn.config_rules as rules
from capsjax.nn.interface import ModelOutput, check_images
from capsjax.nn.layers import Conv2D
from capsjax.ops.convolution import LOWERINGS


@dataclasses.dataclass(frozen=True)
class CNNConfig(rules.Checked):
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

    RULES: ClassVar[dict[str, rules.Rule]] = {
        "image_shape": rules.IMAGE_SHAPE,
        "num_classes": rules.NUM_CLASSES,
        "conv_channels": rules.sizes(),
        "kernel_size": rules.KERNEL,
        "hidden": rules.sizes(),
        "dropout": rules.BELOW_ONE,
        "conv_lowering": rules.one_of(LOWERINGS),
        "compute_dtype": rules.COMPUTE_DTYPE,
    }


class BaselineCNN(nnx.Module):
    """The paper's baseline CNN (Sabour et al. 2017, sec. 5), trained with cross-entropy (softmax
    for one label per image, per-class sigmoid for MultiMNIST's two).

    Example:
      >>> from flax import nnx
      >>> from capsjax import BaselineCNN, count_params
      >>> count_params(BaselineCNN(rngs=nnx.Rngs(0)))
      35445522
    """

    def __init__(self, config: CNNConfig | None = None, *, rngs: nnx.Rngs):
        config = config or CNNConfig()
        self.config = config
        dtype = jnp.dtype(config.compute_dtype)
        height, width, channels = config.image_shape
        widths = [channels, *config.conv_channels]
        self.convs = nnx.List(
            [
                Conv2D(a, b, config.kernel_size, padding="SAME", lowering=config.conv_lowering, dtype=dtype, rngs=rngs)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        sizes = [height * width * widths[-1], *config.hidden, config.num_classes]
        self.dense = nnx.List(
            [nnx.Linear(a, b, dtype=dtype, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )

    def __call__(self, x, labels=None, *, dropout_key=None, reconstruct: bool = True) -> ModelOutput:
        """``x [batch, height, width, channels]`` -> :class:`ModelOutput` with ``logits``.

        ``dropout_key`` switches on dropout (before the last layer, as in the paper); None is evaluation.
        ``labels`` and ``reconstruct`` are unused (no decoder).
        """
        check_images(x, self.config.image_shape)
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
        return ModelOutput(scores=jax.nn.softmax(logits, axis=-1), logits=logits)
