import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from capsjax import Conv2D, Decoder, PrimaryCapsules, RoutedCapsules, capsule_votes, dynamic_routing


def test_primary_capsules_mnist_shape_and_norm():
    layer = PrimaryCapsules(16, num_types=4, caps_dim=8, rngs=nnx.Rngs(0))
    u = layer(jax.random.normal(jax.random.key(0), (2, 20, 20, 16)))
    chex.assert_shape(u, (2, 6 * 6 * 4, 8))
    assert jnp.all(jnp.linalg.norm(u, axis=-1) < 1.0)
    assert layer.grid_size(20, 20) == (6, 6)


def test_routed_capsules_equals_pure_functions():
    layer = RoutedCapsules(12, 8, 5, 16, num_iters=2, use_bias=True, rngs=nnx.Rngs(0))
    u = 0.3 * jax.random.normal(jax.random.key(1), (3, 12, 8))
    out = layer(u)
    for k in range(3):
        expected = dynamic_routing(capsule_votes(u[k], layer.W[...]), num_iters=2, bias=layer.bias[...])
        chex.assert_trees_all_close(jax.tree.map(lambda x, k=k: x[k], out), expected, rtol=1e-5, atol=1e-6)


def test_routed_capsules_accepts_custom_routing_and_remat():
    def mean_routing(votes, *, num_iters, bias=None):
        from capsjax import RoutingResult

        c = jnp.full(votes.shape[:2], 1.0 / votes.shape[1])
        return RoutingResult(v=votes.mean(0), c=c, logits=jnp.zeros_like(c))

    u = jax.random.normal(jax.random.key(1), (2, 6, 4))
    layer = RoutedCapsules(6, 4, 3, 5, routing=mean_routing, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(layer(u).v, jnp.einsum("iodk,bik->biod", layer.W[...], u).mean(1), rtol=1e-5)

    plain = RoutedCapsules(6, 4, 3, 5, rngs=nnx.Rngs(0))
    remat = RoutedCapsules(6, 4, 3, 5, remat=True, rngs=nnx.Rngs(0))
    grad = lambda m: nnx.grad(lambda m: jnp.sum(m(u).v ** 2))(m)
    chex.assert_trees_all_close(remat(u), plain(u))
    chex.assert_trees_all_close(nnx.state(grad(remat)), nnx.state(grad(plain)), rtol=1e-5)


def test_routed_capsules_bad_input():
    layer = RoutedCapsules(6, 4, 3, 5, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"u: expected shape \[batch, 6, 4\], got shape \(2, 7, 4\)"):
        layer(jnp.zeros((2, 7, 4)))


def test_decoder_masks_and_shapes():
    decoder = Decoder(3, 4, (5, 5, 1), hidden=(8,), rngs=nnx.Rngs(0))
    capsules = jax.random.normal(jax.random.key(0), (2, 3, 4))
    mask = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    images = decoder(capsules, mask)
    chex.assert_shape(images, (2, 5, 5, 1))
    assert jnp.all((images > 0) & (images < 1))
    # Changing a masked-out capsule must not change the reconstruction.
    changed = capsules.at[:, 1].add(5.0)
    np.testing.assert_allclose(decoder(changed, mask), images, rtol=1e-6)


def test_conv2d_module_lowerings_agree():
    native = Conv2D(3, 4, 5, stride=2, lowering="native", rngs=nnx.Rngs(0))
    patches = Conv2D(3, 4, 5, stride=2, lowering="patches", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 13, 13, 3))
    np.testing.assert_allclose(native(x), patches(x), rtol=1e-4, atol=1e-5)
