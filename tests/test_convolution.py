import jax
import jax.numpy as jnp
import numpy as np
import pytest

from capsjax.ops.convolution import conv2d, extract_patches, matmul, resolve_lowering


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


def test_bfloat16_matmul_accumulates_in_float32_forward_and_backward():
    a = jax.random.normal(jax.random.key(0), (64, 300))
    b = jax.random.normal(jax.random.key(1), (300, 32))
    loss = lambda a, b: jnp.sum(jnp.sin(matmul(a, b)))
    half = (a.astype(jnp.bfloat16), b.astype(jnp.bfloat16))
    exact = [x.astype(jnp.float32) for x in half]  # the same rounded inputs, multiplied in float32
    assert matmul(*half).dtype == jnp.float32
    np.testing.assert_allclose(matmul(*half), matmul(*exact), rtol=1e-5, atol=1e-4)
    grads = jax.grad(loss, argnums=(0, 1))(*half)
    assert [g.dtype for g in grads] == [jnp.bfloat16, jnp.bfloat16]
    for g, g_exact in zip(grads, jax.grad(loss, argnums=(0, 1))(*exact), strict=True):
        # the cotangent is rounded to bfloat16 once, then every product accumulates in float32
        np.testing.assert_allclose(g.astype(jnp.float32), g_exact, rtol=0.05, atol=0.05)


def test_bfloat16_conv_keeps_its_dtype_and_agrees():
    x = jax.random.normal(jax.random.key(0), (2, 12, 12, 8))
    k = 0.1 * jax.random.normal(jax.random.key(1), (5, 5, 8, 4))
    y = conv2d(x.astype(jnp.bfloat16), k.astype(jnp.bfloat16), stride=2, lowering="patches")
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(jnp.float32), conv2d(x, k, stride=2, lowering="native"), atol=0.05)
