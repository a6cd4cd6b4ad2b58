r"""Attention-style routing for ONE example: Efficient-CapsNet's self-attention routing and
inverted dot-product attention routing. Both have the :class:`~capsjax.ops.routing_types.RoutingFn`
signature (votes ``[in_caps, out_caps, out_dim]`` in, :class:`RoutingResult` out).

- :func:`self_attention_routing` (Mazzia, Salvetti, Chiaberge 2021, "Efficient-CapsNet"): one
  pass, no iterations. Each vote's agreement with all votes for the same output capsule, scaled by
  :math:`1/\sqrt{d}`, goes through a softmax over the output capsules; learned log priors are added;
  the weighted votes are summed and squashed with the paper's squash variant
  :math:`(1 - e^{-\|s\|}) \, s / \|s\|`.
- :func:`inverted_dot_product_routing` (Tsai, Srivastava, Goh, Salakhutdinov 2020): the output
  poses start at zero; each iteration scores every vote against the current output pose (dot
  product), routes by a softmax over the output capsules, and sets the output poses to the layer
  norm of the routed sum. All output capsules update together ("concurrent" updates).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Float

from capsjax.ops._shapes import check_shape
from capsjax.ops.routing_types import RoutingResult, check_routing_args

DEFAULT_EPS = 1e-7


def efficient_squash(s: ArrayLike, *, axis: int = -1, eps: float = DEFAULT_EPS) -> jax.Array:
    r"""Efficient-CapsNet's squash: :math:`v = (1 - e^{-\|s\|}) \, s / \|s\|`, lengths in [0, 1).

    :math:`\|s\|` is computed as :math:`\sqrt{|s|^2 + \epsilon}`, so value and gradient are finite at
    :math:`s = 0` (where :math:`v = 0`).

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax.ops.attention_routing import efficient_squash
      >>> round(float(jnp.linalg.norm(efficient_squash(jnp.array([3.0, 4.0])))), 4)  # 1 - exp(-5)
      0.9933
    """
    s = jnp.asarray(s)
    norm = jnp.sqrt(jnp.sum(jnp.square(s), axis=axis, keepdims=True) + eps)
    return (1.0 - jnp.exp(-norm)) * s / norm


def self_attention_routing(
    votes: Float[ArrayLike, "in_caps out_caps out_dim"],
    *,
    num_iters: int = 1,
    bias: Float[ArrayLike, "out_caps out_dim"] | None = None,
    log_priors: Float[ArrayLike, "in_caps out_caps"] | None = None,
) -> RoutingResult:
    r"""Efficient-CapsNet's self-attention routing for ONE example (non-iterative).

    .. math::
        a_{ij} = \frac{1}{\sqrt{d}} \sum_k \hat u_{j|i} \cdot \hat u_{j|k}, \quad
        c_{ij} = \mathrm{softmax}_j(a_{ij}) + b_{ij}, \quad
        s_j = \sum_i c_{ij} \hat u_{j|i}, \quad
        v_j = (1 - e^{-\|s_j\|}) \frac{s_j}{\|s_j\|}

    Args:
      votes: ``[in_caps, out_caps, out_dim]``.
      num_iters: accepted for the shared signature and ignored (the algorithm has no iterations).
      bias: optional ``[out_caps, out_dim]`` added to ``s``.
      log_priors: ``b`` ``[in_caps, out_caps]``, the learned priors added to the couplings (zero if None).

    Returns:
      :class:`RoutingResult` with ``v [out_caps, out_dim]``, ``c`` (softmax plus priors) and
      ``logits`` (the scaled agreements :math:`a`) ``[in_caps, out_caps]``.

    References:
      Mazzia, Salvetti, Chiaberge (2021), "Efficient-CapsNet: capsule network with self-attention
      routing", Scientific Reports 11, eq. 4-7.
    """
    votes, bias = check_routing_args(votes, num_iters=num_iters, bias=bias)
    in_caps, out_caps, out_dim = votes.shape
    totals = jnp.sum(votes, axis=0)  # [out_caps, out_dim]: sum over k of u_hat_{j|k}
    logits = jnp.einsum("iod,od->io", votes, totals) / jnp.sqrt(jnp.asarray(out_dim, votes.dtype))
    c = jax.nn.softmax(logits, axis=-1)
    if log_priors is not None:
        log_priors = jnp.asarray(log_priors)
        check_shape("log_priors", log_priors, (in_caps, out_caps))
        c = c + log_priors
    s = jnp.einsum("io,iod->od", c, votes)
    if bias is not None:
        s = s + bias
    return RoutingResult(v=efficient_squash(s), c=c, logits=logits)


def layer_norm(x: ArrayLike, *, axis: int = -1, eps: float = 1e-5, scale=None, offset=None) -> jax.Array:
    """``scale * (x - mean) / sqrt(var + eps) + offset`` over ``axis``; ``scale`` and ``offset`` (1 and 0
    if None) have that axis's size and ``axis`` must be the last one for them."""
    x = jnp.asarray(x)
    mean = jnp.mean(x, axis=axis, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axis, keepdims=True)
    normalized = (x - mean) / jnp.sqrt(var + eps)
    # scale and offset span the normalised axis only: broadcast them over the others explicitly
    normalized = normalized if scale is None else normalized * jnp.broadcast_to(jnp.asarray(scale), x.shape)
    return normalized if offset is None else normalized + jnp.broadcast_to(jnp.asarray(offset), x.shape)


def inverted_dot_product_routing(
    votes: Float[ArrayLike, "in_caps out_caps out_dim"],
    *,
    num_iters: int = 3,
    bias: Float[ArrayLike, "out_caps out_dim"] | None = None,
    normalize: bool = True,
    eps: float = 1e-5,
    norm_scale: Float[ArrayLike, " out_dim"] | None = None,
    norm_offset: Float[ArrayLike, " out_dim"] | None = None,
) -> RoutingResult:
    r"""Inverted dot-product attention routing for ONE example.

    With output poses :math:`p_j = 0`, repeat ``num_iters`` times:

    .. math::
        a_{ij} = p_j \cdot \hat u_{j|i}, \quad
        r_{ij} = \mathrm{softmax}_j(a_{ij}), \quad
        p_j = \mathrm{LayerNorm}\Big(\sum_i r_{ij} \hat u_{j|i}\Big)

    The first iteration routes uniformly (all agreements are zero). ``normalize=False`` drops the
    layer norm (then :math:`p_j` is the routed sum).

    Args:
      votes: ``[in_caps, out_caps, out_dim]``.
      num_iters: iterations, >= 1 (the paper uses 2 or 3).
      bias: optional ``[out_caps, out_dim]`` added to the routed sum before the layer norm.
      normalize: apply the layer norm over ``out_dim``.
      eps: the layer norm's epsilon.
      norm_scale, norm_offset: the layer norm's learned scale and offset ``[out_dim]``, shared by
        the output capsules (as the paper's ``LayerNorm``); 1 and 0 if None.

    Returns:
      :class:`RoutingResult` with the output poses ``v [out_caps, out_dim]``, the final routing
      probabilities ``c`` and agreements ``logits`` ``[in_caps, out_caps]``.

    References:
      Tsai, Srivastava, Goh, Salakhutdinov (2020), "Capsules with inverted dot-product attention
      routing", ICLR, Procedure 1.
    """
    votes, bias = check_routing_args(votes, num_iters=num_iters, bias=bias)
    in_caps, out_caps, out_dim = votes.shape
    poses = jnp.zeros((out_caps, out_dim), votes.dtype)
    for name, value in (("norm_scale", norm_scale), ("norm_offset", norm_offset)):
        if value is not None:
            check_shape(name, jnp.asarray(value), (out_dim,))
    for _ in range(num_iters):
        logits = jnp.einsum("iod,od->io", votes, poses)
        c = jax.nn.softmax(logits, axis=-1)
        routed = jnp.einsum("io,iod->od", c, votes)
        if bias is not None:
            routed = routed + bias
        poses = layer_norm(routed, eps=eps, scale=norm_scale, offset=norm_offset) if normalize else routed
    return RoutingResult(v=poses, c=c, logits=logits)
