import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from capsjax import ModelOutput, distillation_loss
from capsjax.ops.preprocess import to_float
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


def test_distillation_adds_its_weighted_term_to_the_loss():
    labels = jnp.array([0, 1])
    images = jnp.zeros((2, 2, 2, 1))
    output = ModelOutput(scores=jnp.array([[0.9, 0.1], [0.5, 0.5]]))
    teacher = jnp.array([[0.7, 0.1], [0.5, 0.9]])
    plain, _ = compute_losses(output, images, labels, LossConfig(distill_weight=3.0))
    total, parts = compute_losses(output, images, labels, LossConfig(distill_weight=3.0), teacher_scores=teacher)
    np.testing.assert_allclose(parts["distill_loss"], (0.04 + 0.16) / 2, rtol=1e-5)  # mean over the batch
    np.testing.assert_allclose(total, plain + 3.0 * 0.1, rtol=1e-5)
    np.testing.assert_allclose(parts["loss"], total)


def test_a_train_step_with_teachers_measures_and_closes_the_distance_to_their_mean_scores():
    from capsjax.training.config import DataConfig

    config = tiny_config(data=DataConfig(max_shift=0), loss=LossConfig(recon_weight=0.0, distill_weight=10.0))
    graphdef, _ = init_state(config)
    teachers = [init_state(dataclasses.replace(config, seed=seed)) for seed in (1, 2)]
    teachers = [(graph, teacher.params) for graph, teacher in teachers]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (32, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 32).astype(np.int32)
    floats = to_float(images)
    mean_scores = np.mean([nnx.merge(g, p)(floats, reconstruct=False).scores for g, p in teachers], axis=0)

    def distance(params) -> float:
        return float(
            np.mean(distillation_loss(nnx.merge(graphdef, params)(floats, reconstruct=False).scores, mean_scores))
        )

    def train(teachers) -> tuple[float, float, float | None]:
        """The distance before training and after 10 steps, and the first step's distill_loss (None without)."""
        state = init_state(config)[1]
        before = distance(state.params)
        step = make_train_step(graphdef, config, teachers)
        first = None
        for k in range(10):
            state, metrics = step(state, images, labels)
            if k == 0:
                first = metrics.get("distill_loss")
        return before, distance(state.params), None if first is None else float(first)

    before, taught, first = train(teachers)
    _, untaught, none = train(())
    np.testing.assert_allclose(first, before, rtol=1e-4)  # the step measures the teachers' mean
    assert none is None  # no teachers, no distillation term
    # The margin loss alone moves the scores away from the (untrained) teachers'; teaching holds them near.
    assert taught < 0.5 * untaught


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
    assert step.executable is not None and step.jitted._cache_size() == 0  # compiled once, ahead of the first step
    assert int(state.step) == 8
    chex.assert_tree_all_finite(state.params)
    assert losses[-1] < losses[0]


def test_train_step_runs_other_shapes_than_its_first_call_through_jit_with_the_same_values():
    config = tiny_config()
    graphdef, state = init_state(config)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (16, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 16).astype(np.int32)
    step = make_train_step(graphdef, config)
    copy = jax.tree.map(jnp.copy, state)  # the step donates its state
    step(copy, images[:8], labels[:8])  # compiled ahead for a batch of 8
    ahead, metrics = step(jax.tree.map(jnp.copy, state), images, labels)  # a batch of 16: through jax.jit
    assert step.jitted._cache_size() == 1
    reference, expected = jax.jit(make_train_step(graphdef, config).jitted.__wrapped__)(state, images, labels)
    chex.assert_trees_all_close(ahead.params, reference.params, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], expected["loss"], rtol=1e-5)


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
