"""Config files and a run's config.json: every problem with either is one ConfigError line naming the file."""

import dataclasses
import json

import pytest

from capsjax.errors import ConfigError
from capsjax.training.config import (
    TrainConfig,
    apply_overrides,
    from_dict,
    load_config_file,
    read_config,
    recorded_class_names,
    recorded_data_dir,
    save_config,
    to_dict,
)

GOOD = "from capsjax.training.config import TrainConfig\n\n\ndef get_config():\n    return TrainConfig(epochs=2)\n"


def refused(call, *args) -> str:
    with pytest.raises(ConfigError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_runs_config_json_given_as_a_config_file_says_how_to_continue_the_run(tmp_path):
    """``--config runs/x/config.json`` was an AttributeError traceback."""
    (tmp_path / "good.py").write_text(GOOD)
    assert load_config_file(tmp_path / "good.py") == TrainConfig(epochs=2)
    path = tmp_path / "x" / "config.json"
    save_config(TrainConfig(), path)
    message = refused(load_config_file, path)
    assert message.startswith(f"{path}: a config file is a Python file with get_config()")
    assert f"--resume --workdir {tmp_path / 'x'}" in message


def test_a_config_file_with_a_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text(GOOD + "\ndef oops(:\n    pass\n")
    assert refused(load_config_file, path).startswith(f"{path}:7: syntax error: ")


@pytest.mark.parametrize(
    "source, words",
    [
        (
            GOOD.replace("return TrainConfig(epochs=2)", "raise RuntimeError('no GPU here\\nsecond line')"),
            "get_config() raised RuntimeError: no GPU here",
        ),
        (GOOD.replace("epochs=2", "epoch=2"), "get_config() raised TypeError: "),
        ("import no_such_module_anywhere\n" + GOOD, "loading it raised ModuleNotFoundError: "),
        ("CONFIG = 1\n", "no get_config() function"),
        ("def get_config():\n    return {'epochs': 2}\n", "get_config() must return a TrainConfig, got dict"),
    ],
)
def test_a_config_file_whose_code_fails_is_one_line_naming_it(tmp_path, source, words):
    path = tmp_path / "config.py"
    path.write_text(source)
    message = refused(load_config_file, path)
    assert message.startswith(f"{path}: ") and words in message


def test_a_missing_config_file_is_a_config_error_and_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found") as info:
        load_config_file(tmp_path / "nope.py")
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON ("),
        (lambda text: "[1, 2]", "expected a JSON object of config fields, got list"),
        (lambda text: text.replace('"num_iters"', '"num_iter"'), "unknown key 'capsnet.routing.num_iter'"),
        (lambda text: text.replace('"epochs"', '"epoch"'), "unknown key 'epoch'"),
        (lambda text: text.replace('"epochs": 1', '"epochs": "1"'), "config.epochs = '1': expected a positive integer"),
        (lambda text: json.dumps(json.loads(text) | {"optim": 3}), "optim: expected a group of fields"),
        (lambda text: json.dumps(json.loads(text) | {"teachers": "a.msgpack"}), "teachers: expected a list"),
    ],
)
def test_a_corrupt_config_json_names_its_path_and_the_key(tmp_path, edit, words):
    """A damaged config.json gave a message with no path (or a TypeError)."""
    path = tmp_path / "config.json"
    save_config(TrainConfig(), path)
    path.write_text(edit(path.read_text()))
    message = refused(read_config, path)
    assert message.startswith(f"{path}: ") and words in message, message


def test_from_dict_refuses_unknown_keys_at_any_level_unless_told_not_to():
    record = to_dict(TrainConfig()) | {"extra": 1}
    record["loss"] = record["loss"] | {"focal": True}
    with pytest.raises(ConfigError, match="unknown key 'extra'; TrainConfig has the keys"):
        from_dict(TrainConfig, record)
    del record["extra"]
    with pytest.raises(ConfigError, match="unknown key 'loss.focal'; LossConfig has the keys"):
        from_dict(TrainConfig, record)
    assert from_dict(TrainConfig, record | {"extra": 1}, strict=False) == TrainConfig()


def test_read_config_is_strict_but_accepts_the_recorded_data_folder_and_class_names(tmp_path):
    config = apply_overrides(TrainConfig(), ["--config.capsnet.routing.num_iters=2", "--config.teachers=('a',)"])
    path = tmp_path / "config.json"
    save_config(config, path, data_dir="/data/digits", class_names=["zero", "one"])
    assert read_config(path) == config
    assert recorded_data_dir(path) == "/data/digits" and recorded_class_names(path) == ["zero", "one"]
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # written whole, no temporary left
    path.write_text(path.read_text().replace('"class_names"', '"class_name"'))
    assert refused(read_config, path) == f"{path}: unknown key 'class_name'; TrainConfig has the keys " + str(
        [f.name for f in dataclasses.fields(TrainConfig)]
    )
