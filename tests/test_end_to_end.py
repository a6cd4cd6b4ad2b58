"""Train the smoke config on real MNIST through the CLI, then eval and predict with the run."""

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from capsjax.cli import main
from capsjax.data.sources import load_dataset

SMOKE = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "configs" / "smoke.py"


@pytest.fixture(scope="module")
def trained_run(mnist_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    code = main(["train", "--config", str(SMOKE), "--workdir", str(workdir), "--data-dir", str(mnist_dir)])
    assert code == 0
    return workdir


def test_smoke_training_reaches_95_percent(trained_run):
    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["test_examples"] >= 1000
    assert summary["test_accuracy"] >= 0.95, summary
    assert summary["data_source"].endswith("mnist")


def test_eval_command(trained_run, mnist_dir, capsys):
    assert main(["eval", "--workdir", str(trained_run), "--data-dir", str(mnist_dir)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    summary = json.loads((trained_run / "summary.json").read_text())
    assert metrics["accuracy"] == pytest.approx(summary["test_accuracy"])


def test_predict_on_png(trained_run, mnist_dir, tmp_path, capsys):
    test = load_dataset("mnist", "test", data_dir=mnist_dir)
    paths = []
    for k in range(5):
        path = tmp_path / f"digit{k}_label{test.labels[k]}.png"
        Image.fromarray(test.images[k, ..., 0]).save(path)
        paths.append(str(path))
    assert main(["predict", "--workdir", str(trained_run), "--output-dir", str(tmp_path / "out"), *paths]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    predicted = [int(line.split("class ")[1].split()[0]) for line in lines]
    assert np.mean(np.array(predicted) == test.labels[:5]) >= 0.8
    assert len(list((tmp_path / "out").glob("*_reconstruction.png"))) == 5


@pytest.mark.parametrize("kind", ["wrong_size", "not_an_image"])
def test_predict_rejects_bad_input(trained_run, tmp_path, capsys, kind):
    path = tmp_path / "bad.png"
    if kind == "wrong_size":
        Image.fromarray(np.zeros((32, 30), np.uint8)).save(path)
    else:
        path.write_text("hello")
    assert main(["predict", "--workdir", str(trained_run), str(path)]) == 2
    err = capsys.readouterr().err
    assert ("expected a 28x28 image" in err) if kind == "wrong_size" else ("not a readable image" in err)


def test_predict_into_an_unwritable_folder_is_one_line(trained_run, mnist_dir, tmp_path, capsys):
    test = load_dataset("mnist", "test", data_dir=mnist_dir)
    image = tmp_path / "digit.png"
    Image.fromarray(test.images[0, ..., 0]).save(image)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("")
    assert main(["predict", "--workdir", str(trained_run), "--output-dir", str(a_file / "out"), str(image)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("capsjax predict: error: ") and "Not a directory" in error and "\n" not in error
