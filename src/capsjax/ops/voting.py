r"""Votes: each input capsule's prediction for each output capsule (Sabour et al. 2017, eq. 2).

The paper calls them prediction vectors :math:`\hat u_{j|i}`; capsjax calls them *votes* everywhere.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from capsjax.ops._shapes import check_shape


def capsule_votes(
    u: Float[ArrayLike, "in_caps in_dim"],
    W: Float[ArrayLike, "in_caps out_caps out_dim in_dim"],
) -> Float[Array, "in_caps out_caps out_dim"]:
    r"""Votes (the paper's prediction vectors) of every input capsule for every output capsule, for ONE example.

    .. math:: \hat u_{j|i} = W_{ij} \, u_i

    One ``einsum`` (a batched matrix-vector product over ``in_caps``); batch it with ``jax.vmap``
    over ``u`` only (``in_axes=(0, None)``), which XLA turns into a single ``dot_general``.

    Args:
      u: input capsules ``[in_caps, in_dim]``.
      W: transformation matrices ``[in_caps, out_caps, out_dim, in_dim]``.

    Returns:
      votes ``[in_caps, out_caps, out_dim]``.

    References:
      Sabour, Frosst, Hinton (2017), eq. 2.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax import capsule_votes
      >>> u = jnp.ones((3, 2))
      >>> W = jnp.ones((3, 4, 5, 2))
      >>> capsule_votes(u, W).shape
      (3, 4, 5)
    """
    u = jnp.asarray(u)
    W = jnp.asarray(W)
    check_shape("u", u, ("in_caps", "in_dim"))
    check_shape("W", W, (u.shape[0], "out_caps", "out_dim", u.shape[1]))
    return jnp.einsum("iodk,ik->iod", W, u)
