import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from capsjax import CapsNet, CapsNetConfig, CNNConfig, ModelOutput
from capsjax.data.canvas import place_on_canvas
from capsjax.data.dataset import ArrayDataset
from capsjax.data.multimnist import load_multimnist, make_multimnist
from capsjax.training.config import DataConfig, LossConfig
from capsjax.training.objectives import classification_loss, compute_losses, correct_predictions
from capsjax.training.state import init_state
from capsjax.training.steps import make_train_step
from helpers import tiny_config


def fake_mnist(n=40):
    rng = np.random.default_rng(0)
    images = np.zeros((n, 28, 28, 1), np.uint8)
    for k in range(n):
        images[k, 4 + k % 10 : 14 + k % 10, 6:20] = rng.integers(50, 255)
    return ArrayDataset(images, (np.arange(n) % 10).astype(np.int32), "fake")


def test_pairs_of_different_classes_overlaid_by_max():
    data = make_multimnist(fake_mnist(), num_examples=30, seed=3)
    assert data.images.shape == (30, 36, 36, 1) and data.targets.shape == (30, 2, 36, 36, 1)
    assert np.all(data.labels[:, 0] != data.labels[:, 1])
    np.testing.assert_array_equal(data.images, np.maximum(data.targets[:, 0], data.targets[:, 1]))
    again = make_multimnist(fake_mnist(), num_examples=30, seed=3)
    np.testing.assert_array_equal(data.images, again.images)
    # each target holds the whole digit (shifts of at most 4 px keep it on the canvas)
    np.testing.assert_array_equal(data.targets.reshape(60, -1).sum(1) > 0, True)


def test_place_shifts_within_canvas():
    digit = np.ones((1, 28, 28, 1), np.uint8)
    placed = place_on_canvas(digit, 36, [(4, -4)])[0]
    assert placed.sum() == 28 * 28
    assert placed[8:, :28].all() and not placed[:8].any()
    with pytest.raises(ValueError, match="leaves the 36x36 canvas"):
        place_on_canvas(digit, 36, [(5, 0)])


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch, mnist_dir):
    monkeypatch.setenv("CAPSJAX_CACHE_DIR", str(tmp_path))
    first = load_multimnist("test", data_dir=mnist_dir, num_examples=20)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    monkeypatch.setattr("capsjax.data.multimnist.make_multimnist", lambda *a, **k: pytest.fail("regenerated"))
    second = load_multimnist("test", data_dir=mnist_dir, num_examples=20)
    np.testing.assert_array_equal(first.images, second.images)
    np.testing.assert_array_equal(first.targets, second.targets)


def test_top2_rule():
    lengths = jnp.array([[0.9, 0.8, 0.1], [0.9, 0.1, 0.8], [0.9, 0.1, 0.8]])
    labels = jnp.array([[1, 0], [0, 1], [2, 0]])
    np.testing.assert_array_equal(correct_predictions(lengths, labels), [True, False, True])


def test_two_label_model_and_losses():
    model = CapsNet(
        CapsNetConfig(image_shape=(36, 36, 1), conv_channels=8, primary_types=2, decoder_hidden=(16,)), rngs=nnx.Rngs(0)
    )
    images = jnp.zeros((3, 36, 36, 1))
    labels = jnp.array([[1, 2], [3, 4], [5, 6]])
    out = model(images, labels)
    assert out.reconstructions.shape == (3, 2, 36, 36, 1)
    targets = jnp.zeros((3, 2, 36, 36, 1))
    total, parts = compute_losses(out, images, labels, LossConfig(), targets)
    expected_recon = 0.0005 * np.mean(np.sum(np.asarray(out.reconstructions) ** 2, axis=(1, 2, 3, 4)))
    np.testing.assert_allclose(parts["recon_loss"], expected_recon, rtol=1e-5)
    assert np.isfinite(float(total))


def test_two_label_cnn_loss_is_per_class_sigmoid_cross_entropy():
    logits = jnp.array([[2.0, -1.0, 0.0], [0.0, 0.0, 0.0]])
    labels = jnp.array([[0, 2], [1, 0]])
    output = ModelOutput(scores=jax.nn.softmax(logits), logits=logits)
    per_example = classification_loss(output, labels, LossConfig())

    def bce(z, present):  # -log sigmoid(z) for a present class, -log(1 - sigmoid(z)) for an absent one
        return np.log1p(np.exp(-z)) if present else np.log1p(np.exp(z))

    expected = [bce(2.0, 1) + bce(-1.0, 0) + bce(0.0, 1), bce(0.0, 1) + bce(0.0, 1) + bce(0.0, 0)]
    np.testing.assert_allclose(per_example, expected, rtol=1e-5)


def test_cnn_trains_on_two_labels():
    config = tiny_config(
        model="cnn",
        cnn=CNNConfig(image_shape=(36, 36, 1), conv_channels=(4, 4, 2), hidden=(16,)),
        data=DataConfig(name="multimnist", max_shift=0),
    )
    graphdef, state = init_state(config)
    step = make_train_step(graphdef, config)
    data = make_multimnist(fake_mnist(), num_examples=32, seed=0)
    losses = []
    for _ in range(6):
        state, metrics = step(state, data.images, data.labels, data.targets)
        losses.append(float(metrics["class_loss"]))
    assert losses[-1] < losses[0] and metrics["recon_loss"] == 0.0
