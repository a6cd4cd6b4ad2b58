import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from capsjax import capsule_votes


def test_matches_explicit_matvec():
    u = jax.random.normal(jax.random.key(0), (5, 3))
    W = jax.random.normal(jax.random.key(1), (5, 4, 2, 3))
    u_hat = capsule_votes(u, W)
    expected = np.stack([[np.asarray(W[i, j]) @ np.asarray(u[i]) for j in range(4)] for i in range(5)])
    np.testing.assert_allclose(u_hat, expected, rtol=1e-5, atol=1e-6)


def test_vmap_over_batch_equals_loop():
    u = jax.random.normal(jax.random.key(0), (3, 6, 4))
    W = jax.random.normal(jax.random.key(1), (6, 2, 5, 4))
    batched = jax.vmap(capsule_votes, in_axes=(0, None))(u, W)
    looped = jnp.stack([capsule_votes(u_one, W) for u_one in u])
    np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("x64")
def test_check_grads():
    u = jax.random.normal(jax.random.key(0), (4, 3), dtype=jnp.float64)
    W = jax.random.normal(jax.random.key(1), (4, 2, 5, 3), dtype=jnp.float64)
    check_grads(capsule_votes, (u, W), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize(
    "u_shape, W_shape, message",
    [
        ((4,), (4, 2, 5, 3), "u: expected rank 2"),
        ((4, 3), (4, 2, 5, 2), r"W: expected shape \[4, out_caps, out_dim, 3\], got shape \(4, 2, 5, 2\)"),
        ((4, 3), (5, 2, 5, 3), "W: expected shape"),
        ((4, 3), (4, 2, 3), "W: expected rank 4"),
    ],
)
def test_bad_shapes_raise(u_shape, W_shape, message):
    with pytest.raises(ValueError, match=message):
        capsule_votes(jnp.zeros(u_shape), jnp.zeros(W_shape))


def test_deprecated_name_predict_still_works_and_warns():
    import capsjax

    with pytest.warns(DeprecationWarning, match="capsule_votes"):
        old = capsjax.predict
    assert old is capsule_votes
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        capsjax.nonexistent  # noqa: B018
