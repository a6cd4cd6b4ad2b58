import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from capsjax import safe_norm, squash


def test_hand_computed_value():
    # |s| = 5: |v| = 25 / 26, direction (0.6, 0.8).
    v = squash(jnp.array([3.0, 4.0]), eps=0.0)
    np.testing.assert_allclose(v, (25 / 26) * np.array([0.6, 0.8]), rtol=1e-6)


def test_hand_computed_small_vector():
    # |s| = 0.5: |v| = 0.25 / 1.25 = 0.2.
    v = squash(jnp.array([0.0, 0.5, 0.0]), eps=0.0)
    np.testing.assert_allclose(v, [0.0, 0.2, 0.0], rtol=1e-6)


def test_axis_argument():
    s = jax.random.normal(jax.random.key(0), (4, 3, 5))
    np.testing.assert_allclose(squash(s, axis=1), jnp.moveaxis(squash(jnp.moveaxis(s, 1, -1)), -1, 1), rtol=1e-6)


def test_norm_below_one_and_monotonic():
    scales = jnp.logspace(-3, 2, 200)
    direction = jnp.array([1.0, -2.0, 2.0]) / 3.0
    lengths = jnp.linalg.norm(squash(scales[:, None] * direction[None, :]), axis=-1)
    assert jnp.all(lengths < 1.0)
    assert jnp.all(jnp.diff(lengths) > 0)


@pytest.mark.parametrize("s", [jnp.zeros(8), jnp.full((8,), 1e-30), jnp.full((8,), 1e-20)])
def test_finite_value_and_gradient_near_zero(s):
    value, grad = jax.value_and_grad(lambda s: jnp.sum(squash(s)))(s)
    chex.assert_tree_all_finite((value, grad))
    hessian = jax.hessian(lambda s: jnp.sum(squash(s)))(s)
    chex.assert_tree_all_finite(hessian)


def test_gradient_at_zero_is_zero():
    jac = jax.jacobian(squash)(jnp.zeros(4))
    np.testing.assert_array_equal(jac, np.zeros((4, 4)))


def test_safe_norm_finite_gradient_at_zero():
    grad = jax.grad(lambda s: safe_norm(s))(jnp.zeros(3))
    chex.assert_tree_all_finite(grad)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("scale", [1e-3, 0.3, 1.0, 10.0])
def test_check_grads(scale):
    s = scale * jax.random.normal(jax.random.key(1), (5, 8), dtype=jnp.float64)
    # finite-difference step well below the vector's scale
    check_grads(squash, (s,), order=2, modes=("fwd", "rev"), eps=1e-3 * scale)


def test_rank_zero_rejected():
    with pytest.raises(ValueError, match="s: expected at least rank 1"):
        squash(jnp.array(1.0))
