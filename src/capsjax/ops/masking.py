"""One-hot class masks: the targets of the losses, and which class capsule the decoder sees.

The decoder sees the true class capsule in training and the longest one otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int

from capsjax.ops._shapes import check_shape


def label_mask(labels: Int[ArrayLike, "..."], num_classes: int) -> Float[Array, "... classes"]:
    """One-hot mask ``[..., classes]`` (float32) from integer labels ``[...]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax import label_mask
      >>> label_mask(jnp.array([2, 0]), 3).tolist()
      [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """
    return jax.nn.one_hot(jnp.asarray(labels), num_classes, dtype=jnp.float32)


def multi_hot(labels: Int[ArrayLike, "... objects"], num_classes: int) -> Float[Array, "... classes"]:
    """Targets ``[..., classes]`` with a 1 for every class among ``labels [..., objects]`` (e.g. the two
    digits of a MultiMNIST image); a class named twice still counts once.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax.ops.masking import multi_hot
      >>> multi_hot(jnp.array([[0, 2], [1, 1]]), 3).tolist()
      [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    return jnp.clip(jnp.sum(label_mask(labels, num_classes), axis=-2), 0.0, 1.0)


def length_mask(lengths: Float[ArrayLike, "... classes"]) -> Float[Array, "... classes"]:
    """One-hot mask ``[..., classes]`` of the longest capsule (the predicted class)."""
    lengths = jnp.asarray(lengths)
    return label_mask(jnp.argmax(lengths, axis=-1), lengths.shape[-1])


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
