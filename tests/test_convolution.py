import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from capsjax.ops.convolution import conv2d, depthwise_conv2d, extract_patches, matmul, resolve_lowering
from capsjax.ops.fourier_convolution import fourier_flops, half_spectrum


@pytest.mark.parametrize("lowering", ["patches", "fourier"])
@pytest.mark.parametrize(
    "shape, kernel, stride",
    [
        ((2, 12, 12, 3), 5, 1),
        ((2, 20, 20, 8), 9, 2),
        ((1, 9, 11, 2), 3, 2),
        ((2, 13, 10, 3), 4, 3),
        ((1, 7, 7, 2), 7, 1),
    ],
)
def test_lowerings_agree_in_value_and_gradient(shape, kernel, stride, lowering):
    x = jax.random.normal(jax.random.key(0), shape)
    k = 0.1 * jax.random.normal(jax.random.key(1), (kernel, kernel, shape[-1], 4))

    def loss(x, k, lowering):
        y = conv2d(x, k, stride=stride, lowering=lowering)
        return jnp.sum(jnp.sin(y)), y

    (_, y_native), g_native = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, k, "native")
    (_, y_other), g_other = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, k, lowering)
    assert y_other.shape == y_native.shape
    np.testing.assert_allclose(y_other, y_native, rtol=1e-4, atol=1e-4)
    for a, b in zip(g_other, g_native, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_fourier_conv_gradients_in_float64():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (2, 9, 8, 3), jnp.float64)
        k = jax.random.normal(jax.random.key(1), (5, 4, 3, 2), jnp.float64)
        y = conv2d(x, k, stride=2, lowering="fourier")
        assert y.dtype == jnp.float64
        np.testing.assert_allclose(y, conv2d(x, k, stride=2, lowering="native"), rtol=1e-12, atol=1e-12)
        check_grads(lambda x, k: conv2d(x, k, stride=2, lowering="fourier"), (x, k), order=2, modes=["rev"])


@pytest.mark.parametrize("rows, cols", [(10, 10), (5, 7), (1, 4), (6, 3)])
def test_half_spectrum_keeps_one_of_each_conjugate_pair(rows, cols):
    kept = half_spectrum(rows, cols)
    frequencies = {(k1, k2) for k1, k2, _ in kept}
    assert len(frequencies) == len(kept)
    covered = frequencies | {((-k1) % rows, (-k2) % cols) for k1, k2 in frequencies}
    assert covered == {(a, b) for a in range(rows) for b in range(cols)}
    # multiplicities count every frequency of the full grid once
    assert sum(m for _, _, m in kept) == rows * cols
    for k1, k2, m in kept:
        assert (m == 1) == (((-k1) % rows, (-k2) % cols) == (k1, k2))


def test_fourier_saves_flops_where_auto_picks_it():
    direct, fourier = fourier_flops(128, 20, 20, 256, 256, (9, 9), 2)  # the paper's primary conv
    assert direct > 2.5 * fourier
    assert resolve_lowering("auto", "cpu", x_shape=(128, 20, 20, 256), kernel_shape=(9, 9, 256, 256), stride=2) == (
        "fourier"
    )
    # the first conv (one input channel): the transforms cost more than they save
    assert resolve_lowering("auto", "cpu", x_shape=(128, 28, 28, 1), kernel_shape=(9, 9, 1, 256)) == "patches"
    assert resolve_lowering("auto", "gpu", x_shape=(128, 20, 20, 256), kernel_shape=(9, 9, 256, 256), stride=2) == (
        "native"
    )


def test_auto_takes_the_frequency_domain_for_wide_5x5_convs_whose_patches_outgrow_memory():
    """The narrowed baseline CNN at batch 128 (32x32 after SAME padding): its 64-channel layers cost
    1.6x / 2.4x the direct FLOPs in the frequency domain but move a 160M-element patch matrix; the
    same layers at batch 16, and its one-channel first layer, stay patches."""
    wide = dict(x_shape=(128, 32, 32, 64), kernel_shape=(5, 5, 64, 64))
    assert resolve_lowering("auto", "cpu", **wide) == "fourier"
    assert resolve_lowering("auto", "cpu", x_shape=(128, 32, 32, 64), kernel_shape=(5, 5, 64, 32)) == "fourier"
    assert resolve_lowering("auto", "cpu", x_shape=(16, 32, 32, 64), kernel_shape=(5, 5, 64, 64)) == "patches"
    assert resolve_lowering("auto", "cpu", x_shape=(128, 32, 32, 1), kernel_shape=(5, 5, 1, 64)) == "patches"
    # Efficient-CapsNet's 3x3 convs at a whole inference batch: under the limit, patches as before
    assert resolve_lowering("auto", "cpu", x_shape=(256, 22, 22, 64), kernel_shape=(3, 3, 64, 64)) == "patches"
    # a large patch matrix alone is not enough when the transforms cost far more than the product
    assert resolve_lowering("auto", "cpu", x_shape=(64, 52, 52, 32), kernel_shape=(5, 5, 32, 32)) == "patches"


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


@pytest.mark.parametrize(
    "shape, kernel, stride",
    [
        ((3, 9, 9, 5), 9, 1),
        ((2, 11, 10, 3), 3, 1),
        ((2, 12, 13, 4), 5, 2),
        ((1, 9, 9, 2), 9, 3),
        ((1, 12, 12, 2), 9, 4),  # a larger input whose stride leaves a 1x1 output
        ((1, 9, 14, 2), 9, 1),  # 1 x N
        ((1, 13, 9, 2), 9, 2),  # N x 1
    ],
)
def test_depthwise_conv_equals_a_grouped_conv_in_value_and_gradient(shape, kernel, stride, x64):
    """Against XLA's grouped convolution (feature_group_count = channels), including the 1x1 output
    that Efficient-CapsNet's primary capsules use; the gradients in float64 by finite differences."""
    channels = shape[-1]
    x = jax.random.normal(jax.random.key(0), shape)
    k = jax.random.normal(jax.random.key(1), (kernel, kernel, 1, channels))

    def grouped(x, k):
        numbers = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(
            x, k, (stride, stride), "VALID", dimension_numbers=numbers, feature_group_count=channels
        )

    def loss(conv, x, k):
        return jnp.sum(jnp.sin(conv(x, k)))

    ours = depthwise_conv2d(x, k, stride=stride)
    np.testing.assert_allclose(ours, grouped(x, k), rtol=1e-5, atol=1e-4)
    g_ours = jax.grad(lambda x, k: loss(lambda x, k: depthwise_conv2d(x, k, stride=stride), x, k), (0, 1))(x, k)
    g_grouped = jax.grad(lambda x, k: loss(grouped, x, k), (0, 1))(x, k)
    for a, b in zip(g_ours, g_grouped, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    x, k = x.astype(jnp.float64), k.astype(jnp.float64)
    check_grads(lambda x, k: depthwise_conv2d(x, k, stride=stride), (x, k), order=1, modes=["rev"])


@pytest.mark.parametrize("size", [9, 20])  # the contraction (1x1 output) and the sum of slices
def test_depthwise_conv_in_bfloat16_accumulates_in_float32(size):
    x = jax.random.normal(jax.random.key(0), (2, size, size, 8))
    k = jax.random.normal(jax.random.key(1), (9, 9, 1, 8))
    exact = depthwise_conv2d(x, k)
    x16, k16 = x.astype(jnp.bfloat16), k.astype(jnp.bfloat16)
    rounded_inputs = depthwise_conv2d(x16.astype(jnp.float32), k16.astype(jnp.float32))
    y = depthwise_conv2d(x16, k16)
    assert y.dtype == jnp.bfloat16
    # Only the output's own rounding (8 bits of mantissa) on top of the inputs' rounding.
    np.testing.assert_allclose(y.astype(jnp.float32), rounded_inputs, rtol=2**-8, atol=1e-6)
    assert float(jnp.max(jnp.abs(y.astype(jnp.float32) - exact))) < 0.05 * float(jnp.max(jnp.abs(exact)))


def test_depthwise_layer_is_nnx_conv_with_one_group_per_channel():
    """Same parameter names, shapes and initial values as flax's grouped nnx.Conv, same outputs."""
    from flax import nnx

    from capsjax.nn import DepthwiseConv2D

    ours = DepthwiseConv2D(6, 9, rngs=nnx.Rngs(0))
    flax_conv = nnx.Conv(6, 6, (9, 9), padding="VALID", feature_group_count=6, rngs=nnx.Rngs(0))
    ours_state, flax_state = nnx.state(ours, nnx.Param), nnx.state(flax_conv, nnx.Param)
    assert jax.tree.structure(ours_state) == jax.tree.structure(flax_state)
    for a, b in zip(jax.tree.leaves(ours_state), jax.tree.leaves(flax_state), strict=True):
        np.testing.assert_array_equal(a, b)
    flax_conv.bias[...] = jnp.arange(6.0)
    ours.bias[...] = jnp.arange(6.0)
    x = jax.random.normal(jax.random.key(2), (2, 11, 10, 6))
    np.testing.assert_allclose(ours(x), flax_conv(x), rtol=1e-5, atol=1e-5)


def test_depthwise_conv_bad_input():
    with pytest.raises(ValueError, match="kernel"):
        depthwise_conv2d(jnp.ones((1, 9, 9, 4)), jnp.ones((9, 9, 1, 3)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        depthwise_conv2d(jnp.ones((1, 5, 5, 4)), jnp.ones((9, 9, 1, 4)))
    with pytest.raises(ValueError, match="stride: expected a positive integer, got 0"):
        depthwise_conv2d(jnp.ones((1, 9, 9, 4)), jnp.ones((9, 9, 1, 4)), stride=0)
