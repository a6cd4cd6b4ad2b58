"""The types every routing algorithm shares: :class:`RoutingResult` and the :class:`RoutingFn` signature."""

from __future__ import annotations

import inspect
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
      activations: the output capsules' activations ``[out_caps]`` within (0, 1), for algorithms
        whose capsules carry one beside their pose (EM routing); None for the others, whose
        capsules' lengths play that part.
    """

    v: Float[Array, "out_caps out_dim"]
    c: Float[Array, "in_caps out_caps"]
    logits: Float[Array, "in_caps out_caps"]
    activations: Float[Array, " out_caps"] | None = None


class RoutingFn(Protocol):
    """The signature every routing algorithm shares: votes of ONE example in, :class:`RoutingResult` out.

    Algorithm-specific options (``leaky=...``) are further keyword arguments with defaults. Two
    optional keywords have a shared meaning: ``activations`` ``[in_caps]``, the input capsules'
    activations (EM routing; :class:`capsjax.nn.RoutedCapsules` passes the input capsules' lengths),
    and the learned parameters of :data:`LEARNED_ROUTING_PARAMETERS` (learned by the layer when the
    function takes them).
    """

    def __call__(
        self,
        votes: Float[ArrayLike, "in_caps out_caps out_dim"],
        *,
        num_iters: int,
        bias: Float[ArrayLike, "out_caps out_dim"] | None = None,
    ) -> RoutingResult: ...


# Learned parameters a routing function may take as keywords: their axes (named as the votes')
# and initial value. RoutedCapsules(learn_routing=True) creates and passes those its function takes.
LEARNED_ROUTING_PARAMETERS = {
    "log_priors": (("in_caps", "out_caps"), 0.0),  # self-attention: priors added to the couplings
    "beta_u": (("out_caps",), 0.0),  # EM: cost per unit of variance
    "beta_a": (("out_caps",), 0.0),  # EM: activation threshold
    "norm_scale": (("out_dim",), 1.0),  # inverted dot-product: the layer norm's scale
    "norm_offset": (("out_dim",), 0.0),  # inverted dot-product: the layer norm's offset
}


def learned_parameters(routing_fn) -> tuple[str, ...]:
    """The names in :data:`LEARNED_ROUTING_PARAMETERS` that ``routing_fn`` takes as keywords."""
    takes = inspect.signature(routing_fn).parameters
    return tuple(name for name in LEARNED_ROUTING_PARAMETERS if name in takes)


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
