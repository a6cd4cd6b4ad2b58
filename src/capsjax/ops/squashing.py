"""The squash non-linearity of capsule networks (Sabour et al. 2017, eq. 1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

DEFAULT_EPS = 1e-7


def squash(s: ArrayLike, *, axis: int = -1, eps: float = DEFAULT_EPS) -> jax.Array:
    r"""Shrink a vector to length in [0, 1) while keeping its direction.

    .. math:: v = \frac{|s|^2}{1 + |s|^2} \frac{s}{\sqrt{|s|^2 + \epsilon}}

    The epsilon sits inside the square root, so value and gradient (of every order) are finite
    at ``s = 0``: the gradient there is exactly 0 in every direction. ``jnp.linalg.norm`` is avoided
    on purpose: its gradient at zero is NaN, the most common bug in CapsNet implementations.

    Works on any shape; ``axis`` is the capsule dimension.

    Args:
      s: capsule pre-activations, ``[..., dim]`` (with ``dim`` on ``axis``).
      axis: the axis holding the capsule's vector.
      eps: added to ``|s|^2`` under the square root; it changes the value by a relative
        ``O(eps / |s|^2)``.

    Returns:
      ``v`` with the shape of ``s``; ``|v| < 1``.

    References:
      Sabour, Frosst, Hinton (2017), "Dynamic Routing Between Capsules", eq. 1.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax import squash
      >>> v = squash(jnp.array([3.0, 4.0]))   # |s| = 5 -> |v| = 25/26
      >>> round(float(jnp.linalg.norm(v)), 4)
      0.9615
      >>> squash(jnp.zeros(3)).tolist()
      [0.0, 0.0, 0.0]
    """
    s = jnp.asarray(s)
    if s.ndim == 0:
        raise ValueError(f"s: expected at least rank 1 [..., dim], got shape {s.shape}")
    squared_norm = jnp.sum(jnp.square(s), axis=axis, keepdims=True)
    scale = squared_norm / (1.0 + squared_norm) / jnp.sqrt(squared_norm + eps)
    return scale * s


def safe_norm(s: ArrayLike, *, axis: int = -1, eps: float = DEFAULT_EPS) -> jax.Array:
    r"""Vector length with a finite gradient at ``s = 0``.

    .. math:: \|s\|_\epsilon = \sqrt{|s|^2 + \epsilon}

    Args:
      s: vectors ``[..., dim]``.
      axis: the vector axis, reduced away.
      eps: added under the square root.

    Returns:
      lengths ``[...]``.
    """
    s = jnp.asarray(s)
    return jnp.sqrt(jnp.sum(jnp.square(s), axis=axis) + eps)
