"""Which class capsule the decoder sees: the true one in training, the longest one otherwise."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from capsjax._checks import check_shape


def label_mask(labels: ArrayLike, num_classes: int) -> Float[Array, "... classes"]:
    """One-hot mask ``[..., classes]`` from integer labels ``[...]``."""
    return jax.nn.one_hot(jnp.asarray(labels), num_classes, dtype=jnp.float32)


def length_mask(lengths: Float[ArrayLike, "... classes"]) -> Float[Array, "... classes"]:
    """One-hot mask ``[..., classes]`` of the longest capsule (the predicted class)."""
    lengths = jnp.asarray(lengths)
    return jax.nn.one_hot(jnp.argmax(lengths, axis=-1), lengths.shape[-1], dtype=jnp.float32)


def mask_capsules(
    capsules: Float[ArrayLike, "classes dim"], mask: Float[ArrayLike, " classes"]
) -> Float[Array, " classes_times_dim"]:
    """Zero all capsules but the masked ones and flatten, for ONE example (the decoder's input).

    Args:
      capsules: ``[classes, dim]``.
      mask: ``[classes]``, usually one-hot.

    Returns:
      ``[classes * dim]``.
    """
    capsules = jnp.asarray(capsules)
    mask = jnp.asarray(mask)
    check_shape("capsules", capsules, ("classes", "dim"))
    check_shape("mask", mask, (capsules.shape[0],))
    return (capsules * mask[:, None].astype(capsules.dtype)).reshape(-1)
