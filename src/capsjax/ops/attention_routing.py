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
  norm of the routed sum. :func:`inverted_dot_product_routing_layers` routes a stack of capsule
  layers with the paper's concurrent updates (all layers at once, each iteration).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Float

from capsjax.ops._shapes import check_shape
from capsjax.ops.routing_types import RoutingResult, check_routing_args
from capsjax.ops.voting import capsule_votes

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
    for name, value in (("norm_scale", norm_scale), ("norm_offset", norm_offset)):
        if value is not None:
            check_shape(name, jnp.asarray(value), (out_dim,))
    result = None
    for _ in range(num_iters):
        poses = None if result is None else result.v
        result = inverted_attention_step(
            votes, poses, bias=bias, normalize=normalize, eps=eps, norm_scale=norm_scale, norm_offset=norm_offset
        )
    return result


def inverted_attention_step(
    votes: Float[ArrayLike, "in_caps out_caps out_dim"],
    poses: Float[ArrayLike, "out_caps out_dim"] | None,
    *,
    bias=None,
    normalize: bool = True,
    eps: float = 1e-5,
    norm_scale=None,
    norm_offset=None,
) -> RoutingResult:
    """One iteration of inverted dot-product attention routing for ONE example: the votes scored
    against the current output ``poses`` (None: zero, i.e. uniform routing), a softmax over the
    output capsules, the routed sum (plus ``bias``) layer-normed into the new poses
    ``[out_caps, out_dim]``. See :func:`inverted_dot_product_routing` for the arguments."""
    votes = jnp.asarray(votes)
    if poses is None:
        logits = jnp.zeros(votes.shape[:2], votes.dtype)
    else:
        logits = jnp.einsum("iod,od->io", votes, jnp.asarray(poses))
    c = jax.nn.softmax(logits, axis=-1)
    routed = jnp.einsum("io,iod->od", c, votes)
    if bias is not None:
        routed = routed + bias
    poses = layer_norm(routed, eps=eps, scale=norm_scale, offset=norm_offset) if normalize else routed
    return RoutingResult(v=poses, c=c, logits=logits)


def inverted_dot_product_routing_layers(
    poses: Float[ArrayLike, "in_caps in_dim"],
    weights: Sequence[jax.Array],
    *,
    num_iters: int = 3,
    concurrent: bool = True,
    norm_scales: Sequence[jax.Array | None] | None = None,
    norm_offsets: Sequence[jax.Array | None] | None = None,
    eps: float = 1e-5,
) -> list[RoutingResult]:
    r"""Inverted dot-product attention routing through a stack of capsule layers for ONE example,
    with the paper's concurrent updates.

    Layer ``l`` votes for layer ``l + 1`` with ``weights[l]`` ``[caps_l, caps_{l+1}, dim_{l+1},
    dim_l]`` (:func:`capsjax.capsule_votes`). The first iteration is one forward pass: each layer
    routes uniformly from the new poses of the layer below. Each further iteration
    (``num_iters - 1``) updates every layer at once (``concurrent=True``, Tsai et al.'s concurrent
    routing): layer ``l + 1``'s new poses come from the previous iteration's poses of layers ``l``
    and ``l + 1``, so a change reaches the top one layer per iteration. ``concurrent=False``
    routes layer by layer instead, ``num_iters`` iterations each (:func:`inverted_dot_product_routing`
    applied in turn). With one layer both are :func:`inverted_dot_product_routing`.

    Args:
      poses: the input capsules' poses ``[in_caps, in_dim]`` (e.g. primary capsules).
      weights: one transformation tensor per routed layer, ``[caps_l, caps_{l+1}, dim_{l+1}, dim_l]``.
      num_iters: iterations, >= 1.
      concurrent: update all layers together (True) or one after the other (False).
      norm_scales, norm_offsets: per layer, the layer norm's learned scale and offset
        ``[dim_{l+1}]`` (or None for 1 and 0).
      eps: the layer norm's epsilon.

    Returns:
      one :class:`RoutingResult` per routed layer, bottom to top (``v [caps_{l+1}, dim_{l+1}]``).

    References:
      Tsai, Srivastava, Goh, Salakhutdinov (2020), "Capsules with inverted dot-product attention
      routing", ICLR, Procedure 1 and sec. 2.2 (concurrent routing).
    """
    if not isinstance(num_iters, int) or num_iters < 1:
        raise ValueError(f"num_iters: expected a static int >= 1, got {num_iters!r}")
    layers = len(weights)
    if layers < 1:
        raise ValueError("weights: expected at least one layer's transformation tensor")
    scales = list(norm_scales) if norm_scales is not None else [None] * layers
    offsets = list(norm_offsets) if norm_offsets is not None else [None] * layers
    if len(scales) != layers or len(offsets) != layers:
        raise ValueError(f"norm_scales, norm_offsets: expected {layers} entries (one per layer)")
    poses = jnp.asarray(poses)
    norm = [dict(eps=eps, norm_scale=scales[l], norm_offset=offsets[l]) for l in range(layers)]
    if not concurrent:
        results = []
        for l in range(layers):
            votes = capsule_votes(poses if l == 0 else results[-1].v, weights[l])
            results.append(inverted_dot_product_routing(votes, num_iters=num_iters, **norm[l]))
        return results
    results = []
    for l in range(layers):  # the first iteration: a forward pass, uniform routing at every layer
        results.append(
            inverted_attention_step(capsule_votes(poses if l == 0 else results[-1].v, weights[l]), None, **norm[l])
        )
    for _ in range(num_iters - 1):  # every layer from the previous iteration's poses, all at once
        below = [poses] + [result.v for result in results[:-1]]
        results = [
            inverted_attention_step(capsule_votes(below[l], weights[l]), results[l].v, **norm[l]) for l in range(layers)
        ]
    return results
