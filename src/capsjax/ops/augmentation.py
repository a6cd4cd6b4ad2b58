"""On-device geometric augmentation by resampling: rotations, horizontal squishes, erased patches and
shifts that keep the object inside the image (the augmentation of Efficient-CapsNet's MNIST recipe,
Mazzia, Salvetti & Chiaberge 2021, as described in its paper and official code), and elastic
distortions (Simard, Steinkraus & Platt 2003, sec. 2: a random displacement field smoothed by a
Gaussian and scaled).

Every function takes ONE image ``[height, width, channels]`` and is batched with ``jax.vmap`` over
``(image, key)``, as :func:`augment_batch` does. Resampling is bilinear (``map_coordinates``, order 1)
with zeros outside the image, so every function is differentiable in the image and jit-compiles to a
few gathers: negligible next to a CapsNet step. The random amounts follow the official code: a
fraction ``r = min(|N(0, 0.33)|, 0.9999)`` of the maximum, so small changes are common and the
maximum is rare.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates
from jaxtyping import Array, Float

from capsjax.ops.preprocess import shift

Image = Float[Array, "height width channels"]

_SPREAD = 0.33  # the standard deviation of the official code's random fractions


def _fraction(key: jax.Array, shape=()) -> jax.Array:
    """``min(|N(0, 0.33)|, 0.9999)``: a random fraction in [0, 1), most often below 0.33."""
    return jnp.minimum(jnp.abs(_SPREAD * jax.random.normal(key, shape)), 0.9999)


def _resample(image: Image, source_rows: jax.Array, source_cols: jax.Array) -> Image:
    """``out[r, c] = image[source_rows[r, c], source_cols[r, c]]``, bilinear, zero outside."""
    sample = lambda channel: map_coordinates(channel, [source_rows, source_cols], order=1, mode="constant", cval=0.0)
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)


def _centred_grid(height: int, width: int) -> tuple[jax.Array, jax.Array, float, float]:
    """Pixel rows and columns ``[height, width]`` relative to the image centre, and the centre."""
    centre_row, centre_col = (height - 1) / 2, (width - 1) / 2
    rows, cols = jnp.meshgrid(jnp.arange(height) - centre_row, jnp.arange(width) - centre_col, indexing="ij")
    return rows, cols, centre_row, centre_col


def rotate(image: Image, degrees: jax.typing.ArrayLike) -> Image:
    """ONE image rotated counterclockwise by ``degrees`` about its centre (bilinear, zeros outside).

    Example:
      >>> import numpy as np, jax.numpy as jnp
      >>> from capsjax.ops.augmentation import rotate
      >>> square = jnp.arange(9.0).reshape(3, 3, 1)
      >>> bool(np.allclose(rotate(square, 90.0), np.rot90(square), atol=1e-4))
      True
    """
    height, width, _ = image.shape
    rows, cols, centre_row, centre_col = _centred_grid(height, width)
    angle = jnp.deg2rad(degrees)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    # The output pixel at (row, col) shows the input pixel the rotation carried there: rotate back.
    return _resample(image, cols * sin + rows * cos + centre_row, cols * cos - rows * sin + centre_col)


def squish(image: Image, pixels: jax.typing.ArrayLike) -> Image:
    """ONE image squeezed horizontally about its centre to ``width - pixels`` columns (zeros beside it).

    Args:
      image: ``[height, width, channels]``.
      pixels: columns to remove, ``0 <= pixels < width`` (fractions blend the edge columns).

    Returns:
      ``[height, width, channels]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax.ops.augmentation import squish
      >>> squish(jnp.ones((1, 6, 1)), 2)[0, :, 0].round(2).tolist()
      [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    """
    height, width, _ = image.shape
    rows, cols, centre_row, centre_col = _centred_grid(height, width)
    return _resample(image, rows + centre_row, cols * width / (width - pixels) + centre_col)


def erase(image: Image, top: jax.typing.ArrayLike, left: jax.typing.ArrayLike, *, size: int) -> Image:
    """ONE image ``[height, width, channels]`` with the ``size x size`` patch whose top-left pixel is
    ``(top, left)`` set to zero (the part of it inside the image).

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax.ops.augmentation import erase
      >>> erase(jnp.ones((3, 3, 1)), 1, 1, size=2)[..., 0].tolist()
      [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """
    height, width, _ = image.shape
    inside_rows = (jnp.arange(height) >= top) & (jnp.arange(height) < top + size)
    inside_cols = (jnp.arange(width) >= left) & (jnp.arange(width) < left + size)
    patch = inside_rows[:, None] & inside_cols[None, :]
    return jnp.where(patch[..., None], 0.0, image).astype(image.dtype)


def margins(image: Image) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Empty rows above and below, and empty columns left and right, of ONE image's non-zero pixels.

    Args:
      image: ``[height, width, channels]``; a pixel counts when any channel is non-zero.

    Returns:
      ``(top, bottom, left, right)``, int32 scalars; a blank image has ``(0, 0, 0, 0)``: nothing to move.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax.ops.augmentation import margins
      >>> [int(m) for m in margins(jnp.zeros((5, 6, 1)).at[1:3, 2, 0].set(1.0))]
      [1, 2, 2, 3]
    """
    height, width, _ = image.shape
    filled_rows = jnp.any(image != 0, axis=(1, 2))
    filled_cols = jnp.any(image != 0, axis=(0, 2))
    blank = ~jnp.any(filled_rows)
    top, bottom = jnp.argmax(filled_rows), jnp.argmax(filled_rows[::-1])
    left, right = jnp.argmax(filled_cols), jnp.argmax(filled_cols[::-1])
    return tuple(jnp.where(blank, 0, m) for m in (top, bottom, left, right))


def gaussian_smoothing_matrix(size: int, sigma: float) -> np.ndarray:
    """``[size, size]`` matrix ``G`` with ``G @ x`` a 1-D Gaussian blur (std ``sigma`` pixels, zeros
    beyond the ends, weights of the infinite kernel): ``G @ field @ G.T`` blurs a 2-D field.

    Example:
      >>> from capsjax.ops.augmentation import gaussian_smoothing_matrix
      >>> [round(float(w), 3) for w in gaussian_smoothing_matrix(5, 1.0)[2]]
      [0.054, 0.242, 0.399, 0.242, 0.054]
    """
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    return (np.exp(-0.5 * (offsets / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)).astype(np.float32)


def elastic_distort(image: Image, row_shift: jax.Array, col_shift: jax.Array) -> Image:
    """ONE image ``[height, width, channels]`` resampled through a displacement field: the output
    pixel ``(r, c)`` shows the input at ``(r + row_shift[r, c], c + col_shift[r, c])`` (bilinear,
    zeros outside); ``row_shift`` and ``col_shift`` are ``[height, width]`` in pixels.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax.ops.augmentation import elastic_distort
      >>> line = jnp.arange(4.0).reshape(1, 4, 1)
      >>> elastic_distort(line, jnp.zeros((1, 4)), jnp.full((1, 4), 0.5))[0, :, 0].tolist()
      [0.5, 1.5, 2.5, 1.5]
    """
    height, width, _ = image.shape
    rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    return _resample(image, rows + row_shift, cols + col_shift)


def random_elastic(image: Image, key: jax.Array, *, alpha: float, sigma: float) -> Image:
    """Distort ONE image ``[height, width, channels]`` elastically, as Simard et al. 2003: uniform
    noise in [-1, 1] per pixel and axis, blurred by a Gaussian of std ``sigma`` pixels and scaled by
    ``alpha``, is the displacement field of :func:`elastic_distort` (Simard's MNIST values: alpha 34,
    sigma 4, which move pixels about 1.5 px in the middle of a 28x28 image). Half of the images are
    left as they are, as :func:`random_rotate` does."""
    noise_key, keep_key = jax.random.split(key)
    height, width, _ = image.shape
    blur_rows = jnp.asarray(gaussian_smoothing_matrix(height, sigma))
    blur_cols = jnp.asarray(gaussian_smoothing_matrix(width, sigma))
    noise = jax.random.uniform(noise_key, (2, height, width), minval=-1.0, maxval=1.0)
    field = alpha * (blur_rows @ noise @ blur_cols.T)
    return jnp.where(jax.random.bernoulli(keep_key), image, elastic_distort(image, field[0], field[1]))


def random_rotate(image: Image, key: jax.Array, *, max_degrees: float) -> Image:
    """Rotate ONE image ``[height, width, channels]`` by ``r * max_degrees`` with a random sign, ``r``
    a random fraction; half of the images are left as they are (as the official code does)."""
    angle_key, keep_key = jax.random.split(key)
    angle = max_degrees * jnp.clip(_SPREAD * jax.random.normal(angle_key), -0.9999, 0.9999)
    return jnp.where(jax.random.bernoulli(keep_key), image, rotate(image, angle))


def random_squish(image: Image, key: jax.Array, *, max_pixels: int) -> Image:
    """Squish ONE image ``[height, width, channels]`` horizontally by 1 to ``max_pixels`` columns
    (``1 + floor(r * max_pixels)``, ``r`` a random fraction); ``max_pixels`` must be below the width."""
    if max_pixels >= image.shape[1]:
        raise ValueError(f"max_pixels={max_pixels}: a squish must leave columns of the {image.shape[1]}-wide image")
    return squish(image, 1 + jnp.floor(_fraction(key) * max_pixels))


def random_erase(image: Image, key: jax.Array, *, size: int) -> Image:
    """Zero a ``size x size`` patch of ONE image whose top-left pixel is uniform in
    ``[size, side - size - 2]`` on each axis: 4 to 22 for MNIST's 4x4 patch, as the official code.

    Args:
      image: ``[height, width, channels]``.
      key: a PRNG key.
      size: the patch's side, at most ``(min(height, width) - 2) // 2``.

    Returns:
      ``[height, width, channels]``, 16 pixels (per channel) zero for ``size=4``.
    """
    height, width, _ = image.shape
    if size > (min(height, width) - 2) // 2:  # the corner's range [size, side - size - 2] must not be empty
        largest = (min(height, width) - 2) // 2
        raise ValueError(f"erase size={size}: must be at most {largest} for a {height}x{width} image")
    top, left = jax.random.randint(key, (2,), size, jnp.array([height - size - 1, width - size - 1]))
    return erase(image, top, left, size=size)


def random_flip(image: Image, key: jax.Array) -> Image:
    """Mirror ONE image ``[height, width, channels]`` left to right with probability 1/2 (the usual
    augmentation for clothes, as in Fashion-MNIST; not for digits or letters)."""
    return jnp.where(jax.random.bernoulli(key), image[:, ::-1], image)


def random_margin_shift(image: Image, key: jax.Array) -> Image:
    """Shift ONE image ``[height, width, channels]`` up or down and left or right by a random fraction
    of the empty margin on that side (whole pixels, up to all of it), so the object moves but never
    leaves the image: nothing is lost."""
    amount_key, direction_key = jax.random.split(key)
    fraction = _fraction(amount_key, (2,))
    down, right = jax.random.bernoulli(direction_key, shape=(2,))
    top, bottom, left, right_margin = margins(image)
    rows = jnp.where(down, jnp.floor(fraction[0] * (bottom + 1)), -jnp.floor(fraction[0] * (top + 1)))
    cols = jnp.where(right, jnp.floor(fraction[1] * (right_margin + 1)), -jnp.floor(fraction[1] * (left + 1)))
    return shift(image, rows.astype(jnp.int32), cols.astype(jnp.int32))


def augment(
    image: Image,
    key: jax.Array,
    *,
    rotate_degrees: float = 0.0,
    margin_shift: bool = False,
    squish_pixels: int = 0,
    erase_size: int = 0,
    elastic_alpha: float = 0.0,
    elastic_sigma: float = 4.0,
    flip: bool = False,
) -> Image:
    """ONE image through the enabled augmentations: a left-right flip, an elastic distortion, then
    Efficient-CapsNet's in its official code's order: rotation, margin shift, squish, erased patch.
    All off (the defaults) returns the image unchanged.

    Args:
      image: ``[height, width, channels]`` floats.
      key: a PRNG key; each augmentation uses its own key folded from it.
      rotate_degrees: maximum rotation (Efficient-CapsNet: 30), see :func:`random_rotate`.
      margin_shift: shift within the margins, see :func:`random_margin_shift`.
      squish_pixels: maximum horizontal squish (Efficient-CapsNet: 7 on MNIST), see :func:`random_squish`.
      erase_size: side of the erased patch (Efficient-CapsNet: 4), see :func:`random_erase`.
      elastic_alpha: scale of the elastic displacement field (Simard et al.: 34), 0 for none, see
        :func:`random_elastic`.
      elastic_sigma: std in pixels of the field's Gaussian blur (Simard et al.: 4).
      flip: mirror left to right with probability 1/2, see :func:`random_flip`.

    Returns:
      ``[height, width, channels]``, the image's dtype.
    """
    if flip:
        image = random_flip(image, jax.random.fold_in(key, 5))
    if elastic_alpha:
        image = random_elastic(image, jax.random.fold_in(key, 4), alpha=elastic_alpha, sigma=elastic_sigma)
    if rotate_degrees:
        image = random_rotate(image, jax.random.fold_in(key, 0), max_degrees=rotate_degrees)
    if margin_shift:
        image = random_margin_shift(image, jax.random.fold_in(key, 1))
    if squish_pixels:
        image = random_squish(image, jax.random.fold_in(key, 2), max_pixels=squish_pixels)
    if erase_size:
        image = random_erase(image, jax.random.fold_in(key, 3), size=erase_size)
    return image


def augment_batch(images: Float[Array, "batch height width channels"], key: jax.Array, **options) -> jax.Array:
    """:func:`augment` with independent randomness per example; ``options`` are its keyword arguments."""
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda image, k: augment(image, k, **options))(images, keys)
