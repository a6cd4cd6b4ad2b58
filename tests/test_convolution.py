import jax
import jax.numpy as jnp
import numpy as np
import pytest

from capsjax.ops.convolution import conv2d, extract_patches, resolve_lowering


@pytest.mark.parametrize(
    "shape, kernel, stride", [((2, 12, 12, 3), 5, 1), ((2, 20, 20, 8), 9, 2), ((1, 9, 11, 2), 3, 2)]
)
def test_lowerings_agree_in_value_and_gradient(shape, kernel, stride):
    x = jax.random.normal(jax.random.key(0), shape)
    k = 0.1 * jax.random.normal(jax.random.key(1), (kernel, kernel, shape[-1], 4))

    def loss(x, k, lowering):
        y = conv2d(x, k, stride=stride, lowering=lowering)
        return jnp.sum(jnp.sin(y)), y

    (_, y_native), g_native = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, k, "native")
    (_, y_patches), g_patches = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, k, "patches")
    np.testing.assert_allclose(y_patches, y_native, rtol=1e-4, atol=1e-4)
    for a, b in zip(g_patches, g_native, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_patches_order_is_kh_kw_channel():
    x = jnp.arange(2 * 4 * 4 * 2, dtype=jnp.float32).reshape(2, 4, 4, 2)
    patches = extract_patches(x, kernel_size=(2, 3), stride=1)
    assert patches.shape == (2, 3, 2, 12)
    np.testing.assert_array_equal(patches[1, 2, 1], x[1, 2:4, 1:4, :].reshape(-1))


def test_resolve_lowering():
    assert resolve_lowering("auto", "cpu") == "patches"
    assert resolve_lowering("auto", "gpu") == "native"
    assert resolve_lowering("native", "cpu") == "native"
    with pytest.raises(ValueError, match="lowering"):
        resolve_lowering("winograd")


def test_bad_input():
    with pytest.raises(ValueError, match=r"kernel: expected shape \[kh, kw, 3, out_channels\]"):
        conv2d(jnp.zeros((1, 8, 8, 3)), jnp.zeros((3, 3, 2, 4)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv2d(jnp.zeros((1, 4, 4, 3)), jnp.zeros((5, 5, 3, 4)))
