"""Runs in a work directory: resume equality, interruption, sharding, outputs."""

import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from capsjax.training.checkpoint import Checkpointer, restore_params
from capsjax.training.config import OptimConfig
from capsjax.training.loop import StopRequested, train_and_evaluate
from capsjax.training.state import init_state
from helpers import tiny_config, write_fake_mnist


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    return write_fake_mnist(tmp_path_factory.mktemp("fake_mnist"), train=192, test=64)


def final_params(workdir, config):
    _, like = init_state(config)
    checkpointer = Checkpointer(workdir)
    try:
        return checkpointer.restore(like).params
    finally:
        checkpointer.close()


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, fake_data):
    config = tiny_config()  # 6 steps per epoch, 2 epochs, checkpoints every 3 steps
    full = train_and_evaluate(config, tmp_path / "full", data_dir=fake_data, progress=False)
    assert full["status"] == "completed" and full["step"] == 12

    stop = StopRequested()

    def stop_at_step_8(step, _metrics):
        if step == 8:
            stop.set("test")

    partial = train_and_evaluate(
        config, tmp_path / "resumed", data_dir=fake_data, hooks=[stop_at_step_8], stop=stop, progress=False
    )
    assert partial["status"] == "interrupted" and partial["step"] == 8
    resumed = train_and_evaluate(config, tmp_path / "resumed", data_dir=fake_data, resume=True, progress=False)
    assert resumed["step"] == 12
    chex.assert_trees_all_equal(final_params(tmp_path / "full", config), final_params(tmp_path / "resumed", config))


def test_every_training_step_of_a_run_runs_the_step_compiled_ahead(tmp_path, fake_data, monkeypatch):
    from capsjax.training import loop
    from capsjax.training.steps import make_train_step

    made = []

    def spy(*args, **kwargs):
        made.append(make_train_step(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(loop, "make_train_step", spy)
    summary = train_and_evaluate(tiny_config(), tmp_path / "run", data_dir=fake_data, progress=False)
    assert summary["step"] == 12 and len(made) == 1
    assert made[0].executable is not None and made[0].jitted._cache_size() == 0  # jax.jit never compiled


def test_a_parameter_average_resumes_exactly_and_is_what_a_checkpoint_reads_back(tmp_path, fake_data):
    config = tiny_config(epochs=1, optim=OptimConfig(average_decay=0.9))  # 6 steps, checkpoints every 3
    train_and_evaluate(config, tmp_path / "full", data_dir=fake_data, progress=False)
    stop = StopRequested()
    hooks = [lambda step, _metrics: stop.set("test") if step == 4 else None]
    train_and_evaluate(config, tmp_path / "resumed", data_dir=fake_data, hooks=hooks, stop=stop, progress=False)
    train_and_evaluate(config, tmp_path / "resumed", data_dir=fake_data, resume=True, progress=False)
    _, _, average = restore_params(tmp_path / "full")
    _, _, resumed_average = restore_params(tmp_path / "resumed")
    chex.assert_trees_all_equal(average, resumed_average)
    last = final_params(tmp_path / "full", config)
    assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(average), jax.tree.leaves(last), strict=True))


def test_work_directory_contents(tmp_path, fake_data):
    config = tiny_config(epochs=1)
    summary = train_and_evaluate(config, tmp_path, data_dir=fake_data, progress=False)
    for name in ("config.json", "metrics.jsonl", "summary.json", "reconstructions_epoch1.png"):
        assert (tmp_path / name).is_file(), name
    assert any((tmp_path / "tensorboard").iterdir())
    assert Checkpointer(tmp_path).latest_step() == 6
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["parameters"] == summary["parameters"] > 0
    assert 0.0 <= saved["test_accuracy"] <= 1.0 and saved["test_examples"] == 64
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"train/loss", "train/learning_rate", "train/examples_per_sec"} <= set(records[0])
    assert any("test/accuracy" in r for r in records)


def test_batch_size_must_divide_over_devices_and_fit(tmp_path, fake_data):
    with pytest.raises(ValueError, match="larger than the training set"):
        train_and_evaluate(
            tiny_config(batch_size=1000, eval_batch_size=1000), tmp_path, data_dir=fake_data, progress=False
        )


SHARDED_SCRIPT = """
import sys, numpy as np, jax
from capsjax.training.loop import train_and_evaluate
from capsjax.training.checkpoint import Checkpointer, restore_params
from capsjax.training.state import init_state
sys.path.insert(0, {tests!r})
from helpers import tiny_config
config = tiny_config(epochs=1)
summary = train_and_evaluate(config, {workdir!r}, data_dir={data!r}, progress=False)
assert summary["devices"] == jax.device_count(), summary["devices"]
_, like = init_state(config)
params = Checkpointer({workdir!r}).restore(like).params
leaves = jax.tree_util.tree_leaves(params)
np.savez({out!r}, *[np.asarray(x) for x in leaves])
print("devices", jax.device_count())
"""


def run_with_devices(n, tmp_path, data):
    out = tmp_path / f"params_{n}.npz"
    script = SHARDED_SCRIPT.format(
        tests=os.path.dirname(__file__), workdir=str(tmp_path / f"run{n}"), data=str(data), out=str(out)
    )
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"devices {n}" in result.stdout
    with np.load(out) as f:
        return [f[k] for k in sorted(f.files, key=lambda s: int(s.split("_")[1]))]


def test_sharded_over_two_devices_equals_single_device(tmp_path, fake_data):
    single = run_with_devices(1, tmp_path, fake_data)
    sharded = run_with_devices(2, tmp_path, fake_data)
    for a, b in zip(single, sharded, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_fresh_run_refuses_a_workdir_with_checkpoints(tmp_path, fake_data):
    config = tiny_config(epochs=1)
    train_and_evaluate(config, tmp_path, data_dir=fake_data, progress=False)
    saved_config = (tmp_path / "config.json").read_text()
    with pytest.raises(ValueError, match="holds another run's files .*checkpoints.*--resume"):
        train_and_evaluate(tiny_config(epochs=2), tmp_path, data_dir=fake_data, progress=False)
    assert (tmp_path / "config.json").read_text() == saved_config  # the refused run changed nothing


def test_evaluations_within_an_epoch_are_logged_and_checkpointed(tmp_path, fake_data):
    from capsjax.analysis.matching import accuracy_history
    from capsjax.training.checkpoint import restore_params

    config = tiny_config(epochs=1, eval_every_steps=2, keep_checkpoints=None, checkpoint_every_steps=1000)
    train_and_evaluate(config, tmp_path, data_dir=fake_data, progress=False)  # 6 steps per epoch
    history = accuracy_history(tmp_path)
    assert sorted(history) == [2, 4, 6] and all(0.0 <= a <= 1.0 for a in history.values())
    assert Checkpointer(tmp_path).all_steps() == [2, 4, 6]
    _, _, early = restore_params(tmp_path, step=2)
    _, _, last = restore_params(tmp_path, step=6)
    assert not np.allclose(early["conv"]["kernel"][...], last["conv"]["kernel"][...])
    with pytest.raises(FileNotFoundError, match="step 5"):
        restore_params(tmp_path, step=5)


def test_non_finite_training_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, fake_data):
    from capsjax.training.loop import NonFiniteError

    config = tiny_config(optim=OptimConfig(learning_rate=1e30), checkpoint_every_steps=1)
    with pytest.raises(NonFiniteError, match=r"step \d+: the loss .* not finite; likely causes: a learning rate"):
        train_and_evaluate(config, tmp_path, data_dir=fake_data, progress=False)
    checkpointer = Checkpointer(tmp_path, keep=None)
    try:
        for step in checkpointer.all_steps():  # every checkpoint written holds finite parameters
            _, like = init_state(config)
            chex.assert_tree_all_finite(checkpointer.restore(like, step).params)
    finally:
        checkpointer.close()
    assert not (tmp_path / "summary.json").exists()


def test_non_finite_steps_can_be_skipped_and_counted(tmp_path, fake_data):
    config = tiny_config(optim=OptimConfig(learning_rate=1e30), on_nonfinite="skip", epochs=1)
    summary = train_and_evaluate(config, tmp_path, data_dir=fake_data, progress=False)
    assert summary["status"] == "completed" and 0 < summary["skipped_steps"] <= summary["step"]
    chex.assert_tree_all_finite(final_params(tmp_path, config))


def test_cli_reports_divergence_in_one_line_and_fails(tmp_path, fake_data):
    smoke = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "smoke.py")
    args = [
        sys.executable,
        "-m",
        "capsjax",
        "train",
        "--config",
        smoke,
        "--workdir",
        str(tmp_path / "run"),
        "--data-dir",
        str(fake_data),
        "--config.optim.learning_rate=1e30",
        "--config.data.train_examples=192",
        "--config.data.test_examples=64",
        "--config.epochs=1",
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("capsjax train: training diverged: step ") and "Traceback" not in result.stderr


def test_eval_and_resume_use_the_recorded_data_folder(tmp_path, fake_data, monkeypatch):
    from capsjax.cli import main
    from capsjax.training.config import recorded_data_dir

    train_and_evaluate(tiny_config(epochs=1), tmp_path, data_dir=fake_data, progress=False)
    assert recorded_data_dir(tmp_path / "config.json") == str(fake_data.absolute())
    monkeypatch.delenv("CAPSJAX_DATA_DIR", raising=False)
    monkeypatch.setattr("capsjax.data.sources.SYSTEM_DIR", tmp_path / "no_system_data")
    assert main(["eval", "--workdir", str(tmp_path)]) == 0  # no --data-dir: the README's command
    resumed = train_and_evaluate(tiny_config(epochs=2), tmp_path, resume=True, progress=False)
    assert resumed["step"] == 12 and resumed["data_source"] == str(fake_data)


def test_checkpoints_also_by_wall_time(tmp_path, fake_data):
    config = tiny_config(epochs=1, checkpoint_every_steps=1000, checkpoint_every_minutes=1e-9, keep_checkpoints=None)
    train_and_evaluate(config, tmp_path, data_dir=fake_data, progress=False)
    assert Checkpointer(tmp_path).all_steps() == [1, 2, 3, 4, 5, 6]


def test_metrics_hold_one_record_per_step_after_resumes(tmp_path, fake_data):
    from collections import Counter

    from capsjax.training.metrics import read_metrics

    config = tiny_config(checkpoint_every_steps=1000)
    stop = StopRequested()
    hook = lambda step, _metrics: stop.set("test") if step == 8 else None
    train_and_evaluate(config, tmp_path, data_dir=fake_data, hooks=[hook], stop=stop, progress=False)
    with open(tmp_path / "metrics.jsonl", "a") as f:  # logged after the checkpoint, before a crash
        f.write(json.dumps({"step": 10, "time": 0.0, "train/loss": 123.0}) + "\n")
    train_and_evaluate(config, tmp_path, data_dir=fake_data, resume=True, progress=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    train_steps = Counter(r["step"] for r in records if "train/loss" in r)
    assert train_steps and set(train_steps.values()) == {1}, train_steps
    assert 123.0 not in [r.get("train/loss") for r in records] and 12 in train_steps


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, fake_data):
    import signal
    import time

    from capsjax.training.config import save_config

    config = tiny_config(epochs=12, checkpoint_every_steps=5, checkpoint_every_minutes=None)  # 72 steps
    config_file = tmp_path / "config.py"
    save_config(config, tmp_path / "config.json")
    config_file.write_text(
        "import pathlib\n\nfrom capsjax.training.config import read_config\n\n\n"
        f"def get_config():\n    return read_config(pathlib.Path({str(tmp_path / 'config.json')!r}))\n"
    )
    run = tmp_path / "killed"
    command = [
        sys.executable,
        "-m",
        "capsjax",
        "train",
        "--config",
        str(config_file),
        "--workdir",
        str(run),
        "--data-dir",
        str(fake_data),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    # A finished checkpoint is a folder named by its step (orbax writes it under a temporary name first).
    while time.monotonic() < deadline and not any(p.name.isdigit() for p in (run / "checkpoints").glob("*")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    killed_at = Checkpointer(run).latest_step()
    assert killed_at is not None and killed_at < 72  # killed mid-run, after a checkpoint
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    train_and_evaluate(config, tmp_path / "uninterrupted", data_dir=fake_data, progress=False)
    chex.assert_trees_all_equal(final_params(run, config), final_params(tmp_path / "uninterrupted", config))


@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_unusable_work_directories_are_one_line_errors(tmp_path, fake_data, capsys, kind):
    from capsjax.cli import main
    from capsjax.training.loop import WorkdirError

    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    workdir = a_file if kind == "a file" else a_file / "run"
    smoke = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "smoke.py")
    args = ["train", "--config", smoke, "--workdir", str(workdir), "--data-dir", str(fake_data)]
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    expected = "is a file, not a folder" if kind == "a file" else "cannot write there (Not a directory)"
    assert error.startswith(f"capsjax train: error: --workdir {workdir}: ") and expected in error
    assert "\n" not in error and a_file.read_text() == "not a folder"
    with pytest.raises(WorkdirError):  # --debug shows the traceback instead
        main(["--debug", *args])


def test_progress_bar_counts_completed_steps(tmp_path, fake_data, monkeypatch):
    import time

    import jax

    import capsjax.training.loop as loop

    queued = []
    unfinished_at_update = []

    class RecordingBar:
        def __init__(self, *args, initial=0, **kwargs):
            self.n = initial

        def update(self, n=1):
            self.n += n
            # every step the bar has counted, except the one just queued, has finished
            done = queued[: self.n - 1]
            unfinished_at_update.append(sum(not leaf.is_ready() for m in done for leaf in jax.tree.leaves(m)))

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    def slow_steps(*args, **kwargs):  # each step's metrics become ready 50 ms after dispatch
        step = make_train_step(*args, **kwargs)
        delay = jax.jit(lambda m: jax.pure_callback(lambda m: (time.sleep(0.05), m)[1], m, m))
        return lambda *a: (lambda state, metrics: (state, delay(metrics)))(*step(*a))

    make_train_step = loop.make_train_step
    monkeypatch.setattr(loop, "make_train_step", slow_steps)
    monkeypatch.setattr(loop, "tqdm", RecordingBar)
    summary = train_and_evaluate(
        tiny_config(log_every_steps=100, checkpoint_every_steps=100),
        tmp_path,
        data_dir=fake_data,
        hooks=[lambda step, m: queued.append(m)],
        progress=True,
    )
    assert summary["step"] == len(unfinished_at_update) == 12
    assert unfinished_at_update == [0] * 12


def _smoke_cli(workdir, data, *extra):
    smoke = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs", "smoke.py")
    return [sys.executable, "-m", "capsjax", "train", "--config", smoke, "--workdir", str(workdir)] + [
        "--data-dir",
        str(data),
        "--config.data.train_examples=192",
        "--config.data.test_examples=64",
        "--config.epochs=1",
        *extra,
    ]


def test_a_failed_checkpoint_write_is_one_oserror_naming_the_folder(tmp_path):
    from capsjax.training.checkpoint import Checkpointer

    checkpointer = Checkpointer(tmp_path)

    def full_disk(*args, **kwargs):
        raise ValueError('RESOURCE_EXHAUSTED: Error writing "x" in OCDBT database at local file "..."')

    checkpointer.manager.save = full_disk
    with pytest.raises(OSError, match="no space left on device: a checkpoint could not be written") as info:
        checkpointer.save(1, {"w": np.zeros(3)})
    assert info.value.filename == str(tmp_path.absolute() / "checkpoints")
    checkpointer.manager.save = lambda *a, **k: (_ for _ in ()).throw(ValueError("some other problem"))
    with pytest.raises(ValueError, match="some other problem"):  # anything else passes through unchanged
        checkpointer.save(2, {"w": np.zeros(3)})
    checkpointer.close()


def test_disk_full_during_a_checkpoint_is_one_line(tmp_path, fake_data):
    """A real full disk: a 1 MiB tmpfs (needs permission to mount; skipped where there is none)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        args = _smoke_cli(mount / "run", fake_data, "--config.checkpoint_every_steps=1")
        result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    assert result.returncode == 1, result.stderr[-2000:]  # a failure while running, not bad input
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if "step/s" not in line and "s/step" not in line and not line.startswith("INFO")]
    assert errors == [
        f"capsjax train: error: {mount / 'run' / 'checkpoints'}: no space left on device: a checkpoint could not "
        "be written (the last complete one is kept)"
    ], result.stderr[-3000:]


def test_orphaned_orbax_write_tasks_are_not_reported_twice():
    """A full disk fails several of orbax's parallel array writes; the command reports the first, and
    asyncio's "Task exception was never retrieved" for the others is dropped, whenever the tasks are
    collected. Failed tasks of other code are still reported."""
    import asyncio
    import gc
    import logging

    from capsjax.cli import _NoTracebacks

    def failing_coroutine(defined_in):
        namespace = {}
        source = "async def write():\n    raise ValueError('RESOURCE_EXHAUSTED: No space left on device')\n"
        exec(compile(source, defined_in, "exec"), namespace)
        return namespace["write"]

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    handler.addFilter(_NoTracebacks())
    logging.getLogger("asyncio").addHandler(handler)
    try:
        for defined_in in ("/venv/site-packages/orbax/checkpoint/serialization.py", "/home/user/mine.py"):
            loop = asyncio.new_event_loop()
            task = loop.create_task(failing_coroutine(defined_in)())
            loop.run_until_complete(asyncio.sleep(0))  # the task runs and fails; nobody retrieves it
            loop.close()
            del task
            gc.collect()
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    reported = [message for message in seen if message.startswith("Task exception was never retrieved")]
    assert len(reported) == 1 and "mine.py" in reported[0], seen


def test_sizing_logs_only_when_the_trained_model_changes(caplog):
    """MNIST-shaped data leaves the default capsnet as it is: no log line, even though the other
    registered models (MatrixCapsNet defaults to smallNORB) are resized too; other data logs once."""
    import logging

    from capsjax.data.dataset import ArrayDataset
    from capsjax.training.config import TrainConfig
    from capsjax.training.datasets import size_model_to_data

    def data(shape, classes):
        return ArrayDataset(np.zeros((classes, *shape), np.uint8), np.arange(classes, dtype=np.int32), "made here")

    config = TrainConfig()
    with caplog.at_level(logging.INFO, logger="capsjax"):
        mnist = size_model_to_data(config, data((28, 28, 1), 10), data((28, 28, 1), 10))
        assert mnist.capsnet == config.capsnet and mnist.matrix_capsnet != config.matrix_capsnet
        assert not [r for r in caplog.records if "sized" in r.message]
        colour = size_model_to_data(config, data((20, 20, 3), 3), data((20, 20, 3), 3))
    assert colour.capsnet.image_shape == (20, 20, 3) and colour.capsnet.num_classes == 3
    assert len([r for r in caplog.records if "sized" in r.message]) == 1
