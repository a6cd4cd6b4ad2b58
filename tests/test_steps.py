import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from capsjax import ModelOutput
from capsjax.training.config import LossConfig, OptimConfig, validate
from capsjax.training.objectives import compute_losses
from capsjax.training.state import (
    evaluation_params,
    init_state,
    learning_rate_schedule,
    make_optimizer,
    param_average,
    track_param_average,
)
from capsjax.training.steps import make_train_step
from helpers import tiny_config


def test_learning_rate_decays_0_96_per_2000_steps():
    schedule = learning_rate_schedule(OptimConfig())
    np.testing.assert_allclose(schedule(0), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(schedule(2000), 0.96e-3, rtol=1e-6)
    np.testing.assert_allclose(schedule(4000), 0.96**2 * 1e-3, rtol=1e-6)


def test_losses_pick_margin_or_cross_entropy():
    labels = jnp.array([0, 1])
    images = jnp.zeros((2, 2, 2, 1))
    capsnet_like = ModelOutput(scores=jnp.array([[0.9, 0.1], [0.5, 0.5]]), reconstructions=jnp.full((2, 2, 2, 1), 0.5))
    total, parts = compute_losses(capsnet_like, images, labels, LossConfig())
    # margin: example 0 meets both margins (0); example 1: 0.16 + 0.5 * 0.16 = 0.24 -> mean 0.12
    np.testing.assert_allclose(parts["class_loss"], 0.12, rtol=1e-5)
    np.testing.assert_allclose(parts["recon_loss"], 0.0005 * 4 * 0.25, rtol=1e-5)
    np.testing.assert_allclose(total, parts["class_loss"] + parts["recon_loss"], rtol=1e-6)
    _, no_recon = compute_losses(capsnet_like, images, labels, LossConfig(recon_weight=0.0))
    assert no_recon["recon_loss"] == 0.0
    logits = jnp.array([[2.0, 0.0], [0.0, 0.0]])
    cnn_like = ModelOutput(scores=jax.nn.softmax(logits), logits=logits)
    _, parts = compute_losses(cnn_like, images, labels, LossConfig())
    expected = np.mean([np.log(1 + np.exp(-2.0)), np.log(2.0)])
    np.testing.assert_allclose(parts["class_loss"], expected, rtol=1e-5)
    assert parts["accuracy"] == 0.5


@pytest.mark.parametrize("model", ["capsnet", "cnn"])
def test_train_step_compiles_once_and_learns(model):
    config = tiny_config(model=model)
    if model == "cnn":
        from capsjax import CNNConfig

        config = tiny_config(model="cnn", cnn=CNNConfig(conv_channels=(4, 4, 2), hidden=(16, 8)))
    graphdef, state = init_state(config)
    step = make_train_step(graphdef, config)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 32).astype(np.int32)
    losses = []
    for _ in range(8):
        state, metrics = step(state, images, labels)
        losses.append(float(metrics["loss"]))
    assert step._cache_size() == 1  # no retrace after the first step
    assert int(state.step) == 8
    chex.assert_tree_all_finite(state.params)
    assert losses[-1] < losses[0]


def test_train_step_applies_the_configured_augmentation_reproducibly():
    from capsjax.training.config import DataConfig

    rng = np.random.default_rng(0)
    images = np.zeros((32, 28, 28, 1), np.uint8)
    images[:, 8:20, 10:18] = rng.integers(1, 256, (32, 12, 8, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 32).astype(np.int32)

    def first_losses(**augmentation):
        """The first step's loss, twice from the same initial state (one compiled step)."""
        config = tiny_config(data=DataConfig(max_shift=0, **augmentation))
        graphdef, _ = init_state(config)
        step = make_train_step(graphdef, config)
        return [float(step(init_state(config)[1], images, labels)[1]["loss"]) for _ in range(2)]

    plain, _ = first_losses()
    for option in [dict(rotate_degrees=30.0), dict(margin_shift=True), dict(squish_pixels=7), dict(erase_size=4)]:
        augmented, again = first_losses(**option)
        assert augmented != plain, option  # the images the model saw changed
        assert again == augmented, option  # and the same run sees the same ones again


def test_param_average_is_the_bias_corrected_moving_average_of_the_iterates():
    decay = 0.9
    tx = optax.chain(optax.sgd(0.1), track_param_average(decay))
    params = {"w": jnp.array([1.0, -2.0])}
    state = tx.init(params)
    assert param_average(state, decay) is None  # nothing averaged before the first update
    iterates = []
    for t in range(5):
        grads = {"w": params["w"] * (t + 1)}  # any sequence of updates
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        iterates.append(np.asarray(params["w"]))
    weights = np.array([(1 - decay) * decay ** (4 - t) for t in range(5)])
    expected = (weights[:, None] * np.stack(iterates)).sum(0) / weights.sum()
    np.testing.assert_allclose(param_average(state, decay)["w"], expected, rtol=1e-6)
    assert not np.allclose(expected, iterates[-1])  # the average is not the last iterate


def test_training_with_a_param_average_evaluates_the_average():
    plain = tiny_config()
    averaged = tiny_config(optim=OptimConfig(average_decay=0.5))
    graphdef, state = init_state(plain)
    _, averaged_state = init_state(averaged)
    # without averaging the optimizer state is Adam's alone (checkpoints keep their layout)
    assert jax.tree.structure(state.opt_state) == jax.tree.structure(
        make_optimizer(OptimConfig()).init(nnx.filter_state(state.params, nnx.Param))
    )
    step = make_train_step(graphdef, averaged)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 32)
    iterates = []
    for _ in range(3):
        averaged_state, _ = step(averaged_state, images, labels)
        iterates.append(jax.tree.map(np.array, nnx.filter_state(averaged_state.params, nnx.Param)))
    evaluated = nnx.filter_state(evaluation_params(averaged_state, averaged.optim), nnx.Param)
    assert jax.tree.structure(evaluated) == jax.tree.structure(iterates[-1])
    # decay 0.5: weights 0.125, 0.25, 0.5 for the three iterates, divided by their sum 0.875
    expected = jax.tree.map(lambda a, b, c: (0.125 * a + 0.25 * b + 0.5 * c) / 0.875, *iterates)
    chex.assert_trees_all_close(evaluated, expected, rtol=1e-5, atol=1e-7)
    leaf = lambda tree: np.asarray(jax.tree.leaves(tree)[0])
    assert not np.allclose(leaf(evaluated), leaf(iterates[-1]))  # the average, not the last step
    assert evaluation_params(averaged_state, plain.optim) is averaged_state.params


def test_average_decay_must_be_below_one():
    with pytest.raises(ValueError, match="average_decay"):
        validate(tiny_config(optim=OptimConfig(average_decay=1.0)))
