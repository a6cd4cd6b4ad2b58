"""Matrix capsules with EM routing: the vote helpers, the three layers, MatrixCapsNet and its training
with the spread loss (Hinton, Sabour, Frosst 2018).

Kept fast (compilation is most of the cost): inputs come from NumPy (``jax.random`` compiles for
each shape), every layer and model here has the parameter shapes of ``TINY`` (so their random
initialisation compiles once), calls run jitted (one eager-vs-jit check) with few distinct shapes.
"""

import dataclasses
import json
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from capsjax.nn import (
    MODELS,
    ClassCapsules,
    ConvCapsules,
    MatrixCapsNet,
    MatrixCapsNetConfig,
    ModelOutput,
    PrimaryMatrixCapsules,
    count_params,
)
from capsjax.ops.em_routing import em_routing
from capsjax.ops.losses import spread_loss
from capsjax.ops.matrix_votes import class_votes, matrix_votes, receptive_field_centres
from helpers import assert_examples_independent

# A MatrixCapsNet small enough to compile in a few seconds; 17x17 is the smallest image it takes.
# Ten classes, as the generated MNIST the training test uses.
TINY = MatrixCapsNetConfig(
    image_shape=(17, 17, 1),
    num_classes=10,
    conv_channels=4,
    primary_types=2,
    caps1_types=2,
    caps2_types=2,
    num_iters=2,
)

call = nnx.jit(lambda layer, *args, **kwargs: layer(*args, **kwargs))


def normal(seed, shape):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def capsules(seed, shape):
    """Random poses ``shape + (16,)`` and activations ``shape`` within (0, 1)."""
    rng = np.random.default_rng(seed)
    poses = rng.normal(size=shape + (16,)).astype(np.float32)
    return poses, rng.uniform(0.05, 1.0, size=shape).astype(np.float32)


def in_open_unit_interval(x) -> bool:
    return bool(jnp.all((x > 0) & (x < 1)))


# --- the pure vote helpers ---


def test_matrix_votes_are_pose_times_transformation():
    poses, W = normal(0, (3, 16)), normal(1, (3, 2, 4, 4))
    votes = jax.jit(matrix_votes)(poses, W)
    chex.assert_shape(votes, (3, 2, 16))
    np.testing.assert_allclose(votes[1, 0].reshape(4, 4), poses[1].reshape(4, 4) @ W[1, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.usefixtures("x64")
def test_vote_helpers_check_grads_orders_1_and_2():
    poses, W = (jnp.asarray(normal(5, (3, 16)), jnp.float64), jnp.asarray(normal(6, (3, 2, 4, 4)), jnp.float64))
    check_grads(matrix_votes, (poses, W), order=2, modes=("fwd", "rev"))
    grid, W_types = (
        jnp.asarray(normal(7, (2, 2, 3, 16)), jnp.float64),
        jnp.asarray(normal(8, (3, 4, 4, 4)), jnp.float64),
    )
    coordinates = jnp.asarray(np.random.default_rng(9).random((2, 2, 2)))
    check_grads(class_votes, (grid, W_types, coordinates), order=2, modes=("fwd", "rev"))


def test_coordinate_addition_changes_exactly_vote_elements_3_and_7():
    poses, W, coordinates = (
        normal(2, (2, 3, 2, 16)),
        normal(3, (2, 4, 4, 4)),
        np.random.default_rng(4).random((2, 3, 2)),
    )
    plain, added = jax.jit(jax.vmap(class_votes, in_axes=(None, None, 0)))(
        poses, W, np.stack([np.zeros((2, 3, 2)), coordinates])
    )
    chex.assert_shape(added, (2 * 3 * 2, 4, 16))
    # W is shared over positions: capsule (row, column, type) votes with W[type].
    expected = np.einsum("iab,iobc->ioac", poses.reshape(-1, 4, 4), np.tile(W, (6, 1, 1, 1))).reshape(12, 4, 16)
    np.testing.assert_allclose(plain, expected, rtol=1e-5, atol=1e-5)
    difference = np.asarray(added - plain)
    untouched = [i for i in range(16) if i not in (3, 7)]
    np.testing.assert_array_equal(difference[..., untouched], 0.0)
    # Capsules are ordered (row, column, type); each vote of a capsule gets its position's (row, column).
    per_capsule = np.repeat(coordinates.reshape(6, 2), 2, axis=0)[:, None, :]
    np.testing.assert_allclose(difference[..., 3], np.broadcast_to(per_capsule[..., 0], (12, 4)), rtol=1e-5)
    np.testing.assert_allclose(difference[..., 7], np.broadcast_to(per_capsule[..., 1], (12, 4)), rtol=1e-5)


def test_receptive_field_centres_of_the_paper_network():
    # conv 5x5/2, primary 1x1, ConvCaps 3x3/2 and 3x3/1: a receptive field of 17 pixels every 4 pixels, so
    # the 4x4 grid under the class capsules of a 32x32 image centres on pixels 8, 12, 16, 20.
    centres = receptive_field_centres((4, 4), (32, 32), MatrixCapsNetConfig().layer_geometry())
    chex.assert_shape(centres, (4, 4, 2))
    expected = (np.array([8, 12, 16, 20]) + 0.5) / 32
    np.testing.assert_allclose(centres[:, 0, 0], expected)
    np.testing.assert_allclose(centres[0, :, 1], expected)
    np.testing.assert_allclose(receptive_field_centres((2, 2), (2, 2))[1, 0], [0.75, 0.25])


# --- the layers (with TINY's parameter shapes: 4 channels, 2 capsule types, 10 classes) ---


def conv_capsules(stride, seed=0):
    return ConvCapsules(2, 2, kernel_size=3, stride=stride, num_iters=2, rngs=nnx.Rngs(seed))


def test_primary_matrix_capsules():
    layer = PrimaryMatrixCapsules(4, num_types=2, rngs=nnx.Rngs(0))
    out = call(layer, normal(0, (2, 5, 3, 4)))
    chex.assert_shape(out.poses, (2, 5, 3, 2, 16))
    chex.assert_shape(out.activations, (2, 5, 3, 2))
    assert in_open_unit_interval(out.activations)
    assert layer.conv.kernel.shape == (1, 1, 4, 2 * 17)


@pytest.mark.parametrize("stride, grid, out_grid", [(2, (7, 9), (3, 4)), (1, (4, 3), (2, 1))])
def test_conv_capsules_shapes(stride, grid, out_grid):
    layer = conv_capsules(stride)
    out = call(layer, *capsules(0, (2, *grid, 2)))
    assert layer.grid_size(*grid) == out_grid
    chex.assert_shape(out.poses, (2, *out_grid, 2, 16))
    chex.assert_shape(out.activations, (2, *out_grid, 2))
    chex.assert_shape(out.assignments, (2, *out_grid, 3 * 3 * 2, 2))
    assert in_open_unit_interval(out.activations)
    np.testing.assert_allclose(out.assignments.sum(-1), 1.0, rtol=1e-5)


def test_conv_capsules_share_their_weights_over_positions():
    layer = conv_capsules(2, seed=1)
    poses, activations = capsules(1, (2, 7, 9, 2))
    full = call(layer, poses, activations)
    # The input moved by one stride (its first 2 rows and columns dropped): the output moves by one position.
    shifted = call(layer, poses[:, 2:, 2:], activations[:, 2:, 2:])
    np.testing.assert_allclose(shifted.poses, full.poses[:, 1:, 1:], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(shifted.activations, full.activations[:, 1:, 1:], rtol=1e-4, atol=1e-6)


def test_conv_capsules_equal_em_routing_of_one_receptive_field_and_jit_equals_no_jit():
    layer = conv_capsules(2, seed=2)
    poses, activations = capsules(2, (2, 7, 9, 2))
    out = call(layer, poses, activations)
    chex.assert_trees_all_close(layer(poses, activations), out, rtol=1e-4, atol=1e-5)  # eager
    row, col = 1, 2  # the output position; its receptive field starts at (2, 4)
    W = np.asarray(layer.W[...])  # [3, 3, in_types, out_types, 4, 4]
    field = [(i, j, t) for i in range(3) for j in range(3) for t in range(2)]  # the layer's input order
    pose = lambda i, j, t: poses[0, 2 * row + i, 2 * col + j, t].reshape(4, 4)
    votes = np.stack([(pose(i, j, t) @ W[i, j, t]).reshape(2, 16) for i, j, t in field])
    a_in = np.stack([activations[0, 2 * row + i, 2 * col + j, t] for i, j, t in field])
    temperatures = layer.temperatures
    route = jax.jit(lambda v, a, bu, ba: em_routing(v, a, beta_u=bu, beta_a=ba, num_iters=2, temperatures=temperatures))
    expected = route(votes, a_in, layer.beta_u[...], layer.beta_a[...])
    np.testing.assert_allclose(out.poses[0, row, col], expected.poses, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.activations[0, row, col], expected.activations, rtol=1e-4, atol=1e-6)


def test_class_capsules():
    layer = ClassCapsules(2, 10, num_iters=2, rngs=nnx.Rngs(0))
    poses, activations = capsules(3, (2, 3, 3, 2))
    # coordinates=None means the centres of the grid's cells; other coordinates give other poses.
    default, moved = (
        call(layer, poses, activations, coordinates=c)
        for c in (receptive_field_centres((3, 3), (3, 3)), np.zeros((3, 3, 2), np.float32))
    )
    chex.assert_shape(default.poses, (2, 10, 16))
    chex.assert_shape(default.activations, (2, 10))
    chex.assert_shape(default.assignments, (2, 3 * 3 * 2, 10))
    assert in_open_unit_interval(default.activations)
    assert not np.allclose(moved.poses, default.poses)


@pytest.mark.parametrize(
    "layer, args, message",
    [
        ("primary", [(2, 5, 5, 6)], r"features: expected shape \[batch, h, w, 4\], got shape \(2, 5, 5, 6\)"),
        ("conv", [(1, 5, 5, 3, 16), (1, 5, 5, 3)], r"poses: expected shape \[batch, h, w, 2, 16\]"),
        ("conv", [(1, 5, 5, 2, 16), (1, 5, 4, 2)], r"activations: expected shape \[1, 5, 5, 2\]"),
        ("conv", [(1, 2, 5, 2, 16), (1, 2, 5, 2)], r"poses: spatial size \(2, 5\) is smaller than the kernel \(3, 3\)"),
        ("class", [(1, 3, 3, 2, 9), (1, 3, 3, 2)], r"poses: expected shape \[batch, h, w, 2, 16\]"),
        ("class", [(1, 3, 3, 2, 16), (1, 3, 3, 2), (3, 2, 2)], r"coordinates: expected shape \[3, 3, 2\]"),
    ],
)
def test_bad_shapes_are_one_line_errors(layer, args, message):
    layer = {
        "primary": lambda: PrimaryMatrixCapsules(4, num_types=2, rngs=nnx.Rngs(0)),
        "conv": lambda: conv_capsules(1),
        "class": lambda: ClassCapsules(2, 10, rngs=nnx.Rngs(0)),
    }[layer]()
    arrays = [np.zeros(shape, np.float32) for shape in args]
    kwargs = {"coordinates": arrays.pop()} if len(arrays) == 3 else {}
    with pytest.raises(ValueError, match=message) as error:
        layer(*arrays, **kwargs)
    assert "\n" not in str(error.value)


# --- the model ---


def test_model_output_and_finite_gradient_for_zero_images():
    model = MatrixCapsNet(TINY, rngs=nnx.Rngs(0))

    def loss(model, images, labels):
        out = model(images, labels, dropout_key=jax.random.key(0), reconstruct=True)
        return jnp.mean(spread_loss(out.scores, labels, margin=0.2)), out

    step = nnx.jit(nnx.value_and_grad(loss, has_aux=True))
    labels = np.array([0, 2])
    (value, _), grads = step(model, np.zeros((2, 17, 17, 1), np.float32), labels)
    chex.assert_tree_all_finite((value, nnx.state(grads)))
    images = np.random.default_rng(0).random((2, 17, 17, 1), np.float32)
    (value, out), grads = step(model, images, labels)  # the same compiled step
    assert isinstance(out, ModelOutput)
    chex.assert_shape(out.scores, (2, 10))
    chex.assert_shape(out.capsules, (2, 10, 16))
    chex.assert_shape(out.couplings, (2, 1 * 1 * 2, 10))  # ConvCaps2's grid is 1x1 at 17x17
    assert out.reconstructions is None and out.logits is None
    assert in_open_unit_interval(out.scores)
    np.testing.assert_allclose(out.couplings.sum(-1), 1.0, rtol=1e-5)
    # Every parameter group receives gradient.
    for path, g in jax.tree_util.tree_leaves_with_path(nnx.state(grads)):
        assert np.any(np.asarray(g) != 0), path
    with pytest.raises(ValueError, match=r"x: expected shape \[batch, 17, 17, 1\], got shape \(2, 18, 17, 1\)"):
        model(np.zeros((2, 18, 17, 1), np.float32))


def test_images_smaller_than_the_receptive_field_are_refused():
    with pytest.raises(ValueError, match=r"\(16, 20, 1\) is too small .* the smallest image that works is 17x17") as e:
        MatrixCapsNet(dataclasses.replace(TINY, image_shape=(16, 20, 1)), rngs=nnx.Rngs(0))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="21x21"):  # a 9x9 first conv: 17 + (9 - 5)
        MatrixCapsNet(dataclasses.replace(TINY, image_shape=(20, 20, 1), conv_kernel=9), rngs=nnx.Rngs(0))


def test_parameter_counts_of_the_presets():
    # Small preset (A=64, B=8, C=D=16), 32x32x1 images, 5 classes:
    #   conv 5x5x1x64 + 64 bias                     =  1,600 +  64 =  1,664
    #   primary 1x1: 64 x 8*(16+1) + 8*17 bias      =  8,704 + 136 =  8,840
    #   ConvCaps1: 3*3*8*16 matrices of 16 + 2*16   = 18,432 +  32 = 18,464
    #   ConvCaps2: 3*3*16*16 matrices of 16 + 2*16  = 36,864 +  32 = 36,896
    #   class capsules: 16*5 matrices of 16 + 2*5   =  1,280 +  10 =  1,290
    #   total                                                        67,154  (the paper: "68K")
    # Paper preset (A=B=C=D=32): 832 + 17,952 + 2 * 147,520 + 2,570 = 316,394 (the paper: "310K").
    # Built abstractly (shapes only): initialising the parameters would compile each random shape.
    abstract = lambda config: nnx.eval_shape(lambda: MatrixCapsNet(config, rngs=nnx.Rngs(0)))
    assert count_params(abstract(MatrixCapsNetConfig.preset("small"))) == 67_154
    assert count_params(abstract(MatrixCapsNetConfig())) == 316_394
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        MatrixCapsNetConfig.preset("huge")


# --- training ---


def test_spread_loss_objective_follows_the_margin_schedule():
    from capsjax.training.config import LossConfig
    from capsjax.training.objectives import classification_loss, compute_losses

    config = LossConfig(class_loss="spread", spread_margin_start=0.2, spread_margin_end=0.8, spread_margin_steps=100)
    output = ModelOutput(scores=jnp.array([[0.6, 0.5, 0.1], [0.2, 0.3, 0.4]]))
    labels = jnp.array([0, 2])
    for step, margin in [(0, 0.2), (50, 0.5), (500, 0.8), (None, 0.8)]:
        got = classification_loss(output, labels, config, step=step)
        np.testing.assert_allclose(got, spread_loss(output.scores, labels, margin=margin), rtol=1e-6)
    total, metrics = compute_losses(output, jnp.zeros((2, 4, 4, 1)), labels, config, step=50)
    np.testing.assert_allclose(total, jnp.mean(spread_loss(output.scores, labels, margin=0.5)), rtol=1e-6)
    assert float(metrics["recon_loss"]) == 0.0
    margin_loss = classification_loss(output, labels, LossConfig())  # the default: eq. 4, unchanged
    assert not np.allclose(margin_loss, classification_loss(output, labels, config))
    with pytest.raises(ValueError, match="one class per image"):
        classification_loss(output, jnp.array([[0, 1], [1, 2]]), config)


def test_small_matrix_capsnet_trains_by_config(tmp_path):
    """``--config.model=matrix_capsnet`` with the spread loss trains in the training loop: every step's
    loss is finite, and on one batch seen again and again the loss goes down."""
    from capsjax.training.config import DataConfig, LossConfig, OptimConfig, TrainConfig, apply_overrides
    from capsjax.training.loop import train_and_evaluate
    from helpers import write_fake_mnist

    data = write_fake_mnist(tmp_path / "mnist", train=32, test=32)
    config = TrainConfig(
        matrix_capsnet=dataclasses.replace(TINY, num_iters=1),
        data=DataConfig(max_shift=0),
        loss=LossConfig(recon_weight=0.0),
        optim=OptimConfig(learning_rate=0.01),
        batch_size=32,
        eval_batch_size=32,
        epochs=6,
        checkpoint_every_steps=100,
        log_every_steps=1,
    )
    config = apply_overrides(config, ["--config.model=matrix_capsnet", "--config.loss.class_loss=spread"])
    summary = train_and_evaluate(config, tmp_path / "run", data_dir=data, progress=False)
    assert summary["status"] == "completed" and summary["skipped_steps"] == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["matrix_capsnet"]["image_shape"] == [28, 28, 1] and saved["matrix_capsnet"]["num_classes"] == 10
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert losses[-1] < losses[0]


def test_experiment_config_is_the_small_network_with_the_spread_loss():
    from capsjax.training.config import load_config_file, validate

    path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs" / "matrix_capsnet.py"
    config = validate(load_config_file(path))
    assert MODELS[config.model] is MatrixCapsNet
    assert config.matrix_capsnet == MatrixCapsNetConfig.preset("small")
    assert config.loss.class_loss == "spread" and config.loss.recon_weight == 0


def test_an_example_does_not_depend_on_the_others_in_its_batch():
    """Every layer (convolutional and class capsules included) routes each example on its own."""
    model = MatrixCapsNet(TINY, rngs=nnx.Rngs(2))
    forward = nnx.jit(lambda model, images: model(images))
    images = np.random.default_rng(3).random((3, 17, 17, 1), np.float32)
    assert_examples_independent(lambda x: forward(model, x), images, ("scores", "capsules", "couplings"))
