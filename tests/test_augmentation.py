import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from capsjax.ops.augmentation import (
    augment,
    augment_batch,
    elastic_distort,
    erase,
    gaussian_smoothing_matrix,
    margins,
    random_elastic,
    random_erase,
    random_flip,
    random_margin_shift,
    random_rotate,
    random_squish,
    rotate,
    squish,
)
from capsjax.ops.preprocess import shift


def digit(rows=(8, 20), cols=(10, 18), side=28, seed=0):
    """A random blob ``[side, side, 1]`` filling ``rows x cols``, zeros elsewhere."""
    image = np.zeros((side, side, 1), np.float32)
    size = (rows[1] - rows[0], cols[1] - cols[0], 1)
    image[rows[0] : rows[1], cols[0] : cols[1]] = np.random.default_rng(seed).uniform(0.1, 1, size)
    return jnp.asarray(image)


@pytest.mark.parametrize("shape", [(5, 5, 1), (6, 6, 2)])
def test_quarter_turns_are_exact_pixel_permutations(shape):
    image = jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape)
    np.testing.assert_allclose(rotate(image, 90.0), np.rot90(image), atol=1e-4)  # counterclockwise
    np.testing.assert_allclose(rotate(image, -90.0), np.rot90(image, -1), atol=1e-4)
    np.testing.assert_allclose(rotate(image, 180.0), np.rot90(image, 2), atol=1e-4)
    np.testing.assert_allclose(rotate(image, 0.0), image, atol=1e-6)


def test_rotation_by_an_angle_moves_a_point_along_the_circle():
    image = jnp.zeros((29, 29, 1)).at[14, 24, 0].set(1.0)  # 10 px right of the centre (14, 14)
    rotated = np.asarray(rotate(image, 30.0))[..., 0]
    row, col = np.unravel_index(np.argmax(rotated), rotated.shape)
    # counterclockwise on screen (rows grow downwards): up and to the left of where it was
    assert (row, col) == (round(14 - 10 * np.sin(np.pi / 6)), round(14 + 10 * np.cos(np.pi / 6)))


def test_squish_narrows_the_image_about_its_centre():
    image = jnp.ones((4, 28, 1))
    for pixels in (2, 4, 7):
        columns = np.asarray(squish(image, pixels))[0, :, 0]
        assert abs(columns.sum() - (28 - pixels)) < 1  # the width, edges blended
        np.testing.assert_allclose(columns, columns[::-1], atol=1e-5)  # about the centre
        assert np.all(columns[: pixels // 2] == 0) and np.all(columns[14 - 9 : 14 + 9] > 0.999)
    np.testing.assert_allclose(squish(image, 0), image, atol=1e-6)


def test_erase_zeroes_exactly_the_patch():
    image = jnp.ones((10, 12, 3))
    erased = np.asarray(erase(image, 2, 5, size=3))
    expected = np.ones((10, 12, 3))
    expected[2:5, 5:8] = 0
    np.testing.assert_array_equal(erased, expected)


def test_shift_moves_whole_pixels_and_margins_measure_the_empty_border():
    image = digit()
    assert tuple(int(m) for m in margins(image)) == (8, 8, 10, 10)
    moved = shift(image, -3, 4)
    np.testing.assert_array_equal(moved[5:17, 14:22], image[8:20, 10:18])
    assert tuple(int(m) for m in margins(moved)) == (5, 11, 14, 6)
    assert tuple(int(m) for m in margins(jnp.zeros((28, 28, 1)))) == (0, 0, 0, 0)


def test_margin_shifts_move_the_object_without_losing_any_of_it():
    image = digit(rows=(2, 14), cols=(15, 27))  # near the top-right corner: margins 2, 14, 15, 1
    offsets = set()
    for k in range(200):
        moved = random_margin_shift(image, jax.random.key(k))
        np.testing.assert_allclose(float(moved.sum()), float(image.sum()), rtol=1e-6)  # nothing lost
        top, _, left, _ = (int(m) for m in margins(moved))
        offsets.add((top - 2, left - 15))
    rows, cols = zip(*offsets, strict=True)
    assert min(rows) >= -2 and max(rows) <= 14 and min(cols) >= -15 and max(cols) <= 1
    assert min(rows) < 0 < max(rows) and min(cols) < 0 < max(cols) and len(offsets) > 20


def test_random_rotations_leave_half_the_images_and_stay_within_the_maximum():
    image = jnp.zeros((29, 29, 1)).at[14, 24, 0].set(1.0)
    unchanged, angles = 0, []
    for k in range(300):
        rotated = np.asarray(random_rotate(image, jax.random.key(k), max_degrees=30.0))[..., 0]
        if np.array_equal(rotated, np.asarray(image)[..., 0]):
            unchanged += 1
            continue
        row, col = np.unravel_index(np.argmax(rotated), rotated.shape)
        angles.append(np.degrees(np.arctan2(14 - row, col - 14)))
    assert 110 < unchanged < 190  # half, give or take 4.5 standard deviations
    assert max(np.abs(angles)) <= 32 and min(angles) < -5 and max(angles) > 5


def test_random_squish_and_erase_stay_in_their_ranges():
    image = jnp.ones((28, 28, 1))
    widths, corners = set(), set()
    for k in range(200):
        columns = np.asarray(random_squish(image, jax.random.key(k), max_pixels=7))[0, :, 0]
        widths.add(round(float(columns.sum())))
        erased = np.asarray(random_erase(image, jax.random.key(k), size=4))[..., 0]
        zeros = np.argwhere(erased == 0)
        assert len(zeros) == 16
        corners.add(tuple(zeros.min(axis=0)))
    assert widths <= set(range(21, 28)) and len(widths) >= 4 and 27 in widths
    rows, cols = zip(*corners, strict=True)
    assert min(rows) == min(cols) == 4 and max(rows) == max(cols) == 22  # the official code's range


def test_elastic_distortion_by_a_zero_field_is_the_identity_and_by_a_constant_one_a_shift():
    image = digit()
    zeros = jnp.zeros((28, 28))
    np.testing.assert_allclose(elastic_distort(image, zeros, zeros), image, atol=1e-6)
    moved = elastic_distort(image, zeros + 2.0, zeros - 3.0)  # shows the input 2 rows below, 3 columns left
    np.testing.assert_allclose(moved, shift(image, -2, 3), atol=1e-6)
    half = elastic_distort(image, zeros, zeros + 0.5)  # half a pixel: the mean of the two neighbours
    np.testing.assert_allclose(half[:, :-1], (image[:, :-1] + image[:, 1:]) / 2, atol=1e-6)


def test_gaussian_smoothing_matrix_blurs_like_a_normalised_gaussian():
    blur = gaussian_smoothing_matrix(60, 4.0)
    np.testing.assert_allclose(blur, blur.T)
    np.testing.assert_allclose(blur[20:40].sum(axis=1), 1.0, atol=1e-4)  # away from the ends, weights sum to 1
    assert blur[0].sum() == pytest.approx(0.5, abs=0.06)  # at an end, half the kernel falls outside
    row = blur[30]
    assert np.argmax(row) == 30 and row[34] / row[30] == pytest.approx(np.exp(-0.5), rel=1e-5)  # one sigma
    # White noise blurred in 2-D keeps a std of about 1 / (2 sqrt(pi) sigma) of its own.
    noise = np.random.default_rng(0).uniform(-1, 1, (200, 60, 60)).astype(np.float32)
    blurred = (blur @ noise @ blur.T)[:, 20:40, 20:40]
    assert blurred.std() / noise.std() == pytest.approx(1 / (2 * np.sqrt(np.pi) * 4.0), rel=0.15)


def test_random_elastic_distorts_half_the_images_by_smooth_fields_that_grow_with_alpha():
    image = digit()
    changed, change = 0, {10.0: [], 34.0: []}
    for k in range(200):
        for alpha in change:
            out = random_elastic(image, jax.random.key(k), alpha=alpha, sigma=4.0)
            difference = float(jnp.abs(out - image).sum())
            if difference > 0:
                change[alpha].append(difference)
        changed += difference > 0
    assert 65 < changed < 135  # half, give or take 4.5 standard deviations
    assert len(change[10.0]) == changed  # the same keys distort the same images
    assert np.mean(change[34.0]) > 2 * np.mean(change[10.0])
    np.testing.assert_array_equal(random_elastic(image, jax.random.key(0), alpha=0.0, sigma=4.0), image)
    # A smooth field of about 1.5 px bends the digit; it stays where it was, with some of its ink.
    rows, cols = np.mgrid[:28, :28]

    def centre(x):
        x = np.asarray(x)[..., 0]
        return np.array([(rows * x).sum(), (cols * x).sum()]) / x.sum()

    for k in range(20):
        out = random_elastic(image, jax.random.key(k), alpha=34.0, sigma=4.0)
        assert np.linalg.norm(centre(out) - centre(image)) < 2.5 and 0.5 < float(out.sum() / image.sum()) < 1.5


def test_random_flips_mirror_about_half_the_images_left_to_right_and_change_nothing_else():
    image = digit(cols=(3, 9))  # off centre: a mirrored copy differs from the original
    flipped = jax.vmap(lambda k: random_flip(image, k))(jax.random.split(jax.random.key(0), 200))
    mirrored = np.asarray(image)[:, ::-1]
    is_mirror = [np.array_equal(np.asarray(out), mirrored) for out in flipped]
    is_same = [np.array_equal(np.asarray(out), np.asarray(image)) for out in flipped]
    assert all(m != s for m, s in zip(is_mirror, is_same, strict=True))  # each output is one of the two
    assert 70 < sum(is_mirror) < 130
    assert np.array_equal(np.asarray(augment(image, jax.random.key(1), flip=False)), np.asarray(image))


def test_bad_sizes_are_one_line_errors():
    with pytest.raises(ValueError, match="max_pixels=28: a squish must leave columns"):
        random_squish(jnp.ones((28, 28, 1)), jax.random.key(0), max_pixels=28)
    with pytest.raises(ValueError, match="erase size=14: must be at most 13 for a 28x28 image"):
        random_erase(jnp.ones((28, 28, 1)), jax.random.key(0), size=14)


def test_batch_is_independent_per_example_jittable_and_identity_when_off():
    images = jnp.stack([digit(seed=s) for s in range(8)])
    options = dict(rotate_degrees=30.0, margin_shift=True, squish_pixels=7, erase_size=4, elastic_alpha=34.0, flip=True)
    key = jax.random.key(0)
    batch = jax.jit(lambda x: augment_batch(x, key, **options))
    augmented = batch(images)
    assert augmented.shape == images.shape and augmented.dtype == images.dtype
    one = jax.jit(lambda image, k: augment(image, k, **options))
    for image, k, out in zip(images, jax.random.split(key, 8), augmented, strict=True):  # vmap equals the loop
        np.testing.assert_allclose(one(image, k), out, atol=1e-5)
    same = jnp.repeat(images[:1], 8, axis=0)
    assert len({np.asarray(x).tobytes() for x in batch(same)}) > 4
    np.testing.assert_array_equal(augment_batch(images, key), images)


def test_resampling_is_differentiable_in_the_image(x64):
    image = digit(side=8, rows=(2, 6), cols=(3, 6)).astype(jnp.float64)
    check_grads(lambda x: rotate(x, 17.0), (image,), order=1, modes=["rev"])
    check_grads(lambda x: squish(x, 3), (image,), order=1, modes=["rev"])
    field = jax.random.uniform(jax.random.key(0), (2, 8, 8), jnp.float64, -1.5, 1.5)
    check_grads(lambda x: elastic_distort(x, field[0], field[1]), (image,), order=1, modes=["rev"])
