"""Capsule layers fed by routing: :class:`RoutedCapsules` (one layer, any routing function by name) and
:class:`InvertedAttentionCapsules` (a stack routed together), with how a batch is routed (``vmap`` of the
pure functions, or chunks of examples on CPU: :func:`resolve_chunk_size`, :func:`map_in_chunks`).

Thin, as every module of :mod:`capsjax.nn`: they own parameters and call the pure functions of
:mod:`capsjax.ops`. :mod:`capsjax.nn.layers` re-exports every public name.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from capsjax.ops._shapes import check_shape
from capsjax.ops.attention_routing import inverted_dot_product_routing_layers
from capsjax.ops.fused_routing import vote_and_route
from capsjax.ops.routing import RoutingFn, RoutingResult, dynamic_routing, get_routing
from capsjax.ops.routing_types import LEARNED_ROUTING_PARAMETERS, learned_parameters
from capsjax.ops.squashing import safe_norm
from capsjax.ops.voting import capsule_votes


class RoutedCapsules(nnx.Module):
    """A layer of capsules fed by routing-by-agreement from every capsule below.

    Parameters: ``W [in_caps, out_caps, out_dim, in_dim]`` (normal, std ``w_init_std``), if
    ``use_bias``, ``bias [out_caps, out_dim]``, and if ``learn_routing``, the routing function's own
    learned parameters among :data:`capsjax.ops.routing_types.LEARNED_ROUTING_PARAMETERS`, each an
    attribute of its name: ``log_priors [in_caps, out_caps]`` (zeros; Efficient-CapsNet's priors, of
    :func:`capsjax.self_attention_routing`), ``beta_u``, ``beta_a [out_caps]`` (zeros; EM routing's),
    ``norm_scale``, ``norm_offset [out_dim]`` (ones, zeros; the layer norm of inverted dot-product
    routing); dynamic routing has none. A routing function that takes ``activations`` (EM) gets the
    input capsules' lengths as their activations. The forward pass is ``jax.vmap`` of
    :func:`capsjax.capsule_votes` and of the routing function over the batch, or, with a
    ``chunk_size``, a loop over chunks of examples (:func:`jax.lax.map`) whose votes
    ``[chunk, in_caps, out_caps, out_dim]`` stay in the CPU cache while routing re-reads them, and
    are recomputed per chunk in the backward pass (``jax.checkpoint``). Same results either way.

    Args:
      routing: a name from :data:`capsjax.ROUTING_FUNCTIONS` or any callable with the
        :class:`capsjax.RoutingFn` signature.
      num_iters: routing iterations.
      routing_options: extra keyword arguments of the routing function (e.g. ``leaky=True``).
      learn_routing: learn the routing function's own parameters (above); an error for a function
        that takes none of them (dynamic routing).
      log_priors: deprecated name of ``learn_routing``.
      remat: wrap routing in ``jax.checkpoint`` (recompute it in the backward pass instead of
        storing its intermediates; cuts activation memory for large capsule counts).
      chunk_size: examples per chunk; 0 routes the whole batch at once; None (default) picks by
        backend (:func:`resolve_chunk_size`: 1 on CPU, where it is 3x faster for the paper's
        network, forward + backward; 0 elsewhere).
    """

    def __init__(
        self,
        in_caps: int,
        in_dim: int,
        out_caps: int,
        out_dim: int,
        *,
        routing: str | RoutingFn = "dynamic",
        num_iters: int = 3,
        routing_options: dict | None = None,
        use_bias: bool = False,
        learn_routing: bool = False,
        remat: bool = False,
        chunk_size: int | None = None,
        w_init_std: float = 0.01,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
        log_priors: bool | None = None,
    ):
        if log_priors is not None:
            warnings.warn(
                "RoutedCapsules(log_priors=...) is deprecated: use learn_routing=...", DeprecationWarning, stacklevel=2
            )
            learn_routing = log_priors
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 0):
            raise ValueError(f"chunk_size: expected None or an integer >= 0, got {chunk_size!r}")
        shape = (in_caps, out_caps, out_dim, in_dim)
        self.W = nnx.Param(w_init_std * jax.random.normal(rngs.params(), shape, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_caps, out_dim), jnp.float32)) if use_bias else None
        self.routing_fn = get_routing(routing)
        self.takes_activations = "activations" in inspect.signature(self.routing_fn).parameters
        learnable = learned_parameters(self.routing_fn)
        if learn_routing and not learnable:
            raise ValueError(
                f"learn_routing: the routing function {routing!r} takes none of the learned parameters "
                f"{list(LEARNED_ROUTING_PARAMETERS)}"
            )
        self.learned_names = learnable if learn_routing else ()
        clashes = sorted(set(self.learned_names) & set(routing_options or {}))
        if clashes:
            raise ValueError(f"routing_options: {clashes} are learned (learn_routing=True); drop them from the options")
        sizes = {"in_caps": in_caps, "out_caps": out_caps, "out_dim": out_dim}
        for name in self.learned_names:
            axes, initial = LEARNED_ROUTING_PARAMETERS[name]
            setattr(self, name, nnx.Param(jnp.full(tuple(sizes[a] for a in axes), initial, jnp.float32)))
        self.num_iters = num_iters
        self.routing_options = dict(routing_options or {})
        self.remat = remat
        self.chunk_size = chunk_size
        self.dtype = dtype

    def votes(self, u: Float[Array, "batch in_caps in_dim"]) -> Float[Array, "batch in_caps out_caps out_dim"]:
        """Votes of a batch (float32)."""
        self._check_input(u)
        return _batch_votes(u, self.W[...], self.dtype)

    def route(
        self,
        votes: Float[Array, "batch in_caps out_caps out_dim"],
        *,
        num_iters: int | None = None,
        primary: Float[Array, "batch in_caps in_dim"] | None = None,
    ) -> RoutingResult:
        """Route a batch of votes (``num_iters`` defaults to the layer's); ``primary``, the input
        capsules the votes came from, gives a routing that takes activations (EM) their lengths, as
        the forward pass does (None: the routing's default activations). Every field gets a batch axis."""
        bias = None if self.bias is None else self.bias[...]
        num_iters = self.num_iters if num_iters is None else num_iters
        activations = {} if primary is None else self._activations(primary)
        return _batch_route(votes, bias, self.routing_fn, num_iters, self._options(), activations)

    def __call__(self, u: Float[Array, "batch in_caps in_dim"], *, fused: bool = False) -> RoutingResult:
        """Returns :class:`RoutingResult` with a leading batch axis on every field.

        ``fused=True`` routes dynamic routing by :func:`capsjax.ops.fused_routing.vote_and_route`
        (same result; its forward pass is about 3x faster than the whole-batch one, its gradient no
        faster) when the layer does not route in chunks (chunks are faster still on CPU).
        """
        self._check_input(u)
        bias = None if self.bias is None else self.bias[...]
        routing_fn, num_iters, options, dtype = self.routing_fn, self.num_iters, self._options(), self.dtype
        if self.routes_in_chunks(u.shape[0]):
            chunk = resolve_chunk_size(self.chunk_size)
            W = self.W[...]

            def votes_then_route_one(u_one):
                votes = capsule_votes(u_one.astype(dtype), W.astype(dtype)).astype(jnp.float32)
                return routing_fn(votes, num_iters=num_iters, bias=bias, **options, **self._activations(u_one))

            return map_in_chunks(votes_then_route_one, u, chunk)
        if fused and routing_fn is dynamic_routing:
            W = self.W[...].astype(dtype)
            return vote_and_route(
                u.astype(dtype).astype(jnp.float32), W.astype(jnp.float32), num_iters=num_iters, bias=bias, **options
            )

        def votes_then_route(u, W, bias):
            return _batch_route(_batch_votes(u, W, dtype), bias, routing_fn, num_iters, options, self._activations(u))

        if self.remat:
            # Recompute the votes and the routing iterations in the backward pass: only u and W are
            # kept, instead of the votes ([batch, in_caps, out_caps, out_dim]) and every iteration's
            # intermediates.
            votes_then_route = jax.checkpoint(votes_then_route)
        return votes_then_route(u, self.W[...], bias)

    def routes_in_chunks(self, batch: int) -> bool:
        """Whether a batch of ``batch`` examples is routed in chunks (a ``lax.map`` loop, each chunk
        recomputed in the backward pass) rather than all at once."""
        return 0 < resolve_chunk_size(self.chunk_size) < batch

    def _activations(self, u: Float[Array, "... in_caps in_dim"]) -> dict:
        """``{"activations": the input capsules' lengths}`` for a routing that takes them (EM), else ``{}``."""
        return {"activations": input_activations(u)} if self.takes_activations else {}

    def _options(self) -> dict:
        """The routing function's keyword arguments: the configured options and the learned parameters."""
        return {**self.routing_options, **{name: getattr(self, name)[...] for name in self.learned_names}}

    def _check_input(self, u) -> None:
        in_caps, _, _, in_dim = self.W.shape
        check_shape("u", u, ("batch", in_caps, in_dim))


def map_in_chunks(fn, batch, chunk: int):
    """``fn`` of ONE example over the leading axis of ``batch``, ``chunk`` examples at a time
    (``lax.map``), each chunk recomputed in the backward pass (``jax.checkpoint``): how routing keeps
    an example's votes in cache on CPU."""
    return jax.lax.map(jax.checkpoint(fn), batch, batch_size=chunk)


def resolve_chunk_size(chunk_size: int | None, backend: str | None = None, *, on_cpu: int = 1) -> int:
    """Examples per chunk: ``chunk_size`` itself, or for None ``on_cpu`` on CPU and 0 (whole batch) elsewhere."""
    if chunk_size is not None:
        return chunk_size
    return on_cpu if (backend or jax.default_backend()) == "cpu" else 0


def _batch_votes(u: jax.Array, W: jax.Array, dtype) -> jax.Array:
    votes = jax.vmap(capsule_votes, in_axes=(0, None))(u.astype(dtype), W.astype(dtype))
    return votes.astype(jnp.float32)


def input_activations(u: Float[Array, "... in_caps in_dim"]) -> Float[Array, "... in_caps"]:
    """Vector capsules' activations for a routing that takes them (EM): their lengths, in [0, 1) for
    squashed capsules (the probability that the entity is present, Sabour et al. 2017)."""
    return safe_norm(u, eps=1e-9)


def _batch_route(
    votes: jax.Array, bias, routing_fn: RoutingFn, num_iters: int, options: dict, per_example: dict
) -> RoutingResult:
    """``routing_fn`` vmapped over the batch of ``votes`` and of the arrays in ``per_example`` (e.g.
    ``{"activations": [batch, in_caps]}``); ``bias`` and ``options`` are shared by every example."""

    def route_one(one, extra):
        return routing_fn(one, num_iters=num_iters, bias=bias, **options, **extra)

    return jax.vmap(route_one)(votes, per_example)


class InvertedAttentionCapsules(nnx.Module):
    """A stack of capsule layers routed together by inverted dot-product attention, with the paper's
    concurrent updates (:func:`capsjax.ops.attention_routing.inverted_dot_product_routing_layers`).

    ``sizes`` lists ``(capsules, dim)`` from the input capsules up to the top layer (e.g. the
    classes). Parameters per routed layer ``l``: ``weights[l] [caps_l, caps_{l+1}, dim_{l+1}, dim_l]``
    (normal, std ``w_init_std``) and the layer norm's ``norm_scales[l]``, ``norm_offsets[l]``
    ``[dim_{l+1}]`` (ones, zeros). The forward pass is ``jax.vmap`` of the pure function over the batch.

    Args:
      sizes: ``[(caps_0, dim_0), (caps_1, dim_1), ...]``, at least two entries.
      num_iters: routing iterations (the paper: 2 or 3).
      concurrent: all layers updated each iteration (True) or one layer after the other.
      w_init_std: std of the initial transformation tensors.
      rngs: parameter initialisation.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from capsjax.nn.layers import InvertedAttentionCapsules
      >>> stack = InvertedAttentionCapsules([(32, 8), (16, 12), (10, 16)], rngs=nnx.Rngs(0))
      >>> [r.v.shape for r in stack(jnp.ones((2, 32, 8)))]
      [(2, 16, 12), (2, 10, 16)]
    """

    def __init__(
        self,
        sizes: Sequence[tuple[int, int]],
        *,
        num_iters: int = 3,
        concurrent: bool = True,
        w_init_std: float = 0.1,
        rngs: nnx.Rngs,
    ):
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least 2 (capsules, dim) entries, got {list(sizes)!r}")
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.weights = nnx.List(
            [
                nnx.Param(w_init_std * jax.random.normal(rngs.params(), (n_in, n_out, d_out, d_in), jnp.float32))
                for (n_in, d_in), (n_out, d_out) in pairs
            ]
        )
        self.norm_scales = nnx.List([nnx.Param(jnp.ones((d_out,), jnp.float32)) for _, (_, d_out) in pairs])
        self.norm_offsets = nnx.List([nnx.Param(jnp.zeros((d_out,), jnp.float32)) for _, (_, d_out) in pairs])
        self.sizes = tuple(tuple(size) for size in sizes)
        self.num_iters = num_iters
        self.concurrent = concurrent

    def __call__(self, u: Float[Array, "batch in_caps in_dim"]) -> list[RoutingResult]:
        """One :class:`RoutingResult` per routed layer, bottom to top, each field with a batch axis."""
        check_shape("u", u, ("batch", *self.sizes[0]))
        weights = [w[...] for w in self.weights]
        scales = [p[...] for p in self.norm_scales]
        offsets = [p[...] for p in self.norm_offsets]

        def route_one(u_one):
            return inverted_dot_product_routing_layers(
                u_one,
                weights,
                num_iters=self.num_iters,
                concurrent=self.concurrent,
                norm_scales=scales,
                norm_offsets=offsets,
            )

        return jax.vmap(route_one)(u)
