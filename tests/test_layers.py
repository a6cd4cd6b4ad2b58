import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from capsjax import (
    Conv2D,
    Decoder,
    PrimaryCapsules,
    RoutedCapsules,
    capsule_votes,
    dynamic_routing,
)


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


LEARNED = {  # routing -> (its learned parameters and their shapes for 6 -> 3 capsules of 5D, its function)
    "self_attention": ({"log_priors": (6, 3)}, "self_attention_routing"),
    "em": ({"beta_u": (3,), "beta_a": (3,)}, "em_routing_fn"),
    "inverted_dot_product": ({"norm_scale": (5,), "norm_offset": (5,)}, "inverted_dot_product_routing"),
}


@pytest.mark.parametrize("chunk_size", [0, 2])
@pytest.mark.parametrize("routing", sorted(LEARNED))
def test_routed_capsules_learn_and_pass_their_routings_parameters_and_activations(routing, chunk_size):
    import capsjax.ops as ops
    from capsjax.ops.squashing import safe_norm

    shapes, function = LEARNED[routing]
    layer = RoutedCapsules(
        6, 4, 3, 5, routing=routing, num_iters=2, learn_routing=True, chunk_size=chunk_size, rngs=nnx.Rngs(0)
    )
    assert layer.learned_names == tuple(shapes)
    assert {name: getattr(layer, name)[...].shape for name in shapes} == shapes
    for k, name in enumerate(shapes):  # away from their initial values, so that passing them matters
        getattr(layer, name)[...] += 0.3 * jax.random.normal(jax.random.key(k + 5), shapes[name])
    u = 0.3 * jax.random.normal(jax.random.key(1), (3, 6, 4))
    out = layer(u)
    assert (out.activations is not None) == (routing == "em")
    for k in range(3):
        votes = capsule_votes(u[k], layer.W[...])
        learned = {name: getattr(layer, name)[...] for name in shapes}
        extra = {"activations": safe_norm(u[k], eps=1e-9)} if routing == "em" else {}  # the input capsules' lengths
        expected = getattr(ops, function)(votes, num_iters=2, **learned, **extra)
        chex.assert_trees_all_close(jax.tree.map(lambda x, k=k: x[k], out), expected, rtol=1e-5, atol=1e-6)
    routed = layer.route(layer.votes(u), primary=u)  # routing given votes: as the forward pass
    chex.assert_trees_all_close(routed, out, rtol=1e-5, atol=1e-6)
    fixed = RoutedCapsules(6, 4, 3, 5, routing=routing, num_iters=2, rngs=nnx.Rngs(0))
    assert fixed.learned_names == () and not any(hasattr(fixed, name) for name in shapes)
    with pytest.raises(ValueError, match="learn_routing: the routing function 'dynamic' takes none of the learned"):
        RoutedCapsules(6, 4, 3, 5, learn_routing=True, rngs=nnx.Rngs(0))
    name = next(iter(shapes))
    with pytest.raises(ValueError, match=f"routing_options: \\['{name}'\\] are learned"):
        RoutedCapsules(6, 4, 3, 5, routing=routing, learn_routing=True, routing_options={name: 0.0}, rngs=nnx.Rngs(0))
    with pytest.warns(DeprecationWarning, match="log_priors=...\\) is deprecated"):
        old = RoutedCapsules(6, 4, 3, 5, routing=routing, log_priors=True, rngs=nnx.Rngs(0))
    assert old.learned_names == tuple(shapes)


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


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
def test_routing_in_chunks_equals_the_whole_batch_in_value_and_gradient(chunk_size):
    u = 0.3 * jax.random.normal(jax.random.key(1), (5, 12, 8))  # 5: the last chunk is partial for 2 and 4
    whole = RoutedCapsules(12, 8, 4, 6, use_bias=True, chunk_size=0, rngs=nnx.Rngs(0))
    chunked = RoutedCapsules(12, 8, 4, 6, use_bias=True, chunk_size=chunk_size, rngs=nnx.Rngs(0))
    loss = lambda m: jnp.sum(jnp.sin(m(u).v)) + jnp.sum(m(u).c ** 2)
    chex.assert_trees_all_close(chunked(u), whole(u), rtol=1e-5, atol=1e-6)
    grad_whole, grad_chunked = nnx.grad(loss)(whole), nnx.grad(loss)(chunked)
    chex.assert_trees_all_close(nnx.state(grad_chunked), nnx.state(grad_whole), rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(nnx.state(grad_whole)["W"][...]).max()) > 0
    u_grad = lambda m: jax.grad(lambda u: jnp.sum(m(u).v ** 2))(u)
    np.testing.assert_allclose(u_grad(chunked), u_grad(whole), rtol=1e-5, atol=1e-6)


def test_routing_chunk_size_default_and_validation():
    from capsjax.nn.layers import resolve_chunk_size

    assert resolve_chunk_size(None, "cpu") == 1
    assert resolve_chunk_size(None, "gpu") == 0
    assert resolve_chunk_size(8, "cpu") == 8
    with pytest.raises(ValueError, match="chunk_size: expected None or an integer >= 0, got -1"):
        RoutedCapsules(6, 4, 3, 5, chunk_size=-1, rngs=nnx.Rngs(0))


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
