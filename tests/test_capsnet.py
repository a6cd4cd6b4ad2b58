import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from capsjax import CapsNet, CapsNetConfig, RoutingConfig, count_params, margin_loss, reconstruction_loss


@pytest.fixture(scope="module")
def capsnet():
    return CapsNet(rngs=nnx.Rngs(0))


def test_paper_parameter_count(capsnet):
    assert count_params(capsnet) == 8_215_568
    assert count_params(capsnet) - count_params(capsnet.decoder) == 6_804_224
    assert capsnet.num_primary == 1152


def test_output_shapes(capsnet):
    out = capsnet(jax.random.uniform(jax.random.key(0), (3, 28, 28, 1)), jnp.array([1, 2, 3]))
    chex.assert_shape(out.scores, (3, 10))
    chex.assert_shape(out.capsules, (3, 10, 16))
    chex.assert_shape(out.reconstructions, (3, 28, 28, 1))
    chex.assert_shape(out.couplings, (3, 1152, 10))
    assert jnp.all(out.scores < 1)


def test_bad_image_shape(capsnet):
    with pytest.raises(ValueError, match=r"x: expected rank 4 \[batch, 28, 28, 1\], got shape \(2, 28, 28\)"):
        capsnet(jnp.zeros((2, 28, 28)))
    with pytest.raises(ValueError, match=r"got shape \(2, 32, 32, 1\)"):
        capsnet(jnp.zeros((2, 32, 32, 1)))


def total_loss(model, images, labels):
    out = model(images, labels)
    return jnp.mean(margin_loss(out.scores, labels) + reconstruction_loss(images, out.reconstructions))


@pytest.mark.parametrize("kind", ["zeros", "random"])
def test_finite_gradients_of_total_loss(capsnet, kind):
    images = jnp.zeros((2, 28, 28, 1)) if kind == "zeros" else jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
    labels = jnp.array([3, 7])
    loss, grads = nnx.value_and_grad(total_loss)(capsnet, images, labels)
    chex.assert_tree_all_finite((loss, nnx.state(grads)))
    # Every parameter group receives gradient (a zero image still reaches the decoder and W via biases).
    if kind == "random":
        for path, g in jax.tree_util.tree_leaves_with_path(nnx.state(grads)):
            assert jnp.any(g != 0), path


def test_lowerings_give_the_same_model():
    small = CapsNetConfig(conv_channels=8, primary_types=2, decoder_hidden=(16,))
    images = jax.random.uniform(jax.random.key(2), (2, 28, 28, 1))
    outs = [
        CapsNet(dataclasses.replace(small, conv_lowering=lowering), rngs=nnx.Rngs(0))(images)
        for lowering in ("native", "patches", "fourier")
    ]
    chex.assert_trees_all_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(outs[0], outs[2], rtol=1e-4, atol=1e-5)


def test_non_finite_pixels_are_refused_outside_jit(capsnet):
    images = np.full((2, 28, 28, 1), 0.5, np.float32)
    images[1, 3, 4, 0] = np.nan
    images[1, 5, 6, 0] = np.inf
    with pytest.raises(
        ValueError, match=r"x: 2 pixel value\(s\) are NaN or infinite \(the first at index \(1, 3, 4, 0\)\)"
    ):
        capsnet(images)
    # under jit values cannot be checked: the scores are NaN, as the docstring of check_images says
    scores = nnx.jit(lambda model, x: model(x, reconstruct=False).scores)(capsnet, jnp.asarray(images))
    assert bool(jnp.all(jnp.isfinite(scores[0]))) and bool(jnp.all(jnp.isnan(scores[1])))


def test_config_variants_change_the_network():
    config = CapsNetConfig(
        image_shape=(36, 36, 1),
        conv_channels=8,
        primary_types=2,
        decoder_hidden=(16,),
        routing=RoutingConfig(num_iters=1, bias=True, leaky=True),
    )
    model = CapsNet(config, rngs=nnx.Rngs(0))
    assert model.num_primary == 10 * 10 * 2
    out = model(jnp.zeros((1, 36, 36, 1)))
    chex.assert_shape(out.reconstructions, (1, 36, 36, 1))
    assert jnp.all(out.couplings.sum(-1) < 1)


def test_bfloat16_compute_keeps_float32_params():
    small = CapsNetConfig(conv_channels=8, primary_types=2, decoder_hidden=(16,))
    images = jax.random.uniform(jax.random.key(3), (2, 28, 28, 1))
    full = CapsNet(small, rngs=nnx.Rngs(0))
    half = CapsNet(dataclasses.replace(small, compute_dtype="bfloat16"), rngs=nnx.Rngs(0))
    for leaf in jax.tree_util.tree_leaves(nnx.state(half, nnx.Param)):
        assert leaf.dtype == jnp.float32
    np.testing.assert_allclose(half(images).scores, full(images).scores, atol=0.02)
    assert half(images).scores.dtype == jnp.float32


def test_baseline_cnn_output():  # its 35.4M parameter count is the BaselineCNN doctest
    from capsjax import BaselineCNN, CNNConfig

    cnn = BaselineCNN(CNNConfig(conv_channels=(4, 4, 2), hidden=(8, 8)), rngs=nnx.Rngs(0))
    out = cnn(jnp.zeros((3, 28, 28, 1)))
    chex.assert_shape(out.logits, (3, 10))
    np.testing.assert_allclose(out.scores.sum(-1), 1.0, rtol=1e-5)


def test_deprecated_lengths_field_is_the_scores(capsnet):
    out = capsnet(jnp.zeros((1, 28, 28, 1)))
    with pytest.warns(DeprecationWarning, match="scores"):
        np.testing.assert_array_equal(out.lengths, out.scores)


@pytest.mark.parametrize("size, layer", [(16, "primary capsules' conv"), (8, "first conv")])
def test_too_small_images_name_the_layer_and_the_smallest_size(size, layer):
    with pytest.raises(ValueError, match=f"too small for the {layer} .*the smallest image that works is 17x17"):
        CapsNet(CapsNetConfig(image_shape=(size, size, 3)), rngs=nnx.Rngs(0))
    assert CapsNet(CapsNetConfig(image_shape=(17, 17, 3), conv_channels=8, primary_types=2), rngs=nnx.Rngs(0))


def test_dynamic_routing_options_are_refused_for_other_algorithms():
    config = CapsNetConfig(conv_channels=8, primary_types=2, routing=RoutingConfig(name="em", leaky=True))
    with pytest.raises(ValueError, match="routing.leaky and routing.stop_gradient apply to dynamic routing, not 'em'"):
        CapsNet(config, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("routing, scores", [("em", "activation"), ("inverted_dot_product", "linear")])
def test_class_scores_from_the_routings_activations_or_a_linear_readout(routing, scores):
    from capsjax.ops.squashing import safe_norm

    config = CapsNetConfig(
        conv_channels=16,
        primary_types=4,
        class_dim=8,
        decoder_hidden=(32,),
        routing=RoutingConfig(name=routing),
        scores=scores,
    )
    model = CapsNet(config, rngs=nnx.Rngs(0))
    images = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
    out = model(images)
    routed = model.classes(model.primary_capsules(images))
    if scores == "activation":
        expected = routed.activations
    else:
        logits = jnp.einsum("bkd,kd->bk", routed.v, model.readout.weight[...]) + model.readout.bias[...][None]
        expected = jax.nn.sigmoid(logits)
    np.testing.assert_allclose(out.scores, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out.scores, safe_norm(routed.v, eps=1e-9))  # not the lengths
    assert bool(jnp.all((out.scores > 0) & (out.scores < 1)))
    # unlabelled reconstruction decodes the capsule of the best score
    best = jax.nn.one_hot(jnp.argmax(out.scores, -1), 10)
    np.testing.assert_allclose(out.reconstructions, model.decoder(out.capsules, best), rtol=1e-5, atol=1e-6)


def test_activation_scores_need_a_routing_that_gives_activations():
    config = CapsNetConfig(
        conv_channels=16, primary_types=4, class_dim=8, routing=RoutingConfig(name="dynamic"), scores="activation"
    )
    with pytest.raises(ValueError, match="config.scores = 'activation': routing 'dynamic' gives no activations"):
        CapsNet(config, rngs=nnx.Rngs(0))


def em_capsnet(em_cost: str = "standardised") -> CapsNet:
    """A small CapsNet scored by EM's output activations: 288 primary capsules (6 x 6 x 8) to 10 classes."""
    routing = RoutingConfig(name="em", em_cost=em_cost)
    config = CapsNetConfig(conv_channels=16, primary_types=8, class_dim=8, decoder_hidden=(32,), routing=routing)
    return CapsNet(dataclasses.replace(config, scores="activation"), rngs=nnx.Rngs(0))


def test_em_activation_scores_are_neither_saturated_nor_flat_at_initialisation():
    """288 primary capsules (6 x 6 x 8) to 10 classes: EM's costs are standardised over the classes,
    so the activations start spread over (0, 1), none at 0 or 1 (the paper's cost with a fixed final
    lambda of 0.01 put all of them at 1.0 at this size; scaled by the sizes, all near 0.5, and
    training stayed at chance), and a gradient reaches the transformation matrices."""
    model = em_capsnet()
    assert model.num_primary == 288
    images = jax.random.uniform(jax.random.key(2), (2, 28, 28, 1))

    def mean_score(model):
        return model(images, reconstruct=False).scores.mean()

    scores = model(images, reconstruct=False).scores
    assert 1e-3 < float(scores.min()) and float(scores.max()) < 1 - 1e-3
    assert float(jnp.min(scores.max(-1) - scores.min(-1))) > 0.3  # each image's classes apart
    grads = nnx.grad(mean_score)(model)
    assert float(jnp.abs(grads.classes.W[...]).max()) > 1e-2  # saturated (the old fixed schedule): ~1e-17 at 1152


def test_em_cost_paper_selects_the_papers_formula_by_name():
    """``RoutingConfig(em_cost="paper")`` reaches em_routing as ``normalize_cost=False``: the same
    weights then give the flat class activations (all within 0.01 of each other, near 0.5) that the
    standardised default spreads."""
    images = jax.random.uniform(jax.random.key(2), (2, 28, 28, 1))

    def spread(em_cost):
        scores = em_capsnet(em_cost)(images, reconstruct=False).scores
        return float(jnp.min(scores.max(-1) - scores.min(-1))), scores

    paper_spread, paper_scores = spread("paper")
    standardised_spread, _ = spread("standardised")
    assert paper_spread < 0.01 < 0.3 < standardised_spread
    np.testing.assert_allclose(paper_scores, 0.5, atol=0.05)


@pytest.mark.parametrize(
    "routing, message",
    [
        (RoutingConfig(name="em", em_cost="unstandardised"), "routing.em_cost must be one of"),
        (RoutingConfig(name="dynamic", em_cost="paper"), "routing.em_cost applies to EM routing, not 'dynamic'"),
    ],
)
def test_bad_em_cost_is_refused(routing, message):
    config = CapsNetConfig(conv_channels=8, primary_types=2, routing=routing)
    with pytest.raises(ValueError, match=message):
        CapsNet(config, rngs=nnx.Rngs(0))


def test_keras_kernel_init_spreads_the_convolutions_and_decoder_as_glorot_uniform(capsnet):
    """kernel_init="glorot_uniform": each conv and decoder kernel is uniform with Keras's limit
    sqrt(6 / (fan_in + fan_out)), fans counting a conv's window; W and the biases stay as by default.
    The default (LeCun-normal, std 1 / sqrt(fan_in)) is unchanged: configs saved before keep their model."""
    keras = CapsNet(CapsNetConfig(kernel_init="glorot_uniform"), rngs=nnx.Rngs(0))
    kernels = {
        "conv": (keras.conv.kernel, capsnet.conv.kernel, 81, 81 * 256),
        "primary": (keras.primary.conv.kernel, capsnet.primary.conv.kernel, 81 * 256, 81 * 256),
        "decoder 1": (keras.decoder.layers[0].kernel, capsnet.decoder.layers[0].kernel, 160, 512),
        "decoder 3": (keras.decoder.layers[2].kernel, capsnet.decoder.layers[2].kernel, 1024, 784),
    }
    for name, (glorot, lecun, fan_in, fan_out) in kernels.items():
        limit = np.sqrt(6 / (fan_in + fan_out))
        glorot, lecun = np.asarray(glorot[...]), np.asarray(lecun[...])
        assert 0.99 * limit < np.abs(glorot).max() <= limit * (1 + 1e-6), name  # float32 rounding
        np.testing.assert_allclose(glorot.std(), limit / np.sqrt(3), rtol=0.05, err_msg=name)
        np.testing.assert_allclose(lecun.std(), 1 / np.sqrt(fan_in), rtol=0.15, err_msg=name)
    np.testing.assert_array_equal(keras.classes.W[...], capsnet.classes.W[...])
    assert count_params(keras) == count_params(capsnet) and not np.any(keras.conv.bias[...])
    message = r"kernel_init: expected one of \['lecun_normal', 'glorot_uniform'\], got 'he'"
    with pytest.raises(ValueError, match=message):
        CapsNet(CapsNetConfig(kernel_init="he"), rngs=nnx.Rngs(0))
