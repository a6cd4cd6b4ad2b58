"""2-D convolution with a pluggable lowering.

XLA's CPU backward pass for a large-kernel strided convolution (the 9x9 stride-2 primary-capsule
conv) is many times slower than the same convolution written as patches + one matrix multiply,
while on GPU/TPU the native convolution is the fast one. So the lowering is an option:

- ``"native"``: ``lax.conv_general_dilated``, what ``nnx.Conv`` uses.
- ``"patches"``: gather every ``kh x kw`` patch with one static-index gather (its backward is one
  scatter-add) and do ONE ``dot_general`` with the kernel reshaped to
  ``[kh*kw*in_channels, out_channels]``. Forward and both backward products are then large GEMMs,
  which is what a CPU is good at.
- ``"fourier"``: phase split + DFT + one batched GEMM per kept frequency
  (:mod:`capsjax.ops.fourier_convolution`): 3.5x fewer FLOPs for the 9x9 stride-2 primary conv.
- ``"auto"``: on CPU, ``"fourier"`` where it costs less than half the direct FLOPs (transforms
  included), or less than three times them when the patch matrix would exceed
  ``LARGE_PATCH_MATRIX`` elements (beyond every cache its passes over memory, not its GEMM, set the
  time: a 64 -> 64 5x5 conv at batch 128 ran at 49 GFLOP/s as patches and 141 in the frequency
  domain); ``"patches"`` otherwise; ``"native"`` elsewhere (chosen from measurements; see
  ``make bench`` and experiments/bench_cpu.md).

Both lowerings use VALID padding and NHWC / HWIO layouts and agree to float tolerance (tested).

:func:`depthwise_conv2d` (one filter per channel, Efficient-CapsNet's primary capsules) has a
lowering of its own: strided slices times per-channel weights, since XLA's CPU backward of a
grouped convolution is slow.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from capsjax.ops._shapes import check_shape
from capsjax.ops.fourier_convolution import fourier_conv2d, fourier_flops

Lowering = Literal["auto", "native", "patches", "fourier"]
LOWERINGS = ("auto", "native", "patches", "fourier")
LARGE_PATCH_MATRIX = 64 * 2**20  # elements: 256 MiB of float32, many times any CPU cache


def resolve_lowering(
    lowering: str,
    backend: str | None = None,
    *,
    x_shape: tuple[int, ...] | None = None,
    kernel_shape: tuple[int, ...] | None = None,
    stride: int = 1,
) -> str:
    """Turn ``"auto"`` into the concrete lowering for ``backend`` (default: JAX's default backend).

    On CPU, ``"auto"`` is ``"fourier"`` when both shapes are given (``x [batch, h, w, c]``, kernel
    ``[kh, kw, c, o]``) and the frequency-domain conv costs under half the direct FLOPs, or under three
    times them with a patch matrix over ``LARGE_PATCH_MATRIX`` elements; else ``"patches"``.
    """
    if lowering not in LOWERINGS:
        raise ValueError(f"lowering: expected one of {LOWERINGS}, got {lowering!r}")
    if lowering != "auto":
        return lowering
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return "native"
    if x_shape is not None and kernel_shape is not None:
        batch, height, width, channels = x_shape
        kh, kw, _, out_channels = kernel_shape
        direct, fourier = fourier_flops(batch, height, width, channels, out_channels, (kh, kw), stride)
        positions = conv_output_size(height, kh, stride) * conv_output_size(width, kw, stride)
        large = batch * positions * kh * kw * channels > LARGE_PATCH_MATRIX
        if 2 * fourier < direct or (large and fourier < 3 * direct):
            return "fourier"
    return "patches"


def conv_output_size(size: int, kernel: int, stride: int) -> int:
    """Spatial output size of a VALID convolution."""
    return (size - kernel) // stride + 1


def extract_patches(
    x: Float[ArrayLike, "batch height width channels"], *, kernel_size: tuple[int, int], stride: int
) -> Float[Array, "batch out_height out_width patch"]:
    """All ``kh x kw`` patches of a VALID strided convolution, flattened in (kh, kw, channel) order.

    Args:
      x: ``[batch, height, width, channels]``.
      kernel_size: ``(kh, kw)``.
      stride: the same in both spatial dims.

    Returns:
      ``[batch, out_height, out_width, kh * kw * channels]``.
    """
    x = jnp.asarray(x)
    batch, height, width, channels = x.shape
    kh, kw = kernel_size
    out_h = conv_output_size(height, kh, stride)
    out_w = conv_output_size(width, kw, stride)
    # One gather of whole channel rows with static indices: faster on CPU than concatenating
    # kh*kw strided slices (1.3x forward+backward for the primary conv, measured side by side),
    # and its transpose is a single scatter-add.
    rows, cols, ki, kj = np.meshgrid(np.arange(out_h), np.arange(out_w), np.arange(kh), np.arange(kw), indexing="ij")
    index = ((stride * rows + ki) * width + stride * cols + kj).reshape(out_h * out_w, kh * kw)
    patches = x.reshape(batch, height * width, channels)[:, index, :]
    return patches.reshape(batch, out_h, out_w, kh * kw * channels)


def conv2d(
    x: Float[ArrayLike, "batch height width in_channels"],
    kernel: Float[ArrayLike, "kh kw in_channels out_channels"],
    *,
    stride: int = 1,
    padding: str = "VALID",
    lowering: Lowering = "auto",
) -> Float[Array, "batch out_height out_width out_channels"]:
    r"""2-D convolution (cross-correlation, as in every deep learning library).

    .. math:: y_{b,h,w,o} = \sum_{i,j,c} x_{b,\, s h + i,\, s w + j,\, c} \; k_{i,j,c,o}

    with stride :math:`s` (VALID padding; SAME pads ``x`` with zeros first).

    Args:
      x: ``[batch, height, width, in_channels]`` (this primitive is batched; it is a layer's op,
        not per-example math).
      kernel: ``[kh, kw, in_channels, out_channels]``.
      stride: spatial stride.
      padding: ``"VALID"`` or ``"SAME"`` (stride 1 only: zero padding that keeps the size).
      lowering: ``"auto"``, ``"native"``, ``"patches"`` or ``"fourier"`` (module docstring).

    Returns:
      ``[batch, out_height, out_width, out_channels]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax import conv2d
      >>> conv2d(jnp.ones((2, 20, 20, 3)), jnp.ones((9, 9, 3, 4)), stride=2).shape
      (2, 6, 6, 4)
    """
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    check_shape("x", x, ("batch", "height", "width", "in_channels"))
    check_shape("kernel", kernel, ("kh", "kw", x.shape[-1], "out_channels"))
    kh, kw, in_channels, out_channels = kernel.shape
    if padding == "SAME":
        if stride != 1:
            raise ValueError(f"padding: 'SAME' is supported with stride 1, got stride {stride}")
        x = jnp.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    elif padding != "VALID":
        raise ValueError(f"padding: expected 'VALID' or 'SAME', got {padding!r}")
    if x.shape[1] < kh or x.shape[2] < kw:
        raise ValueError(f"x: spatial size {x.shape[1:3]} is smaller than the kernel {(kh, kw)}")
    lowering = resolve_lowering(lowering, x_shape=x.shape, kernel_shape=kernel.shape, stride=stride)
    if lowering == "native":
        return jax.lax.conv_general_dilated(
            x, kernel, (stride, stride), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    if lowering == "fourier":
        return fourier_conv2d(x, kernel, stride=stride).astype(x.dtype)
    patches = extract_patches(x, kernel_size=(kh, kw), stride=stride)
    batch, out_h, out_w, patch = patches.shape
    # One 2-D GEMM [batch * positions, patch] x [patch, out_channels]: XLA's CPU backward of this form
    # is faster than that of the equivalent 4-D einsum (the first conv's weight gradient: 1.8x).
    flat = patches.reshape(batch * out_h * out_w, patch)
    out = matmul(flat, kernel.reshape(patch, out_channels).astype(flat.dtype))
    return out.reshape(batch, out_h, out_w, out_channels).astype(x.dtype)


def depthwise_conv2d(
    x: Float[ArrayLike, "batch height width channels"],
    kernel: Float[ArrayLike, "kh kw 1 channels"],
    *,
    stride: int = 1,
) -> Float[Array, "batch out_height out_width channels"]:
    r"""Depthwise 2-D convolution (VALID): one ``kh x kw`` filter per channel, no mixing of channels.

    .. math:: y_{b,h,w,c} = \sum_{i,j} x_{b,\, s h + i,\, s w + j,\, c} \; k_{i,j,0,c}

    ``lax.conv_general_dilated`` with ``feature_group_count=channels`` computes the same, but XLA's
    CPU backward of a grouped convolution is slow (Efficient-CapsNet's 9x9 depthwise primary conv,
    batch 64: 166 ms forward + backward, half of the whole training step). Here the output is a sum
    over the kernel's offsets of strided slices times one weight per channel, and a 1x1 output (the
    kernel covers the image, as in Efficient-CapsNet) is one contraction: 1.8 ms.

    Args:
      x: ``[batch, height, width, channels]``.
      kernel: ``[kh, kw, 1, channels]`` (``nnx.Conv``'s layout for ``feature_group_count=channels``).
      stride: spatial stride.

    Returns:
      ``[batch, out_height, out_width, channels]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax.ops.convolution import depthwise_conv2d
      >>> depthwise_conv2d(jnp.ones((2, 9, 9, 4)), jnp.ones((9, 9, 1, 4))).shape
      (2, 1, 1, 4)
    """
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    check_shape("x", x, ("batch", "height", "width", "channels"))
    check_shape("kernel", kernel, ("kh", "kw", 1, x.shape[-1]))
    if stride < 1:
        raise ValueError(f"stride: expected a positive integer, got {stride}")
    kh, kw = kernel.shape[:2]
    if x.shape[1] < kh or x.shape[2] < kw:
        raise ValueError(f"x: spatial size {x.shape[1:3]} is smaller than the kernel {(kh, kw)}")
    out_h, out_w = conv_output_size(x.shape[1], kh, stride), conv_output_size(x.shape[2], kw, stride)
    # Sums of kh * kw products accumulate in float32 at least (bfloat16 inputs too), as matmul's do.
    accumulate = jnp.promote_types(x.dtype, jnp.float32)
    inputs, weights = x.astype(accumulate), kernel[:, :, 0, :].astype(accumulate)  # weights [kh, kw, channels]
    if out_h == out_w == 1:
        out = jnp.einsum("bijc,ijc->bc", inputs[:, :kh, :kw, :], weights)[:, None, None, :]
    else:
        span_h, span_w = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
        out = sum(
            inputs[:, i : i + span_h : stride, j : j + span_w : stride, :] * weights[i, j][None, None, None, :]
            for i in range(kh)
            for j in range(kw)
        )
    return out.astype(x.dtype)


def matmul(a: Float[ArrayLike, "m k"], b: Float[ArrayLike, "k n"]) -> Float[Array, "m n"]:
    """``a @ b``; for bfloat16 inputs every product of the forward and backward pass accumulates in float32.

    bfloat16 GEMMs with float32 accumulation run about 2x faster than float32 ones on CPUs with
    AVX512_BF16 (measured: 378 vs 183 GFLOP/s for the primary conv's forward GEMM), while plain
    bfloat16 ``@`` accumulates in bfloat16 (no faster, less exact). Returns float32 for bfloat16
    inputs, the input dtype otherwise.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.dtype == jnp.bfloat16 and b.dtype == jnp.bfloat16:
        return _matmul_bf16(a, b)
    return a @ b


@jax.custom_vjp
def _matmul_bf16(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.dot(a, b, preferred_element_type=jnp.float32)


def _matmul_bf16_fwd(a, b):
    return _matmul_bf16(a, b), (a, b)


def _matmul_bf16_bwd(residuals, cotangent):
    a, b = residuals
    cotangent = cotangent.astype(jnp.bfloat16)
    # Contracting dimensions named, not `b.T`: XLA's fast bfloat16 path takes this form (189 vs 122 GFLOP/s).
    grad_a = jax.lax.dot_general(cotangent, b, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
    grad_b = jax.lax.dot_general(a, cotangent, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
    return grad_a.astype(a.dtype), grad_b.astype(b.dtype)


_matmul_bf16.defvjp(_matmul_bf16_fwd, _matmul_bf16_bwd)
