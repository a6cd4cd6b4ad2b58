r"""Votes and dynamic routing in one batched computation that never forms the votes (a faster path).

Equal to ``jax.vmap(lambda u: dynamic_routing(capsule_votes(u, W), ...))(u)``, which stays the
reference (tested against it). The votes :math:`\hat u_{j|i} = W_{ij} u_i` are
``[batch, in_caps, out_caps, out_dim]`` (94 MB at batch 128 for the paper's network) and dynamic
routing reads them twice per iteration. Both uses are linear in :math:`u_i`, so they can go through
the capsules ``u`` (half the size of the votes) instead:

.. math::
    s_j = \sum_i c_{ij} W_{ij} u_i = \sum_{i,k} (c_{ij} u_{ik}) W_{ij,:,k}, \qquad
    \hat u_{j|i} \cdot v_j = \sum_k u_{ik} \, (W_{ij}^\top v_j)_k

Each is one GEMM per output capsule type over ``in_caps * in_dim`` (9,216 for the paper's network),
batched over the examples, instead of a pass over the votes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Float

from capsjax.ops._shapes import check_shape
from capsjax.ops.routing import RoutingResult, coupling_coefficients
from capsjax.ops.squashing import squash


def vote_and_route(
    u: Float[ArrayLike, "batch in_caps in_dim"],
    W: Float[ArrayLike, "in_caps out_caps out_dim in_dim"],
    *,
    num_iters: int = 3,
    bias: Float[ArrayLike, "out_caps out_dim"] | None = None,
    leaky: bool = False,
    stop_gradient: bool = False,
) -> RoutingResult:
    """Dynamic routing of the votes ``W u`` of a BATCH, without forming the votes.

    Args:
      u: input capsules ``[batch, in_caps, in_dim]``.
      W: transformation matrices ``[in_caps, out_caps, out_dim, in_dim]``.
      num_iters, bias, leaky, stop_gradient: as :func:`capsjax.dynamic_routing`.

    Returns:
      :class:`RoutingResult` with a leading batch axis: ``v [batch, out_caps, out_dim]``,
      ``c`` and ``logits`` ``[batch, in_caps, out_caps]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from capsjax import capsule_votes, dynamic_routing
      >>> from capsjax.ops.fused_routing import vote_and_route
      >>> u = jax.random.normal(jax.random.key(0), (2, 6, 4))
      >>> W = jax.random.normal(jax.random.key(1), (6, 3, 5, 4))
      >>> fast = vote_and_route(u, W, num_iters=3)
      >>> slow = jax.vmap(lambda one: dynamic_routing(capsule_votes(one, W), num_iters=3))(u)
      >>> bool(jnp.allclose(fast.v, slow.v, atol=1e-5))
      True
    """
    if not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"num_iters: expected a static int >= 1, got {num_iters!r}")
    u, W = jnp.asarray(u), jnp.asarray(W)
    check_shape("u", u, ("batch", "in_caps", "in_dim"))
    batch, in_caps, in_dim = u.shape
    check_shape("W", W, (in_caps, "out_caps", "out_dim", in_dim))
    _, out_caps, out_dim, _ = W.shape
    if bias is not None:
        bias = jnp.asarray(bias)
        check_shape("bias", bias, (out_caps, out_dim))

    # W once in GEMM-friendly layouts: [out_caps, in_caps * in_dim, out_dim] and its transpose.
    w_flat = jnp.transpose(W, (1, 0, 3, 2)).reshape(out_caps, in_caps * in_dim, out_dim)
    frozen_u = jax.lax.stop_gradient(u) if stop_gradient else u
    frozen_w = jax.lax.stop_gradient(w_flat) if stop_gradient else w_flat
    logits = jnp.zeros((batch, in_caps, out_caps), u.dtype)
    for iteration in range(num_iters):
        last = iteration == num_iters - 1
        caps, weights = (u, w_flat) if last else (frozen_u, frozen_w)
        if iteration == 0:
            # softmax of the zero logits, written as the constant it is: XLA would otherwise spend
            # seconds constant-folding a softmax over [batch, in_caps, out_caps] zeros at compile time.
            c = jnp.full((batch, in_caps, out_caps), 1.0 / (out_caps + int(leaky)), u.dtype)
        else:
            c = coupling_coefficients(logits, leaky=leaky)
        # weighted[j, b, (i, k)] = c[b, i, j] u[b, i, k]
        weighted = (jnp.transpose(c, (2, 0, 1))[..., None] * caps[None]).reshape(out_caps, batch, in_caps * in_dim)
        s = jax.lax.dot_general(weighted, weights, (((2,), (1,)), ((0,), (0,))))  # [j, b, d]
        s = jnp.transpose(s, (1, 0, 2))
        if bias is not None:
            s = s + bias[None]
        v = squash(s)
        if not last:
            # back[j, b, (i, k)] = (W_ij^T v_j)_k; agreement[b, i, j] = sum_k u[b, i, k] back[j, b, i, k]
            back = jax.lax.dot_general(jnp.transpose(v, (1, 0, 2)), weights, (((2,), (2,)), ((0,), (0,))))
            back = back.reshape(out_caps, batch, in_caps, in_dim)
            logits = logits + jnp.einsum("bik,jbik->bij", caps, back)
    return RoutingResult(v=v, c=c, logits=logits)
