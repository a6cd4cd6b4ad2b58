import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from capsjax import coupling_coefficients, dynamic_routing, get_routing, squash

IN_CAPS, OUT_CAPS, OUT_DIM = 12, 4, 6


def votes_example(key=0, dtype=jnp.float32, scale=0.5):
    return scale * jax.random.normal(jax.random.key(key), (IN_CAPS, OUT_CAPS, OUT_DIM), dtype)


def reference_routing(votes, num_iters, bias=None):
    """A plain NumPy transcription of Procedure 1, one input capsule at a time."""
    votes = np.asarray(votes, np.float64)
    b = np.zeros(votes.shape[:2])
    for r in range(num_iters):
        c = np.exp(b) / np.exp(b).sum(axis=1, keepdims=True)
        s = sum(c[i][:, None] * votes[i] for i in range(votes.shape[0]))
        if bias is not None:
            s = s + bias
        n2 = (s**2).sum(-1, keepdims=True)
        v = n2 / (1 + n2) * s / np.sqrt(n2)
        if r < num_iters - 1:
            b = b + np.einsum("iod,od->io", votes, v)
    return v, c


@pytest.mark.parametrize("num_iters", [1, 2, 3, 5])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_numpy_reference(num_iters, with_bias):
    votes = votes_example()
    bias = 0.1 * jnp.arange(OUT_CAPS * OUT_DIM, dtype=jnp.float32).reshape(OUT_CAPS, OUT_DIM) if with_bias else None
    out = dynamic_routing(votes, num_iters=num_iters, bias=bias)
    v, c = reference_routing(votes, num_iters, None if bias is None else np.asarray(bias))
    np.testing.assert_allclose(out.v, v, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out.c, c, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out.c, jax.nn.softmax(out.logits, axis=-1), rtol=1e-5)


def test_first_iteration_is_uniform_average():
    votes = votes_example()
    out = dynamic_routing(votes, num_iters=1)
    np.testing.assert_allclose(out.c, np.full((IN_CAPS, OUT_CAPS), 1 / OUT_CAPS), rtol=1e-6)
    np.testing.assert_allclose(out.v, squash(votes.mean(axis=0) * IN_CAPS / OUT_CAPS), rtol=1e-5)


def test_softmax_is_over_output_capsules():
    logits = jax.random.normal(jax.random.key(3), (IN_CAPS, OUT_CAPS))
    c = coupling_coefficients(logits)
    np.testing.assert_allclose(c.sum(axis=1), np.ones(IN_CAPS), rtol=1e-6)
    assert not np.allclose(c.sum(axis=0), 1.0)


@pytest.mark.parametrize("num_iters", [1, 3])
def test_couplings_sum_to_one_or_less_when_leaky(num_iters):
    votes = votes_example()
    plain = dynamic_routing(votes, num_iters=num_iters)
    leaky = dynamic_routing(votes, num_iters=num_iters, leaky=True)
    np.testing.assert_allclose(plain.c.sum(axis=-1), 1.0, rtol=1e-6)
    assert jnp.all(leaky.c.sum(axis=-1) < 1.0)
    assert jnp.all(leaky.c > 0)


def test_iterations_change_the_output():
    votes = votes_example()
    v1 = dynamic_routing(votes, num_iters=1).v
    v3 = dynamic_routing(votes, num_iters=3).v
    assert np.abs(np.asarray(v1 - v3)).max() > 1e-3


def test_routing_raises_agreeing_coupling():
    # Input capsules all vote (1, 0, ...) for output 0 and random small votes elsewhere.
    votes = 0.05 * votes_example()
    votes = votes.at[:, 0, :].set(0.0).at[:, 0, 0].set(1.0)
    c = dynamic_routing(votes, num_iters=3).c
    assert jnp.all(c[:, 0] > 1 / OUT_CAPS)


# vmap = a loop over examples, jit = no jit without a second trace, and check_grads of plain 3-iteration
# routing: capsjax.testing.check_routing (tests/test_routing_algorithms.py::test_check_routing_passes).


def test_example_independent_of_the_rest_of_the_batch():
    batch = jnp.stack([votes_example(k) for k in range(3)])
    route = jax.vmap(lambda u: dynamic_routing(u, num_iters=3).v)
    changed = batch.at[1:].set(10.0 * batch[1:])
    np.testing.assert_allclose(route(batch)[0], route(changed)[0], rtol=1e-6)


def test_stop_gradient_changes_gradients_not_values():
    votes = votes_example()
    loss = lambda u, sg: jnp.sum(dynamic_routing(u, num_iters=3, stop_gradient=sg).v ** 2)
    np.testing.assert_allclose(loss(votes, True), loss(votes, False), rtol=1e-6)
    assert not np.allclose(jax.grad(loss)(votes, True), jax.grad(loss)(votes, False))


@pytest.mark.usefixtures("x64")
def test_stop_gradient_grad_is_last_iteration_only():
    # With stop_gradient, votes gets gradient only through the last iteration: the same as the
    # gradient of that iteration with its couplings held constant, which finite differences can check.
    votes = votes_example(dtype=jnp.float64)
    routed = dynamic_routing(votes, num_iters=3, stop_gradient=True)
    frozen_c = routed.c

    def last_iteration(votes):
        return squash(jnp.einsum("io,iod->od", frozen_c, votes))

    np.testing.assert_allclose(last_iteration(votes), routed.v, rtol=1e-10)
    check_grads(last_iteration, (votes,), order=2, modes=("rev",))
    loss = lambda v: jnp.sum(v * jnp.arange(OUT_DIM, dtype=v.dtype)[None, :])
    grad_stopped = jax.grad(lambda u: loss(dynamic_routing(u, num_iters=3, stop_gradient=True).v))(votes)
    np.testing.assert_allclose(grad_stopped, jax.grad(lambda u: loss(last_iteration(u)))(votes), rtol=1e-8)


# stop_gradient with several iterations is left out: finite differences see through stop_gradient
# (test_stop_gradient_grad_is_last_iteration_only checks that case against the analytic gradient).
@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(
    "num_iters, options",
    [(1, {})] + [(n, o) for n in (1, 3) for o in ({"bias": True}, {"leaky": True})] + [(1, {"stop_gradient": True})],
    ids=str,
)
def test_check_grads(num_iters, options):
    votes = votes_example(dtype=jnp.float64)
    bias = 0.1 * jax.random.normal(jax.random.key(9), (OUT_CAPS, OUT_DIM), jnp.float64)
    options = dict(options)
    use_bias = options.pop("bias", False)

    def routed(votes, bias):
        out = dynamic_routing(votes, num_iters=num_iters, bias=bias if use_bias else None, **options)
        return out.v, out.c

    check_grads(routed, (votes, bias), order=2, modes=("rev",))
    check_grads(routed, (votes, bias), order=1, modes=("fwd",))


@pytest.mark.parametrize("num_iters", [0, -1, 2.0])
def test_bad_num_iters(num_iters):
    with pytest.raises(ValueError, match="num_iters"):
        dynamic_routing(votes_example(), num_iters=num_iters)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"votes: expected rank 3"):
        dynamic_routing(jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"bias: expected shape \[4, 6\], got shape \(6, 4\)"):
        dynamic_routing(votes_example(), bias=jnp.zeros((6, 4)))


def test_get_routing():
    assert get_routing("dynamic") is dynamic_routing
    custom = lambda votes, *, num_iters, bias=None: None
    assert get_routing(custom) is custom
    with pytest.raises(ValueError, match="unknown name 'capsule_em'"):
        get_routing("capsule_em")
