"""The Efficient-CapsNet systems of the side-by-side benchmark: capsjax's script and its Keras peer.

The Keras transcription of the official Efficient-CapsNet (Mazzia et al. 2021) must compute what
capsjax's :class:`EfficientCapsNet` computes on the same weights (forward pass in both batch-norm
modes, and the loss of one training step), and both scripts must print the protocol's JSON line.
"""

import dataclasses
import importlib.util
import json
import pathlib
import runpy
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import capsjax.analysis
from capsjax.nn import EfficientCapsNet, count_params
from capsjax.nn.interface import with_mode
from capsjax.training.state import TrainState, init_state, split_model
from capsjax.training.steps import make_train_step

SYSTEMS_DIR = pathlib.Path(capsjax.analysis.__file__).parent / "systems"
RECIPES = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs" / "recipes.py"
BATCH = 6
RTOL, ATOL = 1e-4, 1e-6


def load_script(name: str):
    """Import ``systems/<name>.py`` as a module (its ``from protocol import ...`` needs systems/ on the path)."""
    path = SYSTEMS_DIR / f"{name}.py"
    assert path.is_file(), f"{path} is missing"
    sys.path.insert(0, str(SYSTEMS_DIR))
    try:
        spec = importlib.util.spec_from_file_location(f"_systems_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SYSTEMS_DIR))
    return module


@pytest.fixture(scope="module")
def peer():
    pytest.importorskip("tensorflow")
    return load_script("keras_efficient_capsnet")


def randomise(model: EfficientCapsNet, seed: int = 1) -> EfficientCapsNet:
    """Give the zero- or one-initialised variables (biases, batch norm, log priors) random values, so
    that a transposed or misplaced copy of any of them shows."""
    rng = np.random.default_rng(seed)

    def fill(variable, scale=0.1, offset=0.0):
        variable[...] = jnp.asarray(offset + scale * rng.standard_normal(variable.shape), jnp.float32)

    for conv, norm in zip(model.convs, model.norms, strict=True):
        fill(conv.bias)
        fill(norm.scale, offset=1.0)
        fill(norm.bias)
        fill(norm.mean)
        norm.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, norm.var.shape), jnp.float32)
    fill(model.primary_conv.bias)
    fill(model.classes.log_priors)
    for layer in model.decoder.layers:
        fill(layer.bias, scale=0.01)
    return model


def copy_weights(model: EfficientCapsNet, capsnet, decoder) -> None:
    """capsjax's variables into the Keras models (kernels HWIO and [in, out] in both)."""
    as_np = lambda variable: np.asarray(variable[...])
    for i, (conv, norm) in enumerate(zip(model.convs, model.norms, strict=True)):
        capsnet.get_layer(f"conv{i}").set_weights([as_np(conv.kernel), as_np(conv.bias)])
        norm_weights = [as_np(norm.scale), as_np(norm.bias), as_np(norm.mean), as_np(norm.var)]
        capsnet.get_layer(f"norm{i}").set_weights(norm_weights)
    primary = capsnet.get_layer("primary_caps").dw_conv
    primary.set_weights([as_np(model.primary_conv.kernel), as_np(model.primary_conv.bias)])
    # W [in, out, out_dim, in_dim] -> [out, in, in_dim, out_dim]; log priors [in, out] -> b [out, in, 1]
    W = as_np(model.classes.W).transpose(1, 0, 3, 2)
    capsnet.get_layer("fc_caps").set_weights([W, as_np(model.classes.log_priors).T[..., None]])
    dense = [layer for layer in decoder.layers if layer.weights]
    for keras_layer, layer in zip(dense, model.decoder.layers, strict=True):
        keras_layer.set_weights([as_np(layer.kernel), as_np(layer.bias)])


def batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (BATCH, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, BATCH).astype(np.int32)
    return images, labels


def test_keras_peer_has_capsjax_parameter_count(peer):
    """Both count 1,573,168 trainable parameters (161,824 without the decoder, the paper's 161K)."""
    _, _, capsnet, decoder = peer.build_models()
    model = nnx.eval_shape(lambda: EfficientCapsNet(rngs=nnx.Rngs(0)))
    assert peer.trainable_parameters(capsnet) == count_params(model) - count_params(model.decoder) == 161_824
    assert peer.trainable_parameters(capsnet) + peer.trainable_parameters(decoder) == count_params(model)


@pytest.mark.parametrize("training", [False, True], ids=["running_averages", "batch_statistics"])
def test_keras_peer_computes_capsjax_values_on_the_same_weights(peer, training):
    """Class capsules, their lengths (scores) and the label-masked reconstructions agree to 1e-4."""
    model = randomise(EfficientCapsNet(rngs=nnx.Rngs(0)))
    _, _, capsnet, decoder = peer.build_models()
    copy_weights(model, capsnet, decoder)
    images, labels = batch()
    x = images.astype(np.float32) / 255
    ours = with_mode(model, training=training)(jnp.asarray(x), jnp.asarray(labels))
    capsules, lengths = capsnet(x, training=training)
    one_hot = np.eye(10, dtype=np.float32)[labels]
    reconstructions = decoder(peer.Mask()([capsules, one_hot]))
    np.testing.assert_allclose(np.asarray(capsules), ours.capsules, rtol=RTOL, atol=ATOL)
    # the official Length adds Keras' epsilon (1e-7) under the square root, capsjax 1e-9
    expected_lengths = np.sqrt(np.square(np.asarray(ours.scores)) - 1e-9 + peer.keras.backend.epsilon())
    np.testing.assert_allclose(np.asarray(lengths), expected_lengths, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(reconstructions), ours.reconstructions, rtol=RTOL, atol=ATOL)


def test_keras_peer_training_step_has_capsjax_loss_and_batch_statistics(peer):
    """One ``train_on_batch`` of the official compile reports capsjax's loss (margin + 0.392 x MSE) and
    moves the batch norm averages as capsjax's train step does."""
    ours = load_script("capsjax_efficient_capsnet")
    config = ours.train_config(BATCH)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, max_shift=0))
    graphdef, state = init_state(config)
    _, variables = split_model(randomise(nnx.merge(graphdef, state.params)))
    state = TrainState(state.step, variables, state.opt_state, state.rng)
    train_model, _, capsnet, decoder = peer.build_models()
    copy_weights(nnx.merge(graphdef, state.params), capsnet, decoder)
    images, labels = batch(1)
    state, metrics = make_train_step(graphdef, config)(state, images, labels)
    peer.compile_for_training(train_model)
    x, y = images.astype(np.float32) / 255, np.eye(10, dtype=np.float32)[labels]
    logs = train_model.train_on_batch([x, y], [y, x], return_dict=True)
    np.testing.assert_allclose(logs["loss"], float(metrics["loss"]), rtol=RTOL)
    trained = nnx.merge(graphdef, state.params)
    for i, norm in enumerate(trained.norms):
        moving_mean, moving_var = capsnet.get_layer(f"norm{i}").get_weights()[2:]
        np.testing.assert_allclose(moving_mean, norm.mean[...], rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(moving_var, norm.var[...], rtol=RTOL, atol=ATOL)


def test_capsjax_script_trains_the_efficient_capsnet_recipe():
    """The timed config is the ``efficient_capsnet_mnist`` recipe's model, data, optimizer and loss."""
    ours = load_script("capsjax_efficient_capsnet")
    recipe = runpy.run_path(str(RECIPES))["efficient_capsnet_mnist"]()
    timed = ours.train_config(recipe.batch_size)
    for field in ("model", "efficient_capsnet", "data", "optim", "loss", "batch_size"):
        assert getattr(timed, field) == getattr(recipe, field), field


@pytest.mark.parametrize("mode", ["train", "infer"])
@pytest.mark.parametrize("script", ["capsjax_efficient_capsnet", "keras_efficient_capsnet"])
def test_script_prints_one_protocol_line(script, mode):
    """``python <script> --mode M --batch 4 --steps 1 --warmup 1`` prints the protocol's JSON line."""
    if script.startswith("keras"):
        pytest.importorskip("tensorflow")
    command = [sys.executable, str(SYSTEMS_DIR / f"{script}.py"), "--mode", mode, "--batch", "4"]
    result = subprocess.run(command + ["--steps", "1", "--warmup", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["mode"] == mode and line["batch"] == 4
    assert line["examples_per_sec"] > 0
    assert line["parameters"] == 1_573_168
