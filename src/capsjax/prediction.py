"""Prediction vectors: each input capsule's vote for each output capsule (Sabour et al. 2017, eq. 2)."""

from __future__ import annotations

import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from capsjax._checks import check_shape


def predict(
    u: Float[ArrayLike, "in_caps in_dim"],
    W: Float[ArrayLike, "in_caps out_caps out_dim in_dim"],
) -> Float[Array, "in_caps out_caps out_dim"]:
    r"""Prediction vectors :math:`\hat u_{j|i} = W_{ij} u_i` for ONE example.

    One ``einsum`` (a batched matrix-vector product over ``in_caps``); batch it with ``jax.vmap``
    over ``u`` only (``in_axes=(0, None)``), which XLA turns into a single ``dot_general``.

    Args:
      u: input capsules ``[in_caps, in_dim]``.
      W: transformation matrices ``[in_caps, out_caps, out_dim, in_dim]``.

    Returns:
      ``u_hat`` ``[in_caps, out_caps, out_dim]``.

    References:
      Sabour, Frosst, Hinton (2017), eq. 2.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax import predict
      >>> u = jnp.ones((3, 2))
      >>> W = jnp.ones((3, 4, 5, 2))
      >>> predict(u, W).shape
      (3, 4, 5)
    """
    u = jnp.asarray(u)
    W = jnp.asarray(W)
    check_shape("u", u, ("in_caps", "in_dim"))
    check_shape("W", W, (u.shape[0], "out_caps", "out_dim", u.shape[1]))
    return jnp.einsum("iodk,ik->iod", W, u)
