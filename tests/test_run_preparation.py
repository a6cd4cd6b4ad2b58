"""Prepare, then run: a run that a mistake would spoil is refused before it writes anything.

Each test is a mistake a user makes: resuming a finished run, reusing another run's folder, two runs
in one folder, resuming with another model or other data, a one-class dataset, Ctrl-C at start-up.
"""

import dataclasses
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from capsjax.cli import main
from capsjax.errors import ConfigError, DataError, WorkdirError
from capsjax.training.config import DataConfig, OptimConfig
from capsjax.training.loop import train_and_evaluate
from capsjax.training.workdir import claim_workdir
from helpers import tiny_config, write_fake_mnist

SMOKE = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "smoke.py")


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    return write_fake_mnist(tmp_path_factory.mktemp("fake_mnist"), train=192, test=64)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fake_data):
    workdir = tmp_path_factory.mktemp("finished") / "run"
    train_and_evaluate(tiny_config(epochs=1), workdir, data_dir=fake_data, progress=False)
    return workdir


def snapshot(workdir):
    """Every file under ``workdir`` with its bytes."""
    return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()}


def test_resuming_a_finished_run_keeps_its_results(finished_run, fake_data):
    before = snapshot(finished_run)
    summary = train_and_evaluate(tiny_config(epochs=1), finished_run, data_dir=fake_data, resume=True, progress=False)
    assert summary["status"] == "completed" and summary["test_accuracy"] is not None
    assert json.loads(before["summary.json"]) == summary
    assert snapshot(finished_run) == before  # nothing rewritten, nothing appended


def test_resuming_a_finished_run_with_more_epochs_continues_it(tmp_path, fake_data):
    train_and_evaluate(tiny_config(epochs=1), tmp_path / "run", data_dir=fake_data, progress=False)
    longer = train_and_evaluate(
        tiny_config(epochs=2), tmp_path / "run", data_dir=fake_data, resume=True, progress=False
    )
    assert longer["step"] == 12 and longer["test_accuracy"] is not None


@pytest.mark.parametrize("name", ["config.json", "summary.json", "metrics.jsonl"])
def test_a_new_run_refuses_a_folder_holding_another_runs_file(tmp_path, fake_data, name):
    (tmp_path / name).write_text('{"someone": "else"}\n')
    with pytest.raises(WorkdirError, match=f"holds another run's files \\({name}\\).*--resume"):
        train_and_evaluate(tiny_config(epochs=1), tmp_path, data_dir=fake_data, progress=False)
    assert snapshot(tmp_path) == {name: b'{"someone": "else"}\n'}


def test_a_folder_in_use_by_another_run_is_refused(tmp_path, fake_data):
    with claim_workdir(tmp_path / "run", resume=False):  # another run holds it
        with pytest.raises(WorkdirError, match="another capsjax run is using it"):
            train_and_evaluate(tiny_config(epochs=1), tmp_path / "run", data_dir=fake_data, progress=False)
        with pytest.raises(WorkdirError, match="another capsjax run is using it"):
            train_and_evaluate(tiny_config(epochs=1), tmp_path / "run", data_dir=fake_data, resume=True)
    assert not (tmp_path / "run").exists() or snapshot(tmp_path / "run") == {}


def test_the_claim_is_released_when_a_run_ends(finished_run):
    with claim_workdir(finished_run, resume=True):
        pass  # the finished run no longer holds it


def test_two_processes_cannot_train_in_one_folder(tmp_path, fake_data):
    script = (
        "import sys, time; sys.path.insert(0, {tests!r})\n"
        "from capsjax.training.workdir import claim_workdir\n"
        "with claim_workdir({workdir!r}, resume=False):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    ).format(tests=os.path.dirname(__file__), workdir=str(tmp_path / "run"))
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["train", "--config", SMOKE, "--workdir", str(tmp_path / "run"), "--data-dir", str(fake_data)]
        assert main(args) == 2
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_resuming_with_another_model_is_refused_before_config_json_changes(finished_run, fake_data):
    before = snapshot(finished_run)
    other = tiny_config(epochs=2)
    other = dataclasses.replace(other, capsnet=dataclasses.replace(other.capsnet, primary_types=8))
    with pytest.raises(ConfigError, match=r"checkpoint step 6 .* has shape \(144, .*this config's model \(288, "):
        train_and_evaluate(other, finished_run, data_dir=fake_data, resume=True, progress=False)
    assert snapshot(finished_run) == before


def test_resuming_on_other_data_is_refused(finished_run, tmp_path):
    before = snapshot(finished_run)
    npz = tmp_path / "other.npz"
    np.savez(npz, images=np.zeros((64, 28, 28), np.uint8), labels=np.arange(64) % 10)
    other = tiny_config(epochs=2, data=DataConfig(path=str(npz)))
    with pytest.raises(ConfigError, match=r"--resume .*config\.data\.path"):
        train_and_evaluate(other, finished_run, resume=True, progress=False)
    elsewhere = write_fake_mnist(tmp_path / "elsewhere", train=192, test=64, seed=1)
    with pytest.raises(ConfigError, match="the run trained on data from"):
        train_and_evaluate(tiny_config(epochs=2), finished_run, data_dir=elsewhere, resume=True, progress=False)
    assert snapshot(finished_run) == before


def test_a_single_class_of_images_is_refused(tmp_path):
    from PIL import Image

    for k in range(6):
        (tmp_path / "data" / "cats").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((28, 28), 20 * k, np.uint8)).save(tmp_path / "data" / "cats" / f"{k}.png")
    config = tiny_config(epochs=1, batch_size=2, data=DataConfig(path=str(tmp_path / "data"), test_fraction=0.5))
    with pytest.raises(ConfigError, match="holds one class"):
        train_and_evaluate(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_huge_label_is_refused_before_a_model_is_built(tmp_path):
    npz = tmp_path / "data.npz"
    labels = np.arange(64) % 10
    labels[3] = 1_000_000
    images = np.zeros((64, 28, 28), np.uint8)
    np.savez(npz, x_train=images, y_train=labels, x_test=images[:8], y_test=labels[:8])
    with pytest.raises((DataError, ConfigError), match="1000000|1000001"):
        train_and_evaluate(tiny_config(data=DataConfig(path=str(npz))), tmp_path / "run", progress=False)


def test_divergence_before_any_checkpoint_says_none_was_kept(tmp_path, fake_data):
    from capsjax.errors import NonFiniteError

    config = tiny_config(optim=OptimConfig(learning_rate=1e30), checkpoint_every_steps=1000)
    with pytest.raises(NonFiniteError, match="no checkpoint was kept") as caught:
        train_and_evaluate(config, tmp_path, data_dir=fake_data, progress=False)
    assert "None" not in str(caught.value)


def test_ctrl_c_at_start_up_is_one_line_and_leaves_nothing(tmp_path, fake_data, monkeypatch, capsys):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("capsjax.training.datasets.load_data_split", interrupted)
    workdir = tmp_path / "run"
    assert main(["train", "--config", SMOKE, "--workdir", str(workdir), "--data-dir", str(fake_data)]) == 130
    assert capsys.readouterr().err.strip() == "capsjax train: interrupted"
    assert not workdir.exists()


def test_ctrl_c_during_eval_is_one_line(finished_run, monkeypatch, capsys):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("capsjax.training.evaluation.evaluate", interrupted)
    assert main(["eval", "--workdir", str(finished_run)]) == 130
    assert capsys.readouterr().err.strip() == "capsjax eval: interrupted"


def test_an_explicit_data_folder_that_does_not_exist_is_an_error(tmp_path):
    missing = tmp_path / "no" / "such" / "mnist"
    with pytest.raises(DataError, match=str(missing)):
        train_and_evaluate(tiny_config(epochs=1), tmp_path / "run", data_dir=missing, progress=False)
    assert not (tmp_path / "run").exists()


def test_an_override_of_a_model_the_run_does_not_train_is_refused(tmp_path, capsys):
    args = ["train", "--config", SMOKE, "--workdir", str(tmp_path / "run"), "--config.model=cnn"]
    assert main([*args, "--config.capsnet.primary_types=16"]) == 2
    error = capsys.readouterr().err.strip()
    assert "--config.capsnet.primary_types: this run trains cnn" in error and "\n" not in error


def test_usage_errors_exit_2_and_help_gives_the_exit_codes(tmp_path, capsys):
    assert main(["train", "--workdir", str(tmp_path / "run")]) == 2  # no --config
    assert capsys.readouterr().err.startswith("capsjax train: error: --config FILE is required")
    assert main(["eval"]) == 2
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "exit codes" in text and "130 interrupted" in text and "Python" in text


def test_the_command_prints_no_backend_probing_noise(tmp_path, finished_run):
    result = subprocess.run(
        [sys.executable, "-m", "capsjax", "eval", "--workdir", str(finished_run)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "libtpu" not in result.stderr and "Unable to initialize backend" not in result.stderr


def test_config_warnings_are_logged_when_a_run_is_prepared(tmp_path, fake_data, caplog, monkeypatch):
    monkeypatch.setattr("capsjax.training.run.config_warnings", lambda config: ["a warning for this config"])
    with caplog.at_level(logging.WARNING, logger="capsjax"):
        train_and_evaluate(tiny_config(epochs=1), tmp_path / "run", data_dir=fake_data, progress=False)
    assert "a warning for this config" in caplog.text
