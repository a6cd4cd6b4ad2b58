"""The types every routing algorithm shares: :class:`RoutingResult` and the :class:`RoutingFn` signature."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from capsjax.ops._shapes import check_shape


class RoutingResult(NamedTuple):
    """What a routing function returns for one example.

    Attributes:
      v: output capsules ``[out_caps, out_dim]``.
      c: coupling coefficients of the final iteration ``[in_caps, out_caps]``.
      logits: the routing logits ``b`` that produced ``c`` ``[in_caps, out_caps]``.
    """

    v: Float[Array, "out_caps out_dim"]
    c: Float[Array, "in_caps out_caps"]
    logits: Float[Array, "in_caps out_caps"]


class RoutingFn(Protocol):
    """The signature every routing algorithm shares: votes of ONE example in, :class:`RoutingResult` out.

    Algorithm-specific options (``leaky=...``) are further keyword arguments with defaults.
    """

    def __call__(
        self,
        votes: Float[ArrayLike, "in_caps out_caps out_dim"],
        *,
        num_iters: int,
        bias: Float[ArrayLike, "out_caps out_dim"] | None = None,
    ) -> RoutingResult: ...


def check_routing_args(
    votes: ArrayLike, *, num_iters: int, bias: ArrayLike | None = None
) -> tuple[jax.Array, jax.Array | None]:
    """Validate a routing function's shared arguments; returns ``(votes, bias)`` as arrays.

    Raises:
      ValueError: ``num_iters`` is not a static int >= 1, ``votes`` not ``[in_caps, out_caps, out_dim]``,
        or ``bias`` not ``[out_caps, out_dim]``.
    """
    if not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"num_iters: expected a static int >= 1, got {num_iters!r}")
    votes = jnp.asarray(votes)
    check_shape("votes", votes, ("in_caps", "out_caps", "out_dim"))
    if bias is not None:
        bias = jnp.asarray(bias)
        check_shape("bias", bias, votes.shape[1:])
    return votes, bias
