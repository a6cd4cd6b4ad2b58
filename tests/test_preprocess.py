import jax
import jax.numpy as jnp
import numpy as np

from capsjax.ops.preprocess import random_shift, shift_batch


def test_shift_moves_a_pixel_within_range():
    image = jnp.zeros((28, 28, 1)).at[14, 14, 0].set(1.0)
    seen = set()
    for k in range(60):
        shifted = random_shift(image, jax.random.key(k), max_shift=2)
        (row,), (col,), _ = np.nonzero(np.asarray(shifted))
        assert abs(row - 14) <= 2 and abs(col - 14) <= 2
        seen.add((row - 14, col - 14))
    assert len(seen) > 15  # most of the 25 offsets occur


def test_batch_shifts_are_independent_per_example():
    images = jnp.zeros((16, 28, 28, 1)).at[:, 14, 14, 0].set(1.0)
    shifted = shift_batch(images, jax.random.key(0))
    positions = {tuple(np.argwhere(np.asarray(s[..., 0]))[0]) for s in shifted}
    assert len(positions) > 1
    np.testing.assert_array_equal(shift_batch(images, jax.random.key(0), max_shift=0), images)


def test_random_crops_are_windows_of_the_image_at_every_position():
    from capsjax.ops.preprocess import crop_batch

    image = jnp.arange(6 * 5, dtype=jnp.float32).reshape(1, 6, 5, 1)
    crops = crop_batch(jnp.repeat(image, 200, axis=0), jax.random.key(0), size=3)
    assert crops.shape == (200, 3, 3, 1)
    corners = {(int(c[0, 0, 0]) // 5, int(c[0, 0, 0]) % 5) for c in crops}
    assert corners == {(r, c) for r in range(4) for c in range(3)}  # every window position occurs
    for crop in crops[:10]:
        r, c = int(crop[0, 0, 0]) // 5, int(crop[0, 0, 0]) % 5
        np.testing.assert_array_equal(crop, image[0, r : r + 3, c : c + 3])
