"""Each config checks its own fields beside them; validate adds the rules that tie fields together,
bounds hostile sizes, and config_warnings names allowed combinations that are probably mistakes."""

import dataclasses

import pytest
from flax import nnx

from capsjax.errors import ConfigError, UsageError
from capsjax.nn import (
    CapsNetConfig,
    CNNConfig,
    EfficientCapsNetConfig,
    MatrixCapsNetConfig,
    RoutingConfig,
    build_model,
)
from capsjax.training.config import (
    DataConfig,
    LossConfig,
    OptimConfig,
    TrainConfig,
    apply_overrides,
    config_warnings,
    validate,
)

CONFIG_CLASSES = [
    RoutingConfig,
    CapsNetConfig,
    CNNConfig,
    EfficientCapsNetConfig,
    MatrixCapsNetConfig,
    DataConfig,
    OptimConfig,
    LossConfig,
    TrainConfig,
]


def refused(*overrides: str) -> str:
    """The one-line ConfigError that ``overrides`` on the default config give."""
    with pytest.raises(ConfigError) as info:
        apply_overrides(TrainConfig(), list(overrides))
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_each_config_class_lists_a_rule_beside_every_field(cls):
    leaves = {f.name for f in dataclasses.fields(cls) if not dataclasses.is_dataclass(getattr(cls(), f.name))}
    assert set(cls.RULES) == leaves
    cls().check()  # the defaults are valid


def test_a_model_config_checks_itself_and_names_its_place_in_the_run():
    with pytest.raises(ConfigError, match=r"^config\.conv_channels = 0: expected a positive integer"):
        CapsNetConfig(conv_channels=0).check()
    with pytest.raises(ConfigError, match=r"^config\.capsnet\.routing\.name = 'capsule_em': expected one of"):
        CapsNetConfig(routing=RoutingConfig(name="capsule_em")).check("config.capsnet.")


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "capsnet.routing.num_iters=1000",
            "config.capsnet.routing.num_iters = 1000: expected a positive integer, at most 50 "
            "(each iteration is unrolled when the step is traced)",
        ),
        (
            "matrix_capsnet.num_iters=51",
            "config.matrix_capsnet.num_iters = 51: expected a positive integer, at most 50",
        ),
        ("batch_size=65537", "config.batch_size = 65537: expected a positive integer, at most 65536"),
        ("eval_batch_size=100000000", "config.eval_batch_size = 100000000: expected a positive integer, at most 65536"),
        ("capsnet.num_classes=100000", "config.capsnet.num_classes = 100000: expected an integer in [2, 10000]"),
        ("capsnet.decoder_hidden=(512, 1000000)", "config.capsnet.decoder_hidden = (512, 1000000): expected a tuple"),
        (
            "capsnet.conv_channels=1000000",
            "config.capsnet.conv_channels = 1000000: expected a positive integer, at most",
        ),
        ("capsnet.class_dim=100000", "config.capsnet.class_dim = 100000: expected a positive integer, at most 65536"),
        ("cnn.conv_channels=(256, 1000000)", "config.cnn.conv_channels = (256, 1000000): expected a tuple of positive"),
        ("cnn.hidden=(100000,)", "config.cnn.hidden = (100000,): expected a tuple of positive integers, each at most"),
        ("efficient_capsnet.conv_channels=(32, 100000)", "config.efficient_capsnet.conv_channels = (32, 100000):"),
        ("matrix_capsnet.caps1_types=100000", "config.matrix_capsnet.caps1_types = 100000: expected a positive"),
        ("capsnet.image_shape=(100000, 28, 1)", "config.capsnet.image_shape = (100000, 28, 1): expected (height, "),
        ("data.resize=100000", "config.data.resize = 100000: expected an integer >= 0, at most 4096"),
        ("prefetch=100000", "config.prefetch = 100000: expected an integer >= 0, at most 64"),
    ],
)
def test_hostile_sizes_are_refused_before_anything_is_built(override, message):
    """1000 routing iterations unroll at trace time and the first step never comes; an evaluation batch
    of 10^8 trained an epoch, then asked for 73 GiB."""
    assert refused(f"--config.{override}").startswith(message)


@pytest.mark.parametrize(
    "overrides, fields",
    [
        (["capsnet.image_shape=(16, 16, 1)"], ["capsnet.image_shape = (16, 16, 1)", "capsnet.conv_kernel = 9"]),
        (["capsnet.routing.em_cost=paper"], ["capsnet.routing.em_cost = 'paper'", "capsnet.routing.name = 'dynamic'"]),
        (["capsnet.routing.name=em", "capsnet.routing.leaky=true"], ["routing.leaky = True", "routing.name = 'em'"]),
        (
            ["capsnet.routing.name=self_attention", "capsnet.routing.stop_gradient=true"],
            ["routing.stop_gradient = True", "routing.name = 'self_attention'"],
        ),
        (["capsnet.routing.learn=true"], ["capsnet.routing.learn = True", "capsnet.routing.name = 'dynamic'"]),
        (["capsnet.scores=activation"], ["capsnet.scores = 'activation'", "capsnet.routing.name = 'dynamic'"]),
        (
            ["model=efficient_capsnet", "efficient_capsnet.conv_kernels=(5, 3, 3)"],
            ["efficient_capsnet.conv_kernels = (5, 3, 3)", "efficient_capsnet.conv_channels = (32, 64, 64, 128)"],
        ),
        (
            ["model=efficient_capsnet", "efficient_capsnet.conv_channels=(32, 64, 64, 100)"],
            ["efficient_capsnet.conv_channels = (32, 64, 64, 100)", "efficient_capsnet.primary_dim = 8"],
        ),
        (
            ["model=efficient_capsnet", "efficient_capsnet.image_shape=(26, 28, 1)"],
            ["efficient_capsnet.image_shape = (26, 28, 1): expected at least 27x27", "efficient_capsnet.conv_kernels"],
        ),
        (
            ["model=matrix_capsnet", "matrix_capsnet.image_shape=(16, 20, 1)"],
            ["matrix_capsnet.image_shape = (16, 20, 1): expected at least 17x17", "matrix_capsnet.conv_kernel = 5"],
        ),
        (["data.resize=32", "data.crop=40"], ["config.data.crop = 40: expected at most config.data.resize = 32"]),
        (["data.train_examples=64"], ["config.batch_size = 128", "config.data.train_examples = 64"]),
    ],
)
def test_fields_that_do_not_fit_together_are_one_line_naming_both(overrides, fields):
    message = refused(*[f"--config.{o}" for o in overrides])
    assert all(field in message for field in fields), message


def test_only_the_model_that_trains_must_fit_its_images():
    """A run sizes every model's images to its data; the groups of the models it does not build need not fit."""
    tiny = (8, 8, 1)
    sized = {name: dataclasses.replace(getattr(TrainConfig(), name), image_shape=tiny) for name in ("capsnet", "cnn")}
    assert validate(TrainConfig(model="cnn", **sized)).model == "cnn"
    with pytest.raises(ConfigError, match=r"config\.capsnet\.image_shape = \(8, 8, 1\): expected at least 17x17"):
        validate(TrainConfig(model="capsnet", **sized))


@pytest.mark.parametrize(
    "name, config",
    [
        ("capsnet", CapsNetConfig(conv_channels=8, primary_types=2, decoder_hidden=(8,))),
        ("efficient_capsnet", EfficientCapsNetConfig()),
        ("matrix_capsnet", MatrixCapsNetConfig.preset("small", caps2_kernel=2, caps1_stride=3)),
    ],
)
def test_the_smallest_image_the_config_allows_is_the_smallest_the_model_builds(name, config):
    def allowed(side: int) -> bool:
        try:
            dataclasses.replace(config, image_shape=(side, side + 3, 1)).check()
        except ConfigError:
            return False
        return True

    smallest = next(side for side in range(1, 100) if allowed(side))
    nnx.eval_shape(
        lambda: build_model(name, dataclasses.replace(config, image_shape=(smallest, 40, 1)), rngs=nnx.Rngs(0))
    )
    with pytest.raises(ValueError, match="too small"):
        build_model(name, dataclasses.replace(config, image_shape=(smallest - 1, 40, 1)), rngs=nnx.Rngs(0))


def test_em_routing_scored_by_length_is_a_warning():
    em = TrainConfig(capsnet=CapsNetConfig(routing=RoutingConfig(name="em")))
    (warning,) = config_warnings(validate(em))
    assert "config.capsnet.scores = 'length'" in warning and "config.capsnet.routing.name = 'em'" in warning
    assert "'activation'" in warning and "\n" not in warning
    scored = dataclasses.replace(em, capsnet=dataclasses.replace(em.capsnet, scores="activation"))
    assert config_warnings(validate(scored)) == []
    assert config_warnings(TrainConfig()) == []


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(capsnet=CapsNetConfig(routing=RoutingConfig(name="inverted_dot_product"))), "'linear'"),
        (dict(capsnet=CapsNetConfig(routing=RoutingConfig(remat=True, chunk_size=8))), "remat"),
        (dict(teachers=("a.msgpack",), loss=LossConfig(distill_weight=0.0)), "distill_weight = 0"),
        (dict(model="cnn", loss=LossConfig(class_loss="spread")), "cross-entropy"),
    ],
)
def test_other_suspicious_combinations_are_warnings(changes, words):
    (warning,) = config_warnings(validate(TrainConfig(**changes)))
    assert words in warning


def test_an_override_naming_no_field_is_a_config_error_listing_the_fields():
    message = refused("--config.capsnet.routing.iters=2")
    assert message.startswith("--config.capsnet.routing.iters: RoutingConfig has no field 'iters'; fields: [")
    assert "'num_iters'" in message and isinstance(ConfigError(message), ValueError)
    with pytest.raises(UsageError, match="unknown argument '--epochs=2'"):
        apply_overrides(TrainConfig(), ["--epochs=2"])
