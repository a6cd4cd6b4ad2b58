"""Weights files: export a run's checkpoint in bfloat16 with its config inside, load it as a model,
evaluate and predict from it."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

import capsjax
from capsjax.cli import main
from capsjax.training.checkpoint import restore_params
from capsjax.training.evaluation import evaluate_checkpoint, evaluate_weights
from capsjax.training.loop import train_and_evaluate
from capsjax.training.weights import export_weights, read_weights
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
    with pytest.raises(SystemExit, match="give --workdir DIR or --weights FILE"):
        main(["eval", "--weights", str(path), "--workdir", str(workdir)])


def test_a_file_that_is_not_weights_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="bad.msgpack: not a capsjax weights file"):
        read_weights(bad)
    assert main(["eval", "--weights", str(bad)]) == 2
