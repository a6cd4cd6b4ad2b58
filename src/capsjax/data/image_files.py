"""Image files: grids of images and reconstructions as PNG, and reading input images.

Input images are checked from their headers before they are decoded: at most
:data:`capsjax.data.file_formats.MAX_IMAGE_PIXELS` pixels (a small PNG that decodes to gigabytes is
refused with a :class:`~capsjax.data.file_formats.DataFormatError` naming the file and its size).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
from PIL import Image

from capsjax.data.atomic import atomic_path
from capsjax.data.file_formats import DataFormatError, decode_image, open_image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (or uint8) to uint8; NaN (from a diverged model) shows as black."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    return (np.clip(np.nan_to_num(images, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def tile(images: np.ndarray, *, columns: int, padding: int = 2, fill: int = 128) -> np.ndarray:
    """Tile ``[n, height, width]`` or ``[n, height, width, channels]`` images into one array."""
    images = to_uint8(images)
    if images.ndim == 3:
        images = images[..., None]
    n, height, width, channels = images.shape
    rows = math.ceil(n / columns)
    grid = np.full(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels), fill, np.uint8
    )
    for k in range(n):
        r, c = divmod(k, columns)
        top, left = padding + r * (height + padding), padding + c * (width + padding)
        grid[top : top + height, left : left + width] = images[k]
    return grid[..., 0] if channels == 1 else grid


def save_png(path: str | pathlib.Path, array: np.ndarray, *, scale: int = 1) -> pathlib.Path:
    """Save a uint8 (or [0, 1] float) image array as PNG, optionally enlarged ``scale`` times."""
    path = pathlib.Path(path)
    array = to_uint8(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    image = Image.fromarray(array)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    with atomic_path(path) as temporary:  # never a 0-byte PNG on a full disk
        image.save(temporary, format="PNG")
    return path


def reconstruction_grid(images: np.ndarray, reconstructions: np.ndarray, *, columns: int = 8) -> np.ndarray:
    """Rows of inputs followed by rows of their reconstructions (``[n, h, w, 1]`` each)."""
    n = len(images) - len(images) % columns or len(images)
    pairs = []
    for start in range(0, n, columns):
        pairs += [images[start : start + columns], reconstructions[start : start + columns]]
    return tile(np.concatenate([to_uint8(p) for p in pairs]), columns=min(columns, n))


def overlay(image: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """RGB ``[h, w, 3]`` in [0, 1]: ``image`` in dim gray, ``first`` in red and ``second`` in green over it.

    Args:
      image, first, second: ``[h, w, 1]``; ``image`` uint8 or in [0, 1], the others in [0, 1].
    """
    gray = 0.35 * to_uint8(image)[..., 0].astype(np.float32) / 255.0
    red = np.clip(gray + np.asarray(first)[..., 0], 0, 1)
    green = np.clip(gray + np.asarray(second)[..., 0], 0, 1)
    return np.stack([red, green, gray], axis=-1)


def overlay_grid(images: np.ndarray, reconstructions: np.ndarray, *, columns: int = 8) -> np.ndarray:
    """Rows of inputs, each followed by a row of their two reconstructions in red and green over them.

    Args:
      images: ``[n, h, w, 1]`` uint8 (or in [0, 1]).
      reconstructions: ``[n, 2, h, w, 1]`` in [0, 1], one per object.

    Returns:
      one uint8 RGB array.
    """
    n = len(images) - len(images) % columns or len(images)
    tiles = []
    for start in range(0, n, columns):
        chunk = range(start, min(start + columns, n))
        tiles += [np.repeat(to_uint8(images[k]), 3, axis=-1) for k in chunk]
        tiles += [to_uint8(overlay(images[k], reconstructions[k, 0], reconstructions[k, 1])) for k in chunk]
    return tile(np.stack(tiles), columns=min(columns, n))


def read_image(path: str | pathlib.Path, *, shape: tuple[int, int, int], resize: bool = False) -> np.ndarray:
    """Read a PNG (or any PIL image) as uint8 ``shape`` ``[height, width, channels]`` (1: grayscale, 3: RGB).

    Args:
      resize: fit an image of another size to ``shape`` (bilinear); otherwise that is an error.

    Raises:
      DataFormatError (a ValueError): the file is not an image, has more than
        :data:`~capsjax.data.file_formats.MAX_IMAGE_PIXELS` pixels (checked before decoding), or its
        size is not ``shape``'s and ``resize`` is off (no silent resizing: the MNIST network was
        trained on centred 28x28 digits, white on black).
    """
    path = pathlib.Path(path)
    height, width, channels = shape
    with open_image(path) as image:
        if not resize and image.size != (width, height):
            raise DataFormatError(
                f"{path}: expected a {width}x{height} image (the model's size), got {image.width}x{image.height}; "
                "--resize fits other sizes"
            )
        array = decode_image(path, image, "L" if channels == 1 else "RGB")
    if resize and array.shape[:2] != (height, width):
        array = np.asarray(Image.fromarray(array).resize((width, height), Image.BILINEAR), np.uint8)
    return array[..., None] if array.ndim == 2 else array
