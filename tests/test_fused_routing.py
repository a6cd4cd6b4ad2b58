"""The fused path (votes never formed) equals dynamic routing of the votes, in value and gradient."""

import chex
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from capsjax import RoutedCapsules, capsule_votes, dynamic_routing
from capsjax.ops.fused_routing import vote_and_route


def reference(u, W, **options):
    return jax.vmap(lambda one: dynamic_routing(capsule_votes(one, W), **options))(u)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("num_iters", [1, 3])
@pytest.mark.parametrize("options", [{}, {"leaky": True}, {"stop_gradient": True}, {"bias": True}], ids=str)
def test_equals_the_reference_in_value_and_gradient(num_iters, options):
    u = 0.5 * jax.random.normal(jax.random.key(0), (3, 12, 4), jnp.float64)
    W = 0.5 * jax.random.normal(jax.random.key(1), (12, 5, 6, 4), jnp.float64)
    options = dict(options, num_iters=num_iters)
    if options.pop("bias", False):
        options["bias"] = 0.1 * jax.random.normal(jax.random.key(2), (5, 6), jnp.float64)
    chex.assert_trees_all_close(vote_and_route(u, W, **options), reference(u, W, **options), rtol=1e-10, atol=1e-12)

    def loss(route, u, W):
        out = route(u, W, **options)
        return jnp.sum(out.v * jnp.arange(6.0)[None, None, :]) + jnp.sum(out.c**2)

    chex.assert_trees_all_close(
        jax.grad(loss, argnums=(1, 2))(vote_and_route, u, W),
        jax.grad(loss, argnums=(1, 2))(reference, u, W),
        rtol=1e-9,
        atol=1e-12,
    )


def test_layer_fused_path_equals_its_reference_path():
    layer = RoutedCapsules(12, 8, 5, 16, num_iters=3, use_bias=True, rngs=nnx.Rngs(0))
    u = 0.3 * jax.random.normal(jax.random.key(1), (4, 12, 8))
    chex.assert_trees_all_close(layer(u, fused=True), layer(u), rtol=1e-5, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match=r"W: expected shape \[12, out_caps, out_dim, 4\]"):
        vote_and_route(jnp.zeros((2, 12, 4)), jnp.zeros((12, 5, 6, 3)))
    with pytest.raises(ValueError, match="num_iters"):
        vote_and_route(jnp.zeros((2, 12, 4)), jnp.zeros((12, 5, 6, 4)), num_iters=0)
