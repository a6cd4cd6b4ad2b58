"""A fixed, seeded affine-transformed MNIST test set on a 40x40 canvas, in the manner of affNIST.

affNIST (used in Sabour et al. 2017, sec. 5.2) places each MNIST digit on a 40x40 canvas and
applies a random small affine transform. The ranges follow its description for rotation (+-20
degrees), shear (+-0.2) and scale (0.8-1.2 per axis); the translation defaults to +-2 pixels, the
range the models saw in training (+-2 px shifts), so that the test measures robustness to the
other, unseen deformations. Generated with SciPy from (seed, index): the same seed always yields
the same set.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from capsjax.data.canvas import place_on_canvas
from capsjax.data.dataset import ArrayDataset


@dataclasses.dataclass(frozen=True)
class AffineRanges:
    """Ranges of the random affine transform: rotation in degrees, shear, per-axis scale, shift in pixels."""

    rotation_deg: float = 20.0
    shear: float = 0.2
    scale: tuple[float, float] = (0.8, 1.2)
    translation: float = 2.0


def random_affine_matrix(rng: np.random.Generator, ranges: AffineRanges) -> np.ndarray:
    """A 2x2 matrix (output -> input coordinates) and a translation, as one 2x3 array."""
    angle = np.deg2rad(rng.uniform(-ranges.rotation_deg, ranges.rotation_deg))
    shear = rng.uniform(-ranges.shear, ranges.shear)
    sy, sx = rng.uniform(*ranges.scale, size=2)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = rotation @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sy, sx])
    shift = rng.uniform(-ranges.translation, ranges.translation, size=2)
    return np.concatenate([forward, shift[:, None]], axis=1)


def affine_test_set(
    dataset: ArrayDataset, *, seed: int = 0, canvas: int = 40, ranges: AffineRanges = AffineRanges()
) -> ArrayDataset:
    """Every image of ``dataset`` on a ``canvas`` canvas under its own random affine transform."""
    padded = place_on_canvas(dataset.images, canvas)
    centre = (np.array([canvas, canvas]) - 1) / 2.0
    out = np.empty_like(padded)
    for k in range(len(padded)):
        rng = np.random.default_rng([seed, k])
        matrix = random_affine_matrix(rng, ranges)
        forward, shift = matrix[:, :2], matrix[:, 2]
        inverse = np.linalg.inv(forward)
        # ndimage maps output coords o to input coords inverse @ (o - centre - shift) + centre.
        offset = centre - inverse @ (centre + shift)
        warped = ndimage.affine_transform(padded[k, ..., 0].astype(np.float32), inverse, offset=offset, order=1)
        out[k, ..., 0] = np.clip(np.rint(warped), 0, 255).astype(np.uint8)
    return ArrayDataset(out, dataset.labels, f"affine({dataset.source}, seed={seed})")
