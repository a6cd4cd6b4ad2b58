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
