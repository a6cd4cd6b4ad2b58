"""Images placed on a larger black canvas: centred, or centred and then shifted per image."""

from __future__ import annotations

import numpy as np


def place_on_canvas(images: np.ndarray, canvas: int, offsets: np.ndarray | None = None) -> np.ndarray:
    """Centre ``[n, h, w, c]`` images on ``canvas x canvas`` black backgrounds, each moved by its offset.

    Args:
      images: ``[n, height, width, channels]``.
      canvas: side of the square canvas, at least the image size.
      offsets: optional ``[n, 2]`` integer ``(dy, dx)`` per image, applied after centring.

    Returns:
      ``[n, canvas, canvas, channels]`` of the images' dtype.

    Raises:
      ValueError: the canvas is smaller than the images, or an offset moves an image off it.

    Example:
      >>> import numpy as np
      >>> from capsjax.data.canvas import place_on_canvas
      >>> place_on_canvas(np.ones((1, 2, 2, 1)), 4, offsets=[(1, -1)])[0, ..., 0].tolist()
      [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]
    """
    n, height, width, channels = images.shape
    if canvas < max(height, width):
        raise ValueError(f"canvas ({canvas}) must be at least the image size {height}x{width}")
    top, left = (canvas - height) // 2, (canvas - width) // 2
    out = np.zeros((n, canvas, canvas, channels), images.dtype)
    if offsets is None:
        out[:, top : top + height, left : left + width] = images
        return out
    offsets = np.asarray(offsets, int).reshape(n, 2)
    rows, cols = top + offsets[:, 0], left + offsets[:, 1]
    if rows.min() < 0 or cols.min() < 0 or rows.max() + height > canvas or cols.max() + width > canvas:
        raise ValueError(f"offsets: an image of {height}x{width} moved that far leaves the {canvas}x{canvas} canvas")
    for k in range(n):
        out[k, rows[k] : rows[k] + height, cols[k] : cols[k] + width] = images[k]
    return out


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """``[n, h, w, c]`` uint8 images resized to ``[n, size, size, c]`` (bilinear, PIL; exact box
    averages when ``h`` and ``w`` are the same multiple of ``size``, e.g. smallNORB's 96 -> 48)."""
    n, height, width, channels = images.shape
    if (height, width) == (size, size):
        return images
    if height == width and height % size == 0:
        factor = height // size
        blocks = images.reshape(n, size, factor, size, factor, channels).astype(np.float32)
        return np.round(blocks.mean(axis=(2, 4))).astype(np.uint8)
    from PIL import Image

    resized = [
        np.stack(
            [np.asarray(Image.fromarray(image[..., c]).resize((size, size), Image.BILINEAR)) for c in range(channels)],
            axis=-1,
        )
        for image in images
    ]
    return np.stack(resized).astype(np.uint8)


def centre_crop(images: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` window of ``[n, h, w, c]`` images.

    Raises:
      ValueError: the images are smaller than ``size``.
    """
    _, height, width, _ = images.shape
    if size > min(height, width):
        raise ValueError(f"crop ({size}) is larger than the images ({height}x{width})")
    top, left = (height - size) // 2, (width - size) // 2
    return images[:, top : top + size, left : left + size]
