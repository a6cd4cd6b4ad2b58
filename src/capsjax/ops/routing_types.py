"""The types every routing algorithm shares: :class:`RoutingResult` and the :class:`RoutingFn` signature."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from jax.typing import ArrayLike
from jaxtyping import Array, Float


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
