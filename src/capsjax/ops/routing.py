"""Routing-by-agreement (Sabour et al. 2017, Procedure 1) as a pure function of one example, and the
registry of routing algorithms.

Every routing algorithm here has the signature of :class:`RoutingFn`: votes
``[in_caps, out_caps, out_dim]`` in, :class:`RoutingResult` out. Models pick one by name
through :func:`get_routing` (``"dynamic"``, ``"self_attention"``, ``"inverted_dot_product"``,
``"em"``), or
take any callable with that signature.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from capsjax.ops.attention_routing import inverted_dot_product_routing, self_attention_routing
from capsjax.ops.em_routing import em_routing_fn
from capsjax.ops.routing_types import RoutingFn, RoutingResult, check_routing_args
from capsjax.ops.squashing import squash

__all__ = [
    "ROUTING_FUNCTIONS",
    "RoutingFn",
    "RoutingResult",
    "coupling_coefficients",
    "dynamic_routing",
    "get_routing",
]


def coupling_coefficients(
    logits: Float[ArrayLike, "in_caps out_caps"], *, leaky: bool = False
) -> Float[Array, "in_caps out_caps"]:
    r"""Softmax of the routing logits over the OUTPUT capsules (the last axis).

    .. math:: c_{ij} = \frac{\exp b_{ij}}{\sum_k \exp b_{ik}}

    Each input capsule distributes its output among the capsules above it, so ``c[i, :]`` sums to 1.
    With ``leaky=True`` a constant zero "none of the above" logit joins the softmax and is dropped
    afterwards, so ``c[i, :]`` sums to less than 1 (orphan routing).

    Args:
      logits: ``b`` ``[in_caps, out_caps]``.
      leaky: add the orphan logit.

    Returns:
      ``c`` ``[in_caps, out_caps]``.
    """
    logits = jnp.asarray(logits)
    if not leaky:
        return jax.nn.softmax(logits, axis=-1)
    orphan = jnp.zeros(logits.shape[:-1] + (1,), logits.dtype)
    return jax.nn.softmax(jnp.concatenate([logits, orphan], axis=-1), axis=-1)[..., :-1]


def dynamic_routing(
    votes: Float[ArrayLike, "in_caps out_caps out_dim"],
    *,
    num_iters: int = 3,
    bias: Float[ArrayLike, "out_caps out_dim"] | None = None,
    leaky: bool = False,
    stop_gradient: bool = False,
) -> RoutingResult:
    r"""Dynamic routing between capsules for ONE example.

    With logits :math:`b_{ij} = 0`, repeat ``num_iters`` times:

    .. math::
        c_{ij} = \mathrm{softmax}_j(b_{ij}), \quad
        s_j = \sum_i c_{ij} \hat u_{j|i} \; (+\, \mathrm{bias}_j), \quad
        v_j = \mathrm{squash}(s_j), \quad
        b_{ij} \mathrel{+}= \hat u_{j|i} \cdot v_j

    The softmax runs over the output capsules ``j`` and the logits are per example: they start at
    zero for every example (batch with ``jax.vmap``; nothing is shared across the batch).
    The loop is unrolled (``num_iters`` is static under ``jit``); all products are einsums.

    where :math:`\hat u_{j|i}` are the votes (the paper's prediction vectors).

    Args:
      votes: ``[in_caps, out_caps, out_dim]``, from :func:`capsjax.capsule_votes`.
      num_iters: routing iterations, >= 1 (the paper uses 3).
      bias: optional ``[out_caps, out_dim]`` added to ``s`` (the official code has one).
      leaky: add a zero orphan logit to the softmax (couplings then sum to < 1).
      stop_gradient: let gradients reach ``votes`` only through the last iteration, a common
        variant; off by default, as in the official code.

    Returns:
      :class:`RoutingResult` with ``v [out_caps, out_dim]``, ``c`` and ``logits`` ``[in_caps, out_caps]``
      of the final iteration.

    References:
      Sabour, Frosst, Hinton (2017), Procedure 1 and eqs. 2-4.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from capsjax import dynamic_routing
      >>> votes = jax.random.normal(jax.random.key(0), (6, 3, 4))
      >>> out = dynamic_routing(votes, num_iters=3)
      >>> out.v.shape, out.c.shape
      ((3, 4), (6, 3))
      >>> bool(jnp.allclose(out.c.sum(axis=-1), 1.0))
      True
    """
    votes, bias = check_routing_args(votes, num_iters=num_iters, bias=bias)
    in_caps, out_caps, out_dim = votes.shape

    frozen_votes = jax.lax.stop_gradient(votes) if stop_gradient else votes
    logits = jnp.zeros((in_caps, out_caps), votes.dtype)
    for iteration in range(num_iters):
        last = iteration == num_iters - 1
        iteration_votes = votes if last else frozen_votes
        c = coupling_coefficients(logits, leaky=leaky)
        s = jnp.einsum("io,iod->od", c, iteration_votes)
        if bias is not None:
            s = s + bias
        v = squash(s)
        if not last:
            logits = logits + jnp.einsum("iod,od->io", iteration_votes, v)
    return RoutingResult(v=v, c=c, logits=logits)


ROUTING_FUNCTIONS: dict[str, RoutingFn] = {
    "dynamic": dynamic_routing,
    "self_attention": self_attention_routing,
    "inverted_dot_product": inverted_dot_product_routing,
    "em": em_routing_fn,
}


def get_routing(name_or_fn: str | RoutingFn) -> RoutingFn:
    """Look up a routing function by name (``"dynamic"``), or pass a callable through.

    Args:
      name_or_fn: a key of :data:`ROUTING_FUNCTIONS`, or any callable with the :class:`RoutingFn` signature.

    Returns:
      the routing function.
    """
    if callable(name_or_fn):
        return name_or_fn
    try:
        return ROUTING_FUNCTIONS[name_or_fn]
    except KeyError:
        raise ValueError(f"routing: unknown name {name_or_fn!r}; choose one of {sorted(ROUTING_FUNCTIONS)}") from None
