import pathlib

import pytest

from capsjax.training.config import TrainConfig, apply_overrides, from_dict, load_config_file, to_dict

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
        ],
    )
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
        ("--epochs=2", "unknown argument"),
    ],
)
def test_bad_overrides(arg, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(TrainConfig(), [arg])


def test_dict_round_trip():
    config = apply_overrides(TrainConfig(), ["--config.capsnet.routing.num_iters=2", "--config.model=cnn"])
    assert from_dict(TrainConfig, to_dict(config)) == config


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.py")), ids=lambda p: p.stem)
def test_config_files_load_and_document_their_command(path):
    config = load_config_file(path)
    assert isinstance(config, TrainConfig)
    doc = path.read_text().split('"""')[1]
    assert "Command:" in doc and "Expected:" in doc


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config_file(tmp_path / "nope.py")
