"""On-device input preprocessing: uint8 pixels to floats, the paper's random shifts of up to 2 pixels, random crops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, UInt8


def to_float(images: UInt8[Array, "..."]) -> Float[Array, "..."]:
    """uint8 pixels (what travels host -> device, 4x less than float32) to float32 in [0, 1].

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax.ops.preprocess import to_float
      >>> to_float(jnp.array([0, 255], jnp.uint8)).tolist()
      [0.0, 1.0]
    """
    return jnp.asarray(images).astype(jnp.float32) / 255.0


def shift(
    image: Float[Array, "height width channels"],
    rows: jax.typing.ArrayLike,
    cols: jax.typing.ArrayLike,
    *,
    max_offset: int | None = None,
) -> Float[Array, "height width channels"]:
    """ONE image moved down by ``rows`` and right by ``cols`` whole pixels (negative: up, left); zeros come in.

    ``max_offset``: a bound on ``|rows|`` and ``|cols|`` known in advance (the random shifts'), so
    that the image is padded by that much only; None pads by the image's own size (any offset).

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax.ops.preprocess import shift
      >>> shift(jnp.arange(1.0, 5.0).reshape(2, 2, 1), 1, -1)[..., 0].tolist()
      [[0.0, 0.0], [2.0, 0.0]]
    """
    height, width, channels = image.shape
    pad_rows, pad_cols = (height, width) if max_offset is None else (max_offset, max_offset)
    padded = jnp.pad(image, ((pad_rows, pad_rows), (pad_cols, pad_cols), (0, 0)))
    return jax.lax.dynamic_slice(padded, (pad_rows - rows, pad_cols - cols, 0), (height, width, channels))


def random_shift(
    image: Float[Array, "height width channels"], key: jax.Array, *, max_shift: int = 2
) -> Float[Array, "height width channels"]:
    """Shift ONE image by a random integer offset in [-max_shift, max_shift] on each axis.

    Pixels shifted in are zero. Batch with ``jax.vmap`` over ``(image, key)`` (see :func:`shift_batch`).
    """
    if max_shift == 0:
        return image
    offsets = jax.random.randint(key, (2,), 0, 2 * max_shift + 1)
    return shift(image, max_shift - offsets[0], max_shift - offsets[1], max_offset=max_shift)


def shift_batch(
    images: Float[Array, "batch height width channels"], key: jax.Array, *, max_shift: int = 2
) -> Float[Array, "batch height width channels"]:
    """:func:`random_shift` with an independent offset per example."""
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda im, k: random_shift(im, k, max_shift=max_shift))(images, keys)


def random_crop(
    image: Float[Array, "height width channels"], key: jax.Array, *, size: int
) -> Float[Array, "size size channels"]:
    """A random ``size x size`` window of ONE image (every position equally likely)."""
    height, width, channels = image.shape
    rows = jax.random.randint(key, (), 0, height - size + 1)
    cols = jax.random.randint(jax.random.fold_in(key, 1), (), 0, width - size + 1)
    return jax.lax.dynamic_slice(image, (rows, cols, 0), (size, size, channels))


def crop_batch(
    images: Float[Array, "batch height width channels"], key: jax.Array, *, size: int
) -> Float[Array, "batch size size channels"]:
    """:func:`random_crop` with an independent window per example."""
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda im, k: random_crop(im, k, size=size))(images, keys)
