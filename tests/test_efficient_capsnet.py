"""Efficient-CapsNet (Mazzia et al. 2021): the paper's size and outputs; batch norm's two modes through
the train step, checkpoints and weights files; and the unchanged training-state layout of models
without batch norm (so that their existing checkpoints still resume).

Kept fast: shapes and layouts are traced only (``jax.eval_shape``), and every test that needs
numbers uses the one short training run of the ``run`` fixture.
"""

import pathlib
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from capsjax.nn import EfficientCapsNet, EfficientCapsNetConfig, count_params
from capsjax.nn.interface import with_mode
from capsjax.ops.preprocess import to_float
from capsjax.training.checkpoint import restore_params
from capsjax.training.config import DataConfig, load_config_file, validate
from capsjax.training.datasets import load_data_split
from capsjax.training.evaluation import model_outputs
from capsjax.training.loop import train_and_evaluate
from capsjax.training.state import create_model, init_state, make_optimizer, trainable
from capsjax.training.steps import make_classify_step, make_train_step
from capsjax.training.weights import export_weights, load_weights, read_weights
from helpers import assert_examples_independent, tiny_config, write_fake_mnist

ROOT = pathlib.Path(__file__).resolve().parents[1]

# 2 primary capsules of 8D on MNIST-sized images: small enough to compile in a second or two (three
# convs of one kernel shape: eager initialisation compiles once per shape).
TINY = EfficientCapsNetConfig(conv_channels=(16, 16, 16, 16), decoder_hidden=(32,))


def tiny_efficient_config(**overrides):
    return tiny_config(model="efficient_capsnet", efficient_capsnet=TINY, **overrides)


@jax.jit
def model_scores(model, images):
    """Class scores in evaluation mode and in training mode (whose updated running averages are dropped)."""
    return tuple(with_mode(model, training=t)(images, reconstruct=False).scores for t in (False, True))


def scores(graphdef, params, images):
    """:func:`model_scores` of the model ``(graphdef, params)``."""
    host = jax.tree.map(np.asarray, params)  # one compiled function, wherever the arrays come from
    return model_scores(nnx.merge(graphdef, host), images)


def abstract_init(config):
    """``(graphdef, TrainState of shapes)`` of :func:`init_state`, without computing a parameter."""
    graphdefs = []

    def init():
        graphdef, state = init_state(config)
        graphdefs.append(graphdef)
        return state

    state = jax.eval_shape(init)
    return graphdefs[0], state


def batch_stats(params) -> dict:
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.filter_state(params, nnx.BatchStat)))


def bright_images(n: int, seed: int) -> jax.Array:
    """Float images in [0.3, 1]: batch statistics far from the running averages of a barely trained model."""
    return jax.random.uniform(jax.random.key(seed), (n, 28, 28, 1), minval=0.3, maxval=1.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two epochs of one step each (all 32 training images, unshifted) through the training loop,
    with a checkpoint after every step; returns ``(workdir, data folder, losses, summary)``."""
    root = tmp_path_factory.mktemp("efficient_capsnet")
    data = write_fake_mnist(root / "mnist", train=32, test=32)
    config = tiny_efficient_config(
        epochs=2, batch_size=32, data=DataConfig(max_shift=0), checkpoint_every_steps=1, keep_checkpoints=None
    )
    losses = []
    summary = train_and_evaluate(
        config,
        root / "run",
        data_dir=data,
        progress=False,
        hooks=[lambda step, metrics: losses.append(float(metrics["loss"]))],
    )
    return root / "run", data, losses, summary


def test_parameter_count_is_the_papers():
    # The paper's MNIST network counted by hand (Mazzia et al. 2021; the official code's layers):
    #   conv 5x5, 1 -> 32 channels:     5*5*1*32 + 32   =     832
    #   conv 3x3, 32 -> 64:             3*3*32*64 + 64  =  18,496
    #   conv 3x3, 64 -> 64:             3*3*64*64 + 64  =  36,928
    #   conv 3x3 stride 2, 64 -> 128:   3*3*64*128 + 128 = 73,856
    #   batch norm scale and bias:      2 * (32 + 64 + 64 + 128) = 576
    #   depthwise conv 9x9, 128 ch:     9*9*128 + 128   =  10,496   (-> 16 capsules of 8D)
    #   class capsules W [16, 10, 16, 8]:                  20,480
    #   log priors [16, 10]:                                  160
    #   total                                             161,824   (the paper's "161K")
    # decoder: 160*512 + 512 + 512*1024 + 1024 + 1024*784 + 784 = 1,411,344.
    model = nnx.eval_shape(lambda: EfficientCapsNet(rngs=nnx.Rngs(0)))
    assert count_params(model) - count_params(model.decoder) == 161_824
    assert count_params(model.decoder) == 1_411_344
    assert model.num_primary == 16
    # the running mean and variance of each batch norm: state, not parameters
    assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat))) == 2 * 288


def test_output_shapes():
    def outputs(labels=None, **options):  # the paper's network, traced only (no parameter computed)
        x = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
        return jax.eval_shape(lambda x: EfficientCapsNet(rngs=nnx.Rngs(0))(x, labels, **options), x)

    out = outputs(jnp.array([1, 2, 3]))
    chex.assert_shape([out.scores, out.capsules, out.couplings], [(3, 10), (3, 10, 16), (3, 16, 10)])
    chex.assert_shape(out.reconstructions, (3, 28, 28, 1))
    assert out.logits is None
    chex.assert_shape(outputs(jnp.array([[1, 2]] * 3)).reconstructions, (3, 2, 28, 28, 1))
    chex.assert_shape(outputs().reconstructions, (3, 28, 28, 1))
    assert outputs(reconstruct=False).reconstructions is None


@pytest.mark.parametrize("size, layer", [(26, "primary capsules' depthwise conv (9x9)"), (4, "conv 1 (5x5, stride 1)")])
def test_too_small_images_name_the_layer_and_the_smallest_size(size, layer):
    message = f"too small for the {layer}: the smallest image that works is 27x27"
    with pytest.raises(ValueError, match=re.escape(message)):
        EfficientCapsNet(EfficientCapsNetConfig(image_shape=(size, 28, 1)), rngs=nnx.Rngs(0))
    smallest = nnx.eval_shape(
        lambda: EfficientCapsNet(EfficientCapsNetConfig(image_shape=(27, 27, 1)), rngs=nnx.Rngs(0))
    )
    assert smallest.num_primary == 16


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(conv_channels=(32, 64)), "one entry per convolution"),
        (dict(conv_channels=(32, 64, 64, 100)), "expected a multiple of primary_dim = 8"),
    ],
)
def test_layers_that_do_not_fit_together_are_one_line_errors(changes, message):
    with pytest.raises(ValueError, match=message) as info:
        EfficientCapsNet(EfficientCapsNetConfig(**changes), rngs=nnx.Rngs(0))
    assert "\n" not in str(info.value)


def test_training_runs_and_keeps_the_batch_statistics_in_its_checkpoints(run):
    workdir, _, losses, summary = run
    assert summary["status"] == "completed" and summary["step"] == 2 == len(losses)
    assert np.all(np.isfinite(losses))
    assert summary["parameters"] == count_params(nnx.eval_shape(lambda: create_model(tiny_efficient_config())))
    config, _, params = restore_params(workdir)
    trained, initial = batch_stats(params), batch_stats(init_state(config)[1].params)
    for k in range(len(TINY.conv_channels)):  # every batch norm's running averages moved
        assert np.max(np.abs(trained["norms"][k]["mean"] - initial["norms"][k]["mean"])) > 0
        assert np.max(np.abs(trained["norms"][k]["var"] - initial["norms"][k]["var"])) > 0


def test_the_train_step_updates_the_running_averages_by_the_batch(run):
    workdir, data, _, _ = run
    config, graphdef, after_one_step = restore_params(workdir, step=1)
    initial = init_state(config)[1].params
    # Step 1's batch is the whole training split (32 images, unshifted): what the first batch norm
    # saw is the ReLU of the first conv, with the initial parameters, on these images.
    images = to_float(jnp.asarray(load_data_split(config, "train", data).images))
    features = np.asarray(jax.nn.relu(nnx.merge(graphdef, initial).convs[0](images)), np.float64)
    momentum = TINY.batch_norm_momentum
    stats = batch_stats(after_one_step)["norms"][0]
    np.testing.assert_allclose(stats["mean"], (1 - momentum) * features.mean(axis=(0, 1, 2)), rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(stats["var"], momentum + (1 - momentum) * features.var(axis=(0, 1, 2)), rtol=1e-4)
    # the parameters moved too (Adam), and the optimizer's state covers them alone
    moved = nnx.to_pure_dict(after_one_step)["convs"][0]["kernel"] - nnx.to_pure_dict(initial)["convs"][0]["kernel"]
    assert np.max(np.abs(moved)) > 0
    opt_state = abstract_init(config)[1].opt_state
    variables = jax.tree.leaves(opt_state, is_leaf=lambda v: isinstance(v, nnx.Variable))
    assert not any(isinstance(v, nnx.BatchStat) for v in variables), "the optimizer sees parameters only"
    assert sum(isinstance(v, nnx.Param) for v in variables) == 2 * len(jax.tree.leaves(trainable(initial)))


def test_evaluation_uses_the_running_averages_and_training_the_batch(run):
    _, graphdef, params = restore_params(run[0])
    x = bright_images(8, seed=1)
    others = x.at[1:].set(bright_images(7, seed=2) * 0.5)  # example 0 among other examples
    (eval_x, train_x), (eval_others, train_others) = scores(graphdef, params, x), scores(graphdef, params, others)
    assert np.all(np.asarray(eval_x) >= 0) and np.all(np.asarray(eval_x) < 1)
    # Evaluation: each example on its own; training: normalised by the batch it is in.
    np.testing.assert_allclose(eval_x[0], eval_others[0], rtol=1e-5)
    assert np.max(np.abs(train_x[0] - train_others[0])) > 1e-4
    # This batch's statistics are far from the running averages after two steps.
    assert np.max(np.abs(train_x - eval_x)) > 1e-4
    # Other running averages change what evaluation gives, and nothing in training.
    shifted = nnx.map_state(lambda _, v: v.replace(v[...] + 0.5) if isinstance(v, nnx.BatchStat) else v, params)
    eval_shifted, train_shifted = scores(graphdef, shifted, x)
    assert np.max(np.abs(eval_shifted - eval_x)) > 1e-4
    np.testing.assert_allclose(train_shifted, train_x, rtol=1e-5)


def test_evaluation_in_chunks_equals_the_whole_batch_and_training_is_never_chunked(monkeypatch):
    calls = []
    chunked = EfficientCapsNet.chunked_features
    monkeypatch.setattr(EfficientCapsNet, "chunked_features", lambda self, x, n: calls.append(n) or chunked(self, x, n))
    x = bright_images(7, seed=3)  # 7 = two chunks of 3 and a padded one
    models = {n: EfficientCapsNet(EfficientCapsNetConfig(eval_chunk_size=n), rngs=nnx.Rngs(0)) for n in (0, 3)}
    for training in (False, True):
        whole, in_chunks = (with_mode(models[n], training=training)(x, reconstruct=False).scores for n in (0, 3))
        np.testing.assert_allclose(in_chunks, whole, rtol=1e-5, atol=1e-7)
    assert calls == [3]  # evaluation only: training's batch norm takes the whole batch's statistics


def test_classify_step_and_model_outputs_run_in_evaluation_mode(run):
    _, graphdef, params = restore_params(run[0])
    images = (np.asarray(bright_images(8, seed=5)) * 255).astype(np.uint8)
    expected = scores(graphdef, params, to_float(jnp.asarray(images)))[0]
    # both given a model in training mode: they must switch it
    in_training_mode = with_mode(nnx.merge(graphdef, params), training=True)
    training_graphdef = nnx.split(in_training_mode)[0]
    np.testing.assert_allclose(make_classify_step(training_graphdef)(params, images), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model_outputs(in_training_mode, images).scores, expected, rtol=1e-5, atol=1e-7)


def test_a_weights_file_holds_the_batch_statistics_and_evaluates_identically(run, tmp_path):
    workdir = run[0]
    _, graphdef, params = restore_params(workdir)
    x = bright_images(8, seed=4)
    expected = scores(graphdef, params, x)[0]

    export_weights(workdir, tmp_path / "w32.msgpack", dtype="float32")
    weights = read_weights(tmp_path / "w32.msgpack")
    chex.assert_trees_all_equal(nnx.to_pure_dict(weights.params), nnx.to_pure_dict(params))
    model = load_weights(tmp_path / "w32.msgpack")
    assert all(norm.use_running_average for norm in model.norms)  # evaluation mode
    np.testing.assert_array_equal(scores(*nnx.split(model), x)[0], expected)

    half = export_weights(workdir, tmp_path / "w16.msgpack")
    assert half["parameters"] == count_params(model)  # batch statistics stored, not counted
    stored = read_weights(tmp_path / "w16.msgpack").params
    chex.assert_trees_all_equal(batch_stats(stored), batch_stats(params))  # kept in float32


@pytest.mark.parametrize("model", ["capsnet", "efficient_capsnet"])
def test_the_train_step_returns_the_state_it_was_given(model):
    config = tiny_config() if model == "capsnet" else tiny_efficient_config()
    graphdef, state = abstract_init(config)
    images = jax.ShapeDtypeStruct((4, 28, 28, 1), jnp.uint8)
    labels = jax.ShapeDtypeStruct((4,), jnp.int32)
    new_state, _ = jax.eval_shape(make_train_step(graphdef, config), state, images, labels)  # traces, no compile
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)


def test_capsnet_training_state_keeps_its_checkpoint_layout():
    """Models without batch norm: TrainState is exactly what it was before batch statistics joined
    it (parameters from ``nnx.split(model, nnx.Param)``, Adam over them), so orbax writes the same
    tree and existing checkpoints resume."""
    config = tiny_config()

    def the_old_way():
        _, params = nnx.split(create_model(config), nnx.Param)
        return params, make_optimizer(config.optim).init(params)

    _, state = abstract_init(config)
    params, opt_state = jax.eval_shape(the_old_way)
    before = (state.step, params, opt_state, state.rng)
    assert jax.tree.structure(tuple(state)) == jax.tree.structure(before)
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(tuple(state))]
    assert paths == [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(before)]
    assert "[1]['classes']['W'].value" in paths and not any("mean" in p or "var" in p for p in paths)


def test_the_experiment_config_is_the_papers_recipe_at_a_cpu_batch():
    config = validate(load_config_file(ROOT / "experiments" / "configs" / "efficient_capsnet.py"))
    assert config.model == "efficient_capsnet" and config.efficient_capsnet == EfficientCapsNetConfig()
    assert (config.optim.learning_rate, config.optim.decay_rate, config.optim.staircase) == (5e-4, 0.97, True)
    assert config.optim.decay_steps == 60_000 // config.batch_size  # 0.97 per epoch
    assert config.loss.margin_reduction == "sum"
    np.testing.assert_allclose(config.loss.recon_weight * 28 * 28, 0.392)  # 0.392 x mean squared error


def test_finite_value_and_gradient_for_zero_images_and_jit_equals_no_jit():
    model = with_mode(EfficientCapsNet(TINY, rngs=nnx.Rngs(0)), training=False)
    labels = jnp.array([1, 2])

    def loss(model, images):
        out = model(images, labels)
        return jnp.sum(out.scores) + jnp.sum(out.reconstructions)

    value, grads = nnx.jit(nnx.value_and_grad(loss))(model, jnp.zeros((2, 28, 28, 1)))
    assert bool(jnp.isfinite(value))
    chex.assert_tree_all_finite(nnx.state(grads, nnx.Param))
    images = jax.random.uniform(jax.random.key(3), (2, 28, 28, 1))
    eager = model(images, reconstruct=False).scores
    jitted = nnx.jit(lambda model, images: model(images, reconstruct=False).scores)(model, images)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)


def test_an_example_does_not_depend_on_the_others_in_its_batch_in_evaluation_mode():
    """In evaluation mode batch norm uses its running averages: no example's outputs depend on the
    others in its batch (in training mode they do, by the batch statistics)."""
    model = with_mode(EfficientCapsNet(TINY, rngs=nnx.Rngs(1)), training=False)
    forward = nnx.jit(lambda model, images: model(images))
    images = np.random.default_rng(4).random((3, 28, 28, 1), np.float32)
    assert_examples_independent(lambda x: forward(model, x), images, ("scores", "capsules", "reconstructions"))
