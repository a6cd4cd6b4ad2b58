r"""Strided VALID convolution in the frequency domain: the fast lowering of large-kernel convs on CPU.

A 9x9 stride-2 convolution from 256 to 256 channels (the primary-capsule conv, ~95% of the
paper's FLOPs) costs :math:`2\,kh\,kw\,C\,O` FLOPs per output position as a direct product. Here:

1. **Phase split.** With stride :math:`s`, row :math:`s h + i` of the input meets kernel row :math:`i`
   only through the phase :math:`p = i \bmod s`. Splitting rows and columns into their
   :math:`s^2` phases turns the strided conv into a sum of :math:`s^2` stride-1 convs of
   ``[P, Q] = [ceil(H/s), ceil(W/s)]`` inputs with ``ceil(kh/s) x ceil(kw/s)`` kernels.
2. **Circular correlation.** A stride-1 correlation of a length-:math:`P` input with a
   length-:math:`k` kernel equals a circular one of period :math:`P` on every VALID output
   (no index wraps), so a :math:`P \times Q` DFT diagonalises it:
   :math:`\hat y_f = \sum_{c} \hat x_{f,c}\, \hat k_{f,c,o}` per frequency :math:`f`, with
   :math:`\hat k_f = \sum_a k_a e^{+2\pi i f a / P}` (correlation, not convolution).
3. **Half the spectrum.** Inputs are real, so the frequencies :math:`f` and :math:`-f` are complex
   conjugates: only one of each pair is kept (52 of the 100 frequencies of a 10x10 grid), and the
   inverse transform counts the others twice.
4. **One batched GEMM.** For each kept frequency, the real and imaginary parts of the kernel's
   spectrum are stacked as rows ``[2 * O, s*s*C]`` and those of the inputs as rows
   ``[2 * batch, s*s*C]``; one product of the two gives the four real products that make the
   complex one.

For the primary conv that is 52 GEMMs of ``[512, 1024] x [1024, 256]`` per batch of 128: 14.0
GFLOP instead of 48.9, forward and again in each backward product (autodiff of the same linear
maps). The DFTs are small constant matrices (built once per shape, in float64, then cast) applied
as row-major GEMMs on the large operand, in both directions (a custom VJP); the kernel's spectrum
is computed once per call and amortised over the batch. Results agree with the direct
convolution to float32 rounding (tested: ~1e-6 relative; float64 gives float64 results).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def phase_grid(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """``(phase length, phase kernel length)``: ``ceil(size / stride)`` and ``ceil(kernel / stride)``."""
    return -(-size // stride), -(-kernel // stride)


@functools.cache
def half_spectrum(rows: int, cols: int) -> tuple[tuple[int, int, int], ...]:
    """One frequency ``(k1, k2)`` of each conjugate pair of a ``rows x cols`` real DFT, with its count.

    Returns ``(k1, k2, multiplicity)`` triples: multiplicity 1 for self-conjugate frequencies
    (``-k = k``), 2 for the others (the kept one stands for its conjugate too). Their number is
    ``(rows * cols + self-conjugate ones) / 2``.
    """
    seen: set[tuple[int, int]] = set()
    kept = []
    for k1 in range(rows):
        for k2 in range(cols):
            if (k1, k2) in seen:
                continue
            conjugate = ((-k1) % rows, (-k2) % cols)
            seen.update({(k1, k2), conjugate})
            kept.append((k1, k2, 1 if conjugate == (k1, k2) else 2))
    return tuple(kept)


@functools.cache
def dft_matrices(
    rows: int, cols: int, kernel_rows: int, kernel_cols: int, out_rows: int, out_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three real linear maps of the frequency-domain correlation, float64.

    Returns:
      ``forward [freqs, 2, rows, cols]``: real and imaginary part of each kept frequency of an input;
      ``kernel [freqs, 2, kernel_rows, kernel_cols]``: the same for a kernel (conjugate phase:
      correlation);
      ``inverse [freqs, 2, out_rows, out_cols]``: the VALID outputs from the products' real and
      imaginary parts (the conjugates counted by multiplicity, divided by ``rows * cols``).
    """
    spectrum = np.array(half_spectrum(rows, cols), dtype=np.float64)
    k1, k2, multiplicity = spectrum[:, 0], spectrum[:, 1], spectrum[:, 2]
    h, w = np.arange(rows), np.arange(cols)
    angle = 2 * np.pi * (k1[:, None, None] * h[None, :, None] / rows + k2[:, None, None] * w[None, None, :] / cols)
    forward = np.stack([np.cos(angle), -np.sin(angle)], axis=1)
    kernel_angle = angle[:, :kernel_rows, :kernel_cols]
    kernel = np.stack([np.cos(kernel_angle), np.sin(kernel_angle)], axis=1)
    out_angle = angle[:, :out_rows, :out_cols]
    weight = multiplicity[:, None, None, None] / (rows * cols)
    inverse = weight * np.stack([np.cos(out_angle), -np.sin(out_angle)], axis=1)
    return forward, kernel, inverse


def fourier_conv2d(
    x: Float[Array, "batch height width in_channels"],
    kernel: Float[Array, "kh kw in_channels out_channels"],
    *,
    stride: int,
) -> Float[Array, "batch out_height out_width out_channels"]:
    """VALID strided 2-D correlation through the DFT (module docstring); same result as a direct conv.

    Args:
      x: ``[batch, height, width, in_channels]``; computed in float32, or float64 for float64 inputs
        (bfloat16 inputs are computed in float32).
      kernel: ``[kh, kw, in_channels, out_channels]``, ``kh <= height``, ``kw <= width``.
      stride: the same in both spatial dims.

    Returns:
      ``[batch, (height - kh) // stride + 1, (width - kw) // stride + 1, out_channels]`` in the compute dtype.
    """
    dtype = jnp.promote_types(jnp.promote_types(x.dtype, kernel.dtype), jnp.float32)
    batch, height, width, channels = x.shape
    kh, kw, _, out_channels = kernel.shape
    s = stride
    rows, kernel_rows = phase_grid(height, kh, s)
    cols, kernel_cols = phase_grid(width, kw, s)
    out_rows, out_cols = (height - kh) // s + 1, (width - kw) // s + 1
    forward, kernel_map, inverse = (
        jnp.asarray(m, dtype) for m in dft_matrices(rows, cols, kernel_rows, kernel_cols, out_rows, out_cols)
    )
    freqs = forward.shape[0]
    phases_channels = s * s * channels
    # Zero-pad to whole phases and split rows and columns into (position, phase): [.., P, s, Q, s, ..];
    # then put the spatial axes first, as the rows the constant DFT matrices multiply.
    x = jnp.pad(x.astype(dtype), ((0, 0), (0, rows * s - height), (0, cols * s - width), (0, 0)))
    x = x.reshape(batch, rows, s, cols, s, channels).transpose(1, 3, 0, 2, 4, 5)
    kernel = jnp.pad(kernel.astype(dtype), ((0, kernel_rows * s - kh), (0, kernel_cols * s - kw), (0, 0), (0, 0)))
    kernel = kernel.reshape(kernel_rows, s, kernel_cols, s, channels, out_channels).transpose(0, 2, 5, 1, 3, 4)
    # x_hat [freqs, 2 * batch, s*s*C]: rows are (real | imaginary part, example).
    x_hat = _constant_times(forward.reshape(2 * freqs, rows * cols), x.reshape(rows * cols, -1))
    x_hat = x_hat.reshape(freqs, 2 * batch, phases_channels)
    # k_hat [freqs, 2 * O, s*s*C]: rows are (real | imaginary part, output channel).
    taps = kernel_rows * kernel_cols
    k_hat = _constant_times(kernel_map.reshape(2 * freqs, taps), kernel.reshape(taps, -1))
    k_hat = k_hat.reshape(freqs, 2 * out_channels, phases_channels)
    # One GEMM per frequency, every (kernel part, output channel) against every (input part, example).
    products = jnp.einsum("fnk,fmk->fnm", k_hat, x_hat).reshape(freqs, 2, out_channels, 2, batch)
    real = products[:, 0, :, 0] - products[:, 1, :, 1]
    imag = products[:, 1, :, 0] + products[:, 0, :, 1]
    spectrum = jnp.stack([real, imag], axis=1)  # [freqs, 2, O, batch]
    return jnp.einsum("frob,frhw->bhwo", spectrum, inverse)


@jax.custom_vjp
def _constant_times(matrix: jax.Array, a: jax.Array) -> jax.Array:
    """``matrix @ a`` for a constant ``matrix``, with the cotangent ``matrix.T @ g`` written as such.

    Autodiff would form ``g.T @ matrix`` and transpose the (large) result; this keeps both products
    row-major GEMMs on the large operand, with no transposes of it.
    """
    return matrix @ a


def _constant_times_fwd(matrix, a):
    return matrix @ a, matrix


def _constant_times_bwd(matrix, cotangent):
    return jnp.zeros_like(matrix), matrix.T @ cotangent


_constant_times.defvjp(_constant_times_fwd, _constant_times_bwd)


def fourier_flops(
    batch: int, height: int, width: int, in_channels: int, out_channels: int, kernel: tuple[int, int], stride: int
) -> tuple[int, int]:
    """``(direct, fourier)`` forward FLOPs of one VALID conv: the direct product, and :func:`fourier_conv2d`'s
    GEMM plus its three transforms (input, kernel, inverse)."""
    kh, kw = kernel
    out_rows, out_cols = (height - kh) // stride + 1, (width - kw) // stride + 1
    direct = 2 * batch * out_rows * out_cols * kh * kw * in_channels * out_channels
    rows, kernel_rows = phase_grid(height, kh, stride)
    cols, kernel_cols = phase_grid(width, kw, stride)
    spectrum = 2 * len(half_spectrum(rows, cols))  # real and imaginary parts
    phases_channels = stride * stride * in_channels
    gemm = 2 * (spectrum // 2) * (2 * batch) * phases_channels * (2 * out_channels)
    transforms = (
        2
        * spectrum
        * (
            batch * phases_channels * rows * cols
            + phases_channels * out_channels * kernel_rows * kernel_cols
            + batch * out_channels * out_rows * out_cols
        )
    )
    return direct, gemm + transforms
