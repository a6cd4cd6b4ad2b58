import numpy as np
import pytest

from capsjax.data.affine import AffineRanges, affine_test_set
from capsjax.data.canvas import place_on_canvas
from capsjax.data.dataset import ArrayDataset


def digits(n=6):
    images = np.zeros((n, 28, 28, 1), np.uint8)
    images[:, 8:20, 12:16] = 255  # a vertical bar
    return ArrayDataset(images, np.arange(n, dtype=np.int32) % 10, "bars")


def test_pad_to_canvas_centres():
    padded = place_on_canvas(digits().images, 40)
    assert padded.shape == (6, 40, 40, 1)
    np.testing.assert_array_equal(padded[:, 6:34, 6:34], digits().images)
    assert padded.sum() == digits().images.sum()
    with pytest.raises(ValueError, match="canvas"):
        place_on_canvas(digits().images, 20)


def test_affine_set_is_fixed_by_seed_and_keeps_labels():
    data = digits()
    a, b, c = affine_test_set(data, seed=0), affine_test_set(data, seed=0), affine_test_set(data, seed=1)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    np.testing.assert_array_equal(a.labels, data.labels)
    assert a.images.shape == (6, 40, 40, 1)
    # Each image is transformed differently, but the ink stays on the canvas (scale >= 0.8).
    assert len({img.tobytes() for img in a.images}) == 6
    ink = a.images.reshape(6, -1).astype(float).sum(1) / (12 * 4 * 255)
    assert np.all((ink > 0.5) & (ink < 1.6))


def test_identity_ranges_only_pad():
    data = digits()
    same = affine_test_set(data, ranges=AffineRanges(rotation_deg=0.0, shear=0.0, scale=(1.0, 1.0), translation=0.0))
    np.testing.assert_array_equal(same.images, place_on_canvas(data.images, 40))
