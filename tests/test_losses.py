import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from capsjax import distillation_loss, margin_loss, reconstruction_loss, spread_loss


def test_margin_loss_hand_computed():
    lengths = jnp.array([0.5, 0.3, 0.05])
    # true class 0: (0.9 - 0.5)^2 = 0.16; class 1: 0.5 * (0.3 - 0.1)^2 = 0.02; class 2: 0.
    np.testing.assert_allclose(margin_loss(lengths, jnp.array(0)), 0.18, rtol=1e-6)
    np.testing.assert_allclose(margin_loss(lengths, jnp.array(0), reduction="mean"), 0.06, rtol=1e-6)


def test_margin_loss_batch_and_multi_hot_targets():
    lengths = jnp.array([[0.5, 0.3, 0.05], [0.95, 0.95, 0.95]])
    labels = jnp.array([0, 2])
    per_example = margin_loss(lengths, labels)
    np.testing.assert_allclose(per_example, [0.18, 2 * 0.5 * 0.85**2], rtol=1e-6)
    two_hot = jnp.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(margin_loss(lengths, two_hot), [0.16 + 0.36, 2 * 0.5 * 0.85**2], rtol=1e-6)


def test_margin_loss_bad_labels():
    with pytest.raises(ValueError, match="labels: expected shape"):
        margin_loss(jnp.zeros((4, 10)), jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match="must be integers"):
        margin_loss(jnp.zeros((4, 10)), jnp.zeros((4,)))
    with pytest.raises(ValueError, match="reduction"):
        margin_loss(jnp.zeros((4, 10)), jnp.zeros((4,), jnp.int32), reduction="max")


def test_reconstruction_loss_hand_computed():
    images = jnp.zeros((2, 2, 2, 1))
    recon = jnp.full((2, 2, 2, 1), 0.5)
    np.testing.assert_allclose(reconstruction_loss(images, recon), [0.0005, 0.0005], rtol=1e-6)
    np.testing.assert_allclose(reconstruction_loss(images, recon.reshape(2, 4)), [0.0005] * 2, rtol=1e-6)
    np.testing.assert_allclose(
        reconstruction_loss(images, recon, weight=1.0, reduction="mean"), [0.25, 0.25], rtol=1e-6
    )


def test_reconstruction_loss_bad_shape():
    with pytest.raises(ValueError, match="reconstructions: expected shape"):
        reconstruction_loss(jnp.zeros((2, 4, 4, 1)), jnp.zeros((2, 15)))
    with pytest.raises(ValueError, match="images: expected rank"):
        reconstruction_loss(jnp.zeros((4, 4)), jnp.zeros((4, 4)))


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_check_grads(reduction):
    # Lengths away from the hinge points 0.1 / 0.9 where the loss is not twice differentiable.
    lengths = jnp.array([[0.5, 0.3, 0.2], [0.7, 0.95, 0.4]], jnp.float64)
    labels = jnp.array([0, 1])
    check_grads(lambda l: margin_loss(l, labels, reduction=reduction), (lengths,), order=2)
    images = jax.random.uniform(jax.random.key(0), (2, 3, 3, 1), jnp.float64)
    recon = jax.random.uniform(jax.random.key(1), (2, 3, 3, 1), jnp.float64)
    check_grads(lambda r: reconstruction_loss(images, r, reduction=reduction), (recon,), order=2)


def test_spread_loss_matches_its_definition_and_its_margin_grows():
    from capsjax.ops.losses import spread_margin

    rng = np.random.default_rng(0)
    a = rng.uniform(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 3, 4, 1])
    expected = [
        sum(max(0.0, 0.5 - (a[b, labels[b]] - a[b, i])) ** 2 for i in range(5) if i != labels[b]) for b in range(4)
    ]
    np.testing.assert_allclose(spread_loss(a, labels, margin=0.5), expected, rtol=1e-6)
    assert float(spread_loss(np.array([0.0, 1.0, 0.0]), np.array(1), margin=0.9)) == 0.0  # target far ahead
    np.testing.assert_allclose([spread_margin(s, steps=100) for s in (0, 50, 100, 1000)], [0.2, 0.55, 0.9, 0.9])


@pytest.mark.usefixtures("x64")
def test_spread_loss_check_grads_orders_1_and_2_in_activations_and_margin():
    # Gaps away from the hinge (margin - (a_t - a_i) = 0), where the square of the hinge has no
    # second derivative.
    activations = jnp.array([[0.9, 0.2, 0.5, 0.05], [0.35, 0.6, 0.1, 0.8]], jnp.float64)
    labels = jnp.array([0, 3])
    check_grads(
        lambda a, m: spread_loss(a, labels, margin=m), (activations, jnp.float64(0.5)), order=2, modes=("fwd", "rev")
    )


def test_distillation_loss_is_the_squared_distance_and_leaves_the_teacher_alone():
    scores = jnp.array([[0.9, 0.2, 0.05], [0.3, 0.6, 0.1]])
    teacher = jnp.array([[0.8, 0.3, 0.05], [0.3, 0.4, 0.3]])
    # 0.1^2 + 0.1^2 + 0 and 0 + 0.2^2 + 0.2^2
    np.testing.assert_allclose(distillation_loss(scores, teacher), [0.02, 0.08], rtol=1e-5)
    d_scores, d_teacher = jax.grad(lambda s, t: distillation_loss(s, t).sum(), argnums=(0, 1))(scores, teacher)
    np.testing.assert_allclose(d_scores, 2 * (scores - teacher), rtol=1e-5, atol=1e-7)
    assert not np.any(d_teacher)
    with pytest.raises(ValueError, match=r"teacher_scores: expected the scores' shape \(2, 3\), got \(2, 2\)"):
        distillation_loss(scores, teacher[:, :2])
