"""``capsjax predict`` (``classify_files``): one reconstruction file per image, where ``--help`` says,
never a partial one, and weights that are refused before any work."""

import errno
import re

import numpy as np
import pytest
from PIL import Image

import capsjax.analysis.classify as classify
from capsjax.analysis.classify import classify_files, default_output_dir, reconstruction_names
from capsjax.cli import main
from capsjax.errors import StorageError
from capsjax.training.state import create_model, split_model
from capsjax.training.weights import write_weights
from helpers import tiny_config


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A float32 weights file of a small untrained CapsNet with a decoder, and its variables."""
    path = tmp_path_factory.mktemp("model") / "tiny.msgpack"
    config = tiny_config()
    graphdef, params = split_model(create_model(config))
    write_weights(path, config, params, dtype="float32")
    return path, config, graphdef, params


def _digit(path, value: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 10:18] = value
    Image.fromarray(image).save(path)
    return image


def test_images_of_one_name_in_two_folders_get_two_reconstructions(model_file, tmp_path, capsys):
    """``predict a/same.png b/same.png`` once wrote both reconstructions to one file (the first was lost)."""
    path, *_ = model_file
    first, second = tmp_path / "a" / "same.png", tmp_path / "b" / "same.png"
    inputs = [_digit(first, 255), _digit(second, 90)]
    results = classify_files(None, [str(first), str(second)], output_dir=tmp_path / "out", weights=path)
    written = [r["reconstruction"] for r in results]
    assert written == [
        str(tmp_path / "out" / "same_reconstruction.png"),
        str(tmp_path / "out" / "same-2_reconstruction.png"),
    ]
    for png, image in zip(written, inputs, strict=True):
        left = np.asarray(Image.open(png))[:, : 28 * 4][::4, ::4]  # the input, beside its reconstruction
        np.testing.assert_array_equal(left, image)
    assert (
        main(["predict", "--weights", str(path), "--output-dir", str(tmp_path / "cli"), str(first), str(second)]) == 0
    )
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == [
        "same-2_reconstruction.png",
        "same_reconstruction.png",
    ]
    assert capsys.readouterr().out.count("-> ") == 2


@pytest.mark.parametrize(
    "paths, names",
    [
        (["a/7.png", "b/7.png", "c/7.jpg"], ["7", "7-2", "7-3"]),
        (["x/same.png", "same-2.png", "y/same.png"], ["same", "same-2", "same-3"]),
        (["same.png", "y/same.png", "same-2.png"], ["same", "same-2", "same-2-2"]),
        (["Digit.png", "digit.png"], ["Digit", "digit-2"]),  # one file on macOS and Windows
        (["a.png", "a.png"], ["a", "a-2"]),
    ],
)
def test_reconstruction_names_are_distinct_and_deterministic(paths, names):
    assert reconstruction_names(paths) == [f"{name}_reconstruction.png" for name in names]
    assert reconstruction_names(paths) == reconstruction_names(list(paths))


def test_reconstructions_go_to_workdir_predictions_or_for_a_weights_file_to_dot_predictions(
    model_file, tmp_path, monkeypatch
):
    """``--help``: WORKDIR/predictions for a run, ./predictions for --weights FILE (no work directory)."""
    path, config, graphdef, params = model_file
    image = tmp_path / "digit.png"
    _digit(image, 200)
    monkeypatch.chdir(tmp_path)
    [result] = classify_files(None, [str(image)], weights=path)
    assert result["reconstruction"] == str(default_output_dir(None) / "digit_reconstruction.png")
    assert (tmp_path / "predictions" / "digit_reconstruction.png").is_file()
    monkeypatch.setattr(classify, "restore_params", lambda workdir: (config, graphdef, params))
    monkeypatch.setattr(classify, "recorded_class_names", lambda path: None)
    [result] = classify_files(tmp_path / "run", [str(image)])
    assert result["reconstruction"] == str(tmp_path / "run" / "predictions" / "digit_reconstruction.png")
    assert (tmp_path / "run" / "predictions" / "digit_reconstruction.png").is_file()


def test_predict_with_non_finite_weights_fails_naming_the_file_and_writes_nothing(model_file, tmp_path, capsys):
    """NaN weights once predicted class 0 for every image, with exit code 0."""
    from flax import serialization

    path, *_ = model_file
    record = serialization.msgpack_restore(path.read_bytes())
    record["params"]["conv"]["kernel"] = np.full_like(record["params"]["conv"]["kernel"], np.nan)
    bad = tmp_path / "nan.msgpack"
    bad.write_bytes(serialization.msgpack_serialize(record))
    image = tmp_path / "digit.png"
    _digit(image, 200)
    assert main(["predict", "--weights", str(bad), "--output-dir", str(tmp_path / "out"), str(image)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"capsjax predict: error: {bad}: conv/kernel holds ") and "NaN" in err
    assert not (tmp_path / "out").exists()


def test_predict_on_a_full_disk_names_the_file_and_leaves_no_partial_png(model_file, tmp_path, monkeypatch):
    """A full disk once left a 0-byte PNG behind and said "No space left on device" without a path."""
    path, *_ = model_file
    image = tmp_path / "digit.png"
    _digit(image, 200)
    out = tmp_path / "out"
    out.mkdir()
    (out / "digit_reconstruction.png").write_bytes(b"the previous file")

    def save_nothing(self, fp, *args, **kwargs):
        open(fp, "wb").close()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", save_nothing)
    target = re.escape(str(out / "digit_reconstruction.png"))
    with pytest.raises(StorageError, match=rf"^{target}: .*No space left on device"):
        classify_files(None, [str(image)], output_dir=out, weights=path)
    assert [p.name for p in out.iterdir()] == ["digit_reconstruction.png"]
    assert (out / "digit_reconstruction.png").read_bytes() == b"the previous file"
