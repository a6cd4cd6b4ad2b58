"""Weights files: export a run's checkpoint in bfloat16 with its config inside, load it as a model,
evaluate and predict from it."""

import errno
import hashlib
import json
import pathlib
import re
import subprocess
import sys
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx, serialization
from PIL import Image

import capsjax
from capsjax.cli import main
from capsjax.errors import StorageError, WeightsError
from capsjax.nn import MODELS, MatrixCapsNetConfig
from capsjax.training.checkpoint import restore_params
from capsjax.training.config import CapsNetConfig, ConfigError, DataConfig, TrainConfig
from capsjax.training.evaluation import evaluate_checkpoint, evaluate_weights
from capsjax.training.loop import train_and_evaluate
from capsjax.training.state import create_model, init_state, restart_state, split_model
from capsjax.training.weights import (
    FORMAT,
    MAX_PARAMETERS,
    WeightsNotFoundError,
    average_weights,
    export_weights,
    fitting_params,
    parameter_limit,
    read_weights,
    write_weights,
)
from helpers import tiny_config, write_fake_mnist


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    data = write_fake_mnist(root / "mnist", train=192, test=64)
    train_and_evaluate(tiny_config(epochs=1), root / "run", data_dir=data, progress=False)
    return root / "run", data


def test_bfloat16_export_halves_the_file_and_loads_as_float32(run, tmp_path):
    workdir, _ = run
    half = export_weights(workdir, tmp_path / "w16.msgpack")
    full = export_weights(workdir, tmp_path / "w32.msgpack", dtype="float32")
    assert half["dtype"] == "bfloat16" and half["parameters"] == full["parameters"]
    assert 0.45 < half["bytes"] / full["bytes"] < 0.55
    assert len(half["sha256"]) == 64
    config, _, params = restore_params(workdir)
    weights = read_weights(tmp_path / "w16.msgpack")
    assert weights.config == config
    for stored, original in zip(
        jax.tree.leaves(nnx.to_pure_dict(weights.params)), jax.tree.leaves(nnx.to_pure_dict(params)), strict=True
    ):
        assert stored.dtype == jnp.float32
        np.testing.assert_array_equal(stored, np.asarray(original).astype(jnp.bfloat16).astype(np.float32))
    model = capsjax.load_weights(tmp_path / "w32.msgpack")
    images = jnp.zeros((2, *config.capsnet.image_shape))
    expected = nnx.merge(*restore_params(workdir)[1:])(images, reconstruct=False).scores
    np.testing.assert_allclose(model(images, reconstruct=False).scores, expected, rtol=1e-6)


def test_eval_and_predict_from_a_weights_file(run, tmp_path, capsys):
    workdir, data = run
    path = tmp_path / "w.msgpack"
    export_weights(workdir, path)
    from_file = evaluate_weights(path, data_dir=data)
    from_checkpoint = evaluate_checkpoint(workdir)
    assert from_file["count"] == from_checkpoint["count"] == 64
    assert abs(from_file["accuracy"] - from_checkpoint["accuracy"]) <= 2 / 64  # bfloat16 may flip a close call
    assert main(["eval", "--weights", str(path), "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == from_file["accuracy"]
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    assert main(["predict", "--weights", str(path), "--output-dir", str(tmp_path / "out"), str(image)]) == 0
    assert "digit.png: class " in capsys.readouterr().out
    assert main(["eval", "--weights", str(path), "--workdir", str(workdir)]) == 2
    assert "give --workdir DIR or --weights FILE" in capsys.readouterr().err


def test_a_file_that_is_not_weights_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="bad.msgpack: not a capsjax weights file"):
        read_weights(bad)
    assert main(["eval", "--weights", str(bad)]) == 2


def test_train_from_a_weights_file_starts_at_its_parameters(run, tmp_path, capsys):
    """--init-weights without --config trains the file's own model from its parameters: at a negligible
    learning rate they barely move, while the run the file came from moved them from where the same
    seed's random initialisation put them."""
    workdir, data = run
    path = tmp_path / "w.msgpack"
    export_weights(workdir, path, dtype="float32")
    stored = jax.tree.leaves(nnx.to_pure_dict(read_weights(path).params))
    argv = ["train", "--init-weights", str(path), "--workdir", str(tmp_path / "tuned"), "--data-dir", str(data)]
    assert main([*argv, "--config.epochs=1", "--config.optim.learning_rate=1e-9"]) == 0
    config, _, tuned = restore_params(tmp_path / "tuned")
    assert config.init_weights == str(path.absolute()) and config.optim.learning_rate == 1e-9
    for after, before in zip(jax.tree.leaves(nnx.to_pure_dict(tuned)), stored, strict=True):
        np.testing.assert_allclose(after, before, atol=1e-5)
    fresh = jax.tree.leaves(nnx.to_pure_dict(split_model(create_model(config))[1]))  # the same seed
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(fresh, stored, strict=True)) > 1e-3  # 6 Adam steps
    assert read_weights(path).config.init_weights is None  # a weights file does not say where its run began
    capsys.readouterr()
    other = tmp_path / "other.msgpack"  # the run has a checkpoint: starting it from other weights is refused
    export_weights(workdir, other)
    argv[2] = str(other)
    assert main([*argv, "--resume"]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_restart_state_is_step_zero_with_a_fresh_optimizer(run, tmp_path):
    """From a trained-looking state (step 7, non-zero Adam moments) to a new run's first state."""
    workdir, _ = run
    path = tmp_path / "w.msgpack"
    export_weights(workdir, path)
    config = restore_params(workdir)[0]
    _, state = init_state(config)
    used = state._replace(step=jnp.array(7, jnp.int32), opt_state=jax.tree.map(jnp.ones_like, state.opt_state))
    params = fitting_params(path, state.params, model=config.model)
    restarted = restart_state(used, params, config.optim)
    assert int(restarted.step) == 0
    for loaded, stored in zip(
        jax.tree.leaves(nnx.to_pure_dict(restarted.params)),
        jax.tree.leaves(nnx.to_pure_dict(read_weights(path).params)),
        strict=True,
    ):
        np.testing.assert_array_equal(loaded, stored)
    moments = [x for x in jax.tree.leaves(restarted.opt_state) if x.ndim > 0]
    assert moments and all(float(jnp.max(jnp.abs(x))) == 0.0 for x in moments)
    np.testing.assert_array_equal(restarted.rng, used.rng)


def test_weights_that_do_not_fit_the_run_are_one_line_before_anything_is_written(run, tmp_path):
    workdir, data = run
    path = tmp_path / "w.msgpack"
    export_weights(workdir, path)
    other = tiny_config(
        epochs=1,
        capsnet=CapsNetConfig(conv_channels=16, primary_types=4, class_dim=12, decoder_hidden=(32,)),
        init_weights=str(path),
    )
    misfit = r"does not fit this run's capsnet: \S+ has shape \(.*, 8, 8\), this run's model \(.*, 12, 8\)$"
    with pytest.raises(ValueError, match=misfit) as err:
        train_and_evaluate(other, tmp_path / "misfit", data_dir=data, progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "misfit" / "config.json").exists()
    checkpoints = tmp_path / "misfit" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
    from capsjax.errors import WeightsError

    with pytest.raises(WeightsError, match="--init-weights .*missing.msgpack: no such file"):
        main(
            ["--debug", "train", "--init-weights", str(tmp_path / "missing.msgpack"), "--workdir", str(tmp_path / "x")]
        )
    with pytest.raises(ValueError, match="config.init_weights = .*missing.msgpack.*: no such file"):
        train_and_evaluate(
            tiny_config(init_weights=str(tmp_path / "missing.msgpack")), tmp_path / "y", data_dir=data, progress=False
        )


def test_a_run_taught_by_weights_files_logs_its_distillation_loss_and_refuses_missing_or_misfit_teachers(run, tmp_path):
    workdir, data = run
    teacher = tmp_path / "teacher.msgpack"
    export_weights(workdir, teacher)
    taught = tmp_path / "taught"
    config = tiny_config(epochs=1, teachers=(str(teacher), str(teacher)))
    assert train_and_evaluate(config, taught, data_dir=data, progress=False)["status"] == "completed"
    logged = [json.loads(line) for line in (taught / "metrics.jsonl").read_text().splitlines()]
    distances = [row["train/distill_loss"] for row in logged if "train/distill_loss" in row]
    assert distances and all(np.isfinite(d) and d > 0 for d in distances)
    missing = str(tmp_path / "missing.msgpack")
    with pytest.raises(ConfigError, match=r"^config.teachers: '.*missing.msgpack': no such file$"):
        train_and_evaluate(tiny_config(teachers=(missing,)), tmp_path / "x", data_dir=data, progress=False)
    on_canvas = tiny_config(data=DataConfig(canvas=40), teachers=(str(teacher),))
    misfit = r"^config.teachers: .*teacher.msgpack: its capsnet cannot take this run's images \(40, 40, 1\): .*28, 28"
    with pytest.raises(ConfigError, match=misfit) as err:
        train_and_evaluate(on_canvas, tmp_path / "y", data_dir=data, progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "y" / "config.json").exists()  # refused before anything is written


def test_average_of_weights_files_is_their_mean_and_refuses_other_models(run, tmp_path, capsys):
    """Runs from one start average to one model whose every variable is the members' mean (a file given
    twice counts twice); a file of another model is one line naming the first difference."""
    workdir, data = run
    first, second = tmp_path / "a.msgpack", tmp_path / "b.msgpack"
    export_weights(workdir, first, dtype="float32")
    argv = ["train", "--init-weights", str(first), "--workdir", str(tmp_path / "tuned"), "--data-dir", str(data)]
    assert main([*argv, "--config.epochs=1", "--config.optim.learning_rate=1e-2"]) == 0
    export_weights(tmp_path / "tuned", second, dtype="float32")
    capsys.readouterr()
    soup = tmp_path / "soup.msgpack"
    assert main(["average", str(first), str(second), str(second), "--output", str(soup), "--dtype", "float32"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["averaged_from"] == [_sha256(first), _sha256(second), _sha256(second)]
    assert report["sha256"] == _sha256(soup) and report["dtype"] == "float32"
    a, b = (jax.tree.leaves(nnx.to_pure_dict(read_weights(p).params)) for p in (first, second))
    assert max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True)) > 1e-3  # the members differ
    for mean, x, y in zip(jax.tree.leaves(nnx.to_pure_dict(read_weights(soup).params)), a, b, strict=True):
        np.testing.assert_allclose(mean, (x + 2 * y) / 3, rtol=1e-6, atol=1e-7)
    assert read_weights(soup).config == read_weights(first).config
    assert evaluate_weights(soup, data_dir=data)["count"] == 64  # a usable model
    half = tmp_path / "half.msgpack"  # the default: bfloat16, the mean rounded once
    average_weights([first, second], half)
    for stored, x, y in zip(jax.tree.leaves(nnx.to_pure_dict(read_weights(half).params)), a, b, strict=True):
        np.testing.assert_array_equal(stored, np.asarray((x + y) / 2).astype(jnp.bfloat16).astype(np.float32))
    assert 0.45 < half.stat().st_size / soup.stat().st_size < 0.55


def test_average_refuses_files_of_another_model_in_one_line(run, tmp_path, capsys):
    workdir, _ = run
    first = tmp_path / "a.msgpack"
    export_weights(workdir, first)
    record = serialization.msgpack_restore(first.read_bytes())
    config = json.loads(record["config"])
    config["capsnet"]["routing"]["num_iters"] += 1  # the same variables, another model
    other = tmp_path / "other.msgpack"
    other.write_bytes(serialization.msgpack_serialize({**record, "config": json.dumps(config)}))
    with pytest.raises(ValueError, match=r"other.msgpack does not fit \S+a.msgpack: config.capsnet.routing is ") as err:
        average_weights([first, other], tmp_path / "bad.msgpack")
    assert "\n" not in str(err.value) and not (tmp_path / "bad.msgpack").exists()
    record["params"]["decoder"] = {}  # a variable gone
    other.write_bytes(serialization.msgpack_serialize(record))
    with pytest.raises(ValueError, match="not a capsjax weights file|do not match the model its config describes"):
        average_weights([first, other], tmp_path / "bad.msgpack")
    with pytest.raises(ValueError, match="two or more weights files, got 1"):
        average_weights([first], tmp_path / "bad.msgpack")
    assert main(["average", str(first), str(tmp_path / "missing.msgpack"), "--output", str(tmp_path / "x")]) == 2
    assert "missing.msgpack: no such weights file" in capsys.readouterr().err


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Weights files as hostile input: each is checked whole before anything the size of its model is built.


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A float32 weights file of a small untrained CapsNet (no training needed to test reading)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.msgpack"
    config = tiny_config()
    write_weights(path, config, split_model(create_model(config))[1], dtype="float32")
    return path


def _variant(source, path, *, edit=None, **record_changes):
    """A copy of weights file ``source`` at ``path``: ``edit(dict)`` changes its config in place,
    ``record_changes`` replace (or, given ``...``, drop) fields of the record."""
    record = serialization.msgpack_restore(source.read_bytes())
    if edit is not None:
        edited = json.loads(record["config"])
        edit(edited)
        record["config"] = json.dumps(edited)
    for key, value in record_changes.items():
        if value is ...:
            del record[key]
        else:
            record[key] = value
    path.write_bytes(serialization.msgpack_serialize(record))
    return path


_HUGE_DECODER_READ = """
import json, resource, sys, time
from capsjax.training.weights import read_weights
from capsjax.errors import WeightsError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    read_weights(sys.argv[1])
    message = None
except WeightsError as err:
    message = str(err)
seconds = time.perf_counter() - start
grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"message": message, "seconds": seconds, "grown_mb": grown_mb}))
"""


def test_a_file_whose_config_asks_for_a_huge_model_is_refused_fast_without_allocating_it(tmp_path):
    """A 1 KB file whose config asks for a 10000x10000 decoder (100 million parameters, 400 MB in
    float32) and holds no parameters is refused by the shapes its config implies (``jax.eval_shape``),
    in a fresh process whose peak memory barely grows, naming the file and the first missing variable."""
    path = tmp_path / "huge.msgpack"
    record = {"format": FORMAT, "config": json.dumps({"capsnet": {"decoder_hidden": [10000, 10000]}}), "params": {}}
    path.write_bytes(serialization.msgpack_serialize(record))
    assert path.stat().st_size < 1024
    done = subprocess.run([sys.executable, "-c", _HUGE_DECODER_READ, str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    missing = (
        rf"^{re.escape(str(path))}: its parameters do not match the model its config describes: \S+ \(.*\) is missing"
    )
    assert report["message"] is not None and re.match(missing, report["message"]), report
    assert report["seconds"] < 10 and report["grown_mb"] < 150, report


def test_a_config_describing_more_parameters_than_the_limit_is_refused_in_one_line(tmp_path):
    """Three 60000-wide decoder layers: 7.2 billion parameters (29 GB in float32), from a 100-byte config."""
    path = tmp_path / "enormous.msgpack"
    config = {"capsnet": {"decoder_hidden": [60000, 60000, 60000]}}
    path.write_bytes(serialization.msgpack_serialize({"format": FORMAT, "config": json.dumps(config), "params": {}}))
    assert parameter_limit() <= MAX_PARAMETERS == 2**31
    too_many = r": its config describes a capsnet of 7,2\d\d,\d{3},\d{3} parameters, more than the [\d,]+ this machine"
    with pytest.raises(WeightsError, match=rf"^{re.escape(str(path))}{too_many}"):
        read_weights(path)


_DAMAGED = {
    "not msgpack": (lambda good, bad: bad.write_bytes(b"\xc1\x00garbage"), r"not a capsjax weights file \(.+\)$"),
    "cut short": (
        lambda good, bad: bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
        r"not a capsjax weights file \(.+\)$",
    ),
    "no format tag": (lambda good, bad: _variant(good, bad, format=...), "not a capsjax weights file"),
    "no config": (lambda good, bad: _variant(good, bad, config=...), "without its 'config'"),
    "config not JSON": (lambda good, bad: _variant(good, bad, config="{epochs: 2"), "its config is not JSON"),
    "unknown setting": (
        lambda good, bad: _variant(good, bad, edit=lambda c: c.update(epochz=3)),
        r"config\.epochz is not a setting of TrainConfig",
    ),
    "unknown nested setting": (
        lambda good, bad: _variant(good, bad, edit=lambda c: c["capsnet"]["routing"].update(num_iterz=3)),
        r"config\.capsnet\.routing\.num_iterz is not a setting of RoutingConfig",
    ),
    "negative size": (
        lambda good, bad: _variant(good, bad, edit=lambda c: c["capsnet"].update(class_dim=-8)),
        r"config\.capsnet\.class_dim = -8",
    ),
    "a group that is a number": (
        lambda good, bad: _variant(good, bad, edit=lambda c: c.update(capsnet=5)),
        r"config\.capsnet = 5: expected a group of settings",
    ),
    "a size that is text": (
        lambda good, bad: _variant(good, bad, edit=lambda c: c["capsnet"].update(decoder_hidden="wide")),
        r"config\.capsnet\.decoder_hidden = 'wide': expected a list",
    ),
    "an unknown model": (
        lambda good, bad: _variant(good, bad, edit=lambda c: c.update(model="resnet")),
        r"config\.model = 'resnet'",
    ),
    "too few class names": (
        lambda good, bad: _variant(good, bad, class_names=json.dumps(["zero", "one"])),
        "its class_names are not 10 names",
    ),
    "a variable too many": (
        lambda good, bad: _variant(good, bad, params={**_params_of(good), "extra": np.zeros(3, np.float32)}),
        "do not match the model its config describes: extra is in the file but not in the model$",
    ),
    "a variable of another shape": (
        lambda good, bad: _variant(good, bad, params=_with_leaf(good, "conv", "bias", np.zeros(7, np.float32))),
        r"do not match the model its config describes: conv/bias has shape \(7,\) in the file, \(16,\) in the model$",
    ),
    "a variable of integers": (
        lambda good, bad: _variant(good, bad, params=_with_leaf(good, "conv", "bias", np.zeros(16, np.int64))),
        r"conv/bias has dtype int64, expected one of \('bfloat16', 'float32'\)$",
    ),
}


def _params_of(path):
    return serialization.msgpack_restore(path.read_bytes())["params"]


def _with_leaf(path, layer, name, value):
    params = _params_of(path)
    params[layer][name] = value
    return params


@pytest.mark.parametrize("damage", list(_DAMAGED))
def test_a_damaged_or_foreign_weights_file_is_one_weights_error_naming_the_file(tiny_file, tmp_path, damage, capsys):
    """Not msgpack, cut short, no config (once a KeyError), an unknown setting at any level (once
    silently ignored), a negative size (once an MLIR error), values of another type, class names or
    variables that do not fit: one line that starts with the file and names what is wrong."""
    make, message = _DAMAGED[damage]
    bad = tmp_path / "bad.msgpack"
    make(tiny_file, bad)
    with pytest.raises(WeightsError, match=rf"^{re.escape(str(bad))}: (.*){message}") as err:
        read_weights(bad)
    assert "\n" not in str(err.value)
    assert main(["eval", "--weights", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"capsjax eval: error: {bad}: ")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_weights_holding_a_non_finite_value_are_refused_naming_the_file_and_the_variable(tiny_file, tmp_path, value):
    """NaN or infinite weights once loaded and predicted class 0 for every image."""
    params = _params_of(tiny_file)
    bias = np.array(params["conv"]["bias"])
    bias[3] = value
    params["conv"]["bias"] = bias
    bad = _variant(tiny_file, tmp_path / "nan.msgpack", params=params)
    pattern = rf"^{re.escape(str(bad))}: conv/bias holds 1 non-finite values \(NaN or inf\) of 16"
    with pytest.raises(WeightsError, match=pattern):
        read_weights(bad)
    with pytest.raises(WeightsError, match=pattern):
        capsjax.load_weights(bad)


def test_a_missing_weights_file_is_a_weights_error_and_a_file_not_found_error(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"missing.msgpack: no such weights file$") as err:
        read_weights(tmp_path / "missing.msgpack")
    assert isinstance(err.value, FileNotFoundError)


def _full_disk(monkeypatch):
    """Make every ``Path.write_bytes`` write half its bytes, then fail as a full disk does."""

    def write_half(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_half)


@pytest.fixture
def previous_file(tmp_path):
    """A file already at the path about to be written, alone in its folder."""
    out = tmp_path / "out"
    out.mkdir()
    previous = out / "w.msgpack"
    previous.write_bytes(b"the previous file")
    return previous


def _assert_kept(previous):
    """No partial or temporary file beside ``previous``, whose bytes are as they were."""
    assert [p.name for p in previous.parent.iterdir()] == [previous.name]
    assert previous.read_bytes() == b"the previous file"


def test_writing_and_averaging_on_a_full_disk_keep_the_previous_file_and_name_it(tiny_file, previous_file, monkeypatch):
    """A full disk once left a ``.part`` file and said "No space left on device" without a path."""
    tiny = read_weights(tiny_file)
    _full_disk(monkeypatch)
    full = rf"^{re.escape(str(previous_file))}: .*No space left on device"
    with pytest.raises(StorageError, match=full):
        write_weights(previous_file, tiny.config, tiny.params)
    _assert_kept(previous_file)
    with pytest.raises(StorageError, match=full):
        average_weights([tiny_file, tiny_file], previous_file)
    _assert_kept(previous_file)


def test_export_on_a_full_disk_keeps_the_previous_file_and_names_it(run, previous_file, monkeypatch, capsys):
    workdir, _ = run
    _full_disk(monkeypatch)
    with pytest.raises(StorageError, match=rf"^{re.escape(str(previous_file))}: .*No space left on device"):
        export_weights(workdir, previous_file)
    _assert_kept(previous_file)
    assert main(["export", "--workdir", str(workdir), "--output", str(previous_file)]) != 0
    assert f"capsjax export: error: {previous_file}: " in capsys.readouterr().err
    _assert_kept(previous_file)


def test_every_model_and_its_config_import_from_capsjax_and_load_weights_gives_each(tmp_path):
    """``capsjax.load_weights`` returns whichever model a file holds: each class, with its config,
    is public in ``capsjax`` (listed in ``__all__``)."""
    config_classes = typing.get_type_hints(TrainConfig)
    for name, model_class in MODELS.items():
        config_class = config_classes[name]
        for public in (model_class, config_class):
            assert getattr(capsjax, public.__name__) is public and public.__name__ in capsjax.__all__
    config = TrainConfig(model="matrix_capsnet", matrix_capsnet=MatrixCapsNetConfig.preset("small"))
    path = tmp_path / "matrix.msgpack"
    write_weights(path, config, split_model(create_model(config))[1])
    assert isinstance(capsjax.load_weights(path), capsjax.MatrixCapsNet)
