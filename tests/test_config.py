import pathlib

import pytest

from capsjax.training.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_config_file,
    to_dict,
    validate,
)

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs"


def test_overrides_nested_fields():
    config = apply_overrides(
        TrainConfig(),
        [
            "--config.epochs=2",
            "--config.capsnet.routing.num_iters=1",
            "--config.capsnet.routing.leaky",
            "true",
            "--config.capsnet.decoder_hidden=(64, 128)",
            "--config.data.train_examples=none",
            "--config.optim.learning_rate=3e-4",
            "--config.teachers=('a.msgpack', 'b.msgpack')",
        ],
    )
    assert config.teachers == ("a.msgpack", "b.msgpack")
    assert from_dict(TrainConfig, to_dict(config)).teachers == config.teachers
    assert config.epochs == 2 and config.capsnet.routing.num_iters == 1 and config.capsnet.routing.leaky
    assert config.capsnet.decoder_hidden == (64, 128) and config.optim.learning_rate == 3e-4
    assert config.data.train_examples is None


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--config.epoch=2", "no field 'epoch'"),
        ("--config.epochs=two", "expected int"),
        ("--config.capsnet=3", "is a group"),
        ("--config.capsnet.routing.leaky=maybe", "true/false"),
        (
            "--config.capsnet.routing.em_cost=unstandardised",
            r"em_cost = 'unstandardised': expected one of \['paper', 'standardised'\]",
        ),
        ("--config.capsnet.kernel_init=he_normal", r"kernel_init = 'he_normal': expected one of \['glorot_uniform', "),
        ("--epochs=2", "unknown argument"),
    ],
)
def test_bad_overrides(arg, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(TrainConfig(), [arg])


def test_dict_round_trip():
    config = apply_overrides(TrainConfig(), ["--config.capsnet.routing.num_iters=2", "--config.model=cnn"])
    assert from_dict(TrainConfig, to_dict(config)) == config


@pytest.mark.parametrize("path", sorted(set(CONFIGS.glob("*.py")) - {CONFIGS / "recipes.py"}), ids=lambda p: p.stem)
def test_config_files_load_and_document_their_command(path):
    config = load_config_file(path)
    assert isinstance(config, TrainConfig)
    doc = path.read_text().split('"""')[1]
    assert "Command:" in doc and "Expected:" in doc


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config_file(tmp_path / "nope.py")


def test_every_field_has_a_rule():
    from capsjax.training.config import field_paths, field_rules

    assert sorted(field_paths(TrainConfig())) == sorted(field_rules(TrainConfig()))


@pytest.mark.parametrize(
    "arg, message",
    [
        ("--config.batch_size=-8", "config.batch_size = -8: expected a positive integer"),
        ("--config.batch_size=0", "config.batch_size = 0: expected a positive integer"),
        ("--config.epochs=0", "config.epochs = 0: expected a positive integer"),
        ("--config.keep_checkpoints=0", "config.keep_checkpoints = 0: expected a positive integer \\(at least 1"),
        ("--config.optim.learning_rate=0", "config.optim.learning_rate = 0.0: expected a finite number > 0"),
        ("--config.optim.learning_rate=inf", "config.optim.learning_rate = inf: expected a finite number > 0"),
        ("--config.loss.m_plus=1.5", "config.loss.m_plus = 1.5: expected a number in \\[0, 1\\]"),
        ("--config.cnn.dropout=1", "config.cnn.dropout = 1.0: expected a number in \\[0, 1\\)"),
        ("--config.model=resnet", "config.model = 'resnet': expected one of \\['capsnet', 'cnn', "),  # ... every model
        ("--config.data.name=cifar", "config.data.name = 'cifar': expected one of"),
        ("--config.data.rotate_degrees=200", "config.data.rotate_degrees = 200.0: expected a number of degrees in"),
        ("--config.data.erase_size=-1", "config.data.erase_size = -1: expected"),
        ("--config.data.elastic_alpha=-34", "config.data.elastic_alpha = -34.0: expected a number >= 0 \\(0 is off\\)"),
        ("--config.data.elastic_sigma=0", "config.data.elastic_sigma = 0.0: expected a number of pixels > 0"),
        (
            "--config.capsnet.routing.name=capsule_em",
            "config.capsnet.routing.name = 'capsule_em': expected one of "
            "\\['dynamic', 'em', 'inverted_dot_product', 'self_attention'\\]",
        ),
        ("--config.capsnet.decoder_hidden=(512, 0)", "config.capsnet.decoder_hidden = \\(512, 0\\): expected a tuple"),
        ("--config.teachers=('',)", "config.teachers = \\('',\\): expected a tuple of weights files"),
        ("--config.loss.distill_weight=-1", "config.loss.distill_weight = -1.0: expected "),
    ],
)
def test_bad_values_are_one_line_errors_naming_field_value_and_rule(arg, message):
    with pytest.raises(ConfigError, match=message) as info:
        apply_overrides(TrainConfig(), [arg])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("path", sorted(set(CONFIGS.glob("*.py")) - {CONFIGS / "recipes.py"}), ids=lambda p: p.stem)
def test_shipped_configs_are_valid(path):
    assert validate(load_config_file(path)) is not None


def test_cli_refuses_a_bad_config_before_writing_anything(tmp_path):
    import subprocess
    import sys

    workdir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "capsjax",
            "train",
            "--config",
            str(CONFIGS / "smoke.py"),
            "--workdir",
            str(workdir),
            "--config.batch_size=0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "capsjax train: error: config.batch_size = 0: expected a positive integer, at most 65536"
    )
    assert "Traceback" not in result.stderr and not workdir.exists()


def test_augmentation_the_images_cannot_take_is_refused_before_training(tmp_path):
    from capsjax.training.config import DataConfig, check_augmentation
    from capsjax.training.loop import train_and_evaluate
    from helpers import tiny_config, write_fake_mnist

    def refused(data, shape=(28, 28, 1), targets=False):
        with pytest.raises(ConfigError) as info:
            check_augmentation(TrainConfig(data=data), shape, has_targets=targets)
        return str(info.value)

    assert refused(DataConfig(squish_pixels=28)) == (
        "config.data.squish_pixels = 28: expected fewer than the image width 28"
    )
    assert refused(DataConfig(erase_size=14)) == "config.data.erase_size = 14: expected at most 13 for 28x28 images"
    assert refused(DataConfig(erase_size=4), shape=(9, 40, 1)) == (
        "config.data.erase_size = 4: expected at most 3 for 9x40 images"
    )
    assert refused(DataConfig(name="multimnist", rotate_degrees=30.0), targets=True) == (
        "config.data.rotate_degrees = 30.0: expected off for data with generated targets (multimnist)"
    )
    assert refused(DataConfig(name="multimnist", elastic_alpha=34.0), targets=True) == (
        "config.data.elastic_alpha = 34.0: expected off for data with generated targets (multimnist)"
    )
    assert not any(DataConfig(elastic_sigma=6.0).augmentation().values())  # a blur alone distorts nothing
    assert DataConfig(elastic_alpha=34.0, elastic_sigma=6.0).augmentation()["elastic_sigma"] == 6.0
    check_augmentation(TrainConfig(data=DataConfig(squish_pixels=27, erase_size=13)), (28, 28, 1), has_targets=False)
    check_augmentation(TrainConfig(), (28, 28, 1), has_targets=True)  # +-2 px shifts are not among them
    data = write_fake_mnist(tmp_path / "mnist", train=64, test=32)
    with pytest.raises(ConfigError, match="config.data.squish_pixels = 40"):
        train_and_evaluate(tiny_config(data=DataConfig(squish_pixels=40)), tmp_path / "run", data_dir=data)
    assert not (tmp_path / "run" / "config.json").exists()
