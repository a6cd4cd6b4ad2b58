"""Checkpoints: a damaged newest checkpoint falls back to the newest intact one, a checkpoint of another
model is one line naming the variable and both shapes, closing is bounded and leaves no thread behind
after a failed write, and nothing is written before the first checkpoint."""

from __future__ import annotations

import logging
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from capsjax.errors import ConfigError, StorageError
from capsjax.training.checkpoint import Checkpointer, restore_params, restore_params_and_step
from capsjax.training.config import save_config
from capsjax.training.state import evaluation_params, init_state
from helpers import tiny_config

# When one read of a damaged checkpoint fails, orbax closes its event loop while tensorstore still completes
# the others, whose callbacks then raise "Event loop is closed" in tensorstore's threads (the command line
# hides these, see capsjax.cli); pytest would turn them into errors of whichever test of this module is running.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def small_state(value: float) -> dict:
    return {"params": {"conv": {"kernel": jnp.full((3, 3, 1, 4), value)}, "bias": jnp.full((4,), value)}, "step": 0}


def write_checkpoints(workdir: pathlib.Path, states: dict) -> None:
    with Checkpointer(workdir, keep=None) as checkpointer:
        for step, state in states.items():
            checkpointer.save(step, state, wait=True)


def damage(step_folder: pathlib.Path, how: str) -> None:
    """Damage one kind of file of the orbax checkpoint in ``step_folder`` (``<step>/default/`` holds an
    OCDBT database: ``manifest.ocdbt``, data files under ``d/`` folders, and JSON ``_METADATA``)."""
    default = step_folder / "default"
    if how == "truncated data files":
        files = [path for path in default.glob("**/d/*") if path.is_file()]
    elif how == "truncated manifest":
        files = [default / "manifest.ocdbt"]
    else:
        (default / "_METADATA").write_bytes(b"\0" * 100)
        return
    assert files
    for path in files:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = ["truncated data files", "truncated manifest", "garbled metadata"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one_with_one_warning(tmp_path, caplog, how):
    """--resume, eval and export used to print tracebacks and never read the intact previous checkpoint."""
    write_checkpoints(tmp_path, {1: small_state(1.0), 2: small_state(2.0)})
    damage(tmp_path / "checkpoints" / "2", how)
    with caplog.at_level(logging.WARNING, logger="capsjax"):
        with Checkpointer(tmp_path) as checkpointer:  # a run is checked before it starts, then restored
            assert checkpointer.check_compatible(jax.eval_shape(lambda: small_state(0.0))) == 1
        with Checkpointer(tmp_path) as checkpointer:
            restored = checkpointer.restore(small_state(0.0))
            assert checkpointer.restored_step == 1
            assert checkpointer.restore_latest_intact(small_state(0.0))[0] == 1  # warned once per checkpoint
    np.testing.assert_array_equal(restored["params"]["conv"]["kernel"], np.full((3, 3, 1, 4), 1.0))
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING and record.name == "capsjax"]
    assert len(warnings) == 1, [record.getMessage() for record in caplog.records]
    message = warnings[0].getMessage()
    assert str(tmp_path.absolute() / "checkpoints" / "2") in message and "is damaged: " in message
    assert "using step 1" in message and "\n" not in message


def test_restore_params_falls_back_and_says_which_step_it_read(tmp_path, caplog):
    config = tiny_config()
    save_config(config, tmp_path / "config.json")
    _, first = init_state(config)
    second = first._replace(step=first.step + 1, params=jax.tree.map(lambda x: x + 1, first.params))
    write_checkpoints(tmp_path, {1: first, 2: second})
    damage(tmp_path / "checkpoints" / "2", "truncated data files")
    with caplog.at_level(logging.WARNING, logger="capsjax"):
        _, _, params, step = restore_params_and_step(tmp_path)
        assert restore_params(tmp_path)[2] is not None
    assert step == 1
    expected = evaluation_params(first, config.optim)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.leaves(params), jax.tree.leaves(expected))
    assert any("checkpoints/2 is damaged" in record.getMessage() for record in caplog.records)


def test_every_checkpoint_damaged_is_one_line_naming_the_folder(tmp_path):
    write_checkpoints(tmp_path, {1: small_state(1.0), 2: small_state(2.0)})
    damage(tmp_path / "checkpoints" / "1", "truncated manifest")
    damage(tmp_path / "checkpoints" / "2", "truncated data files")
    with Checkpointer(tmp_path) as checkpointer, pytest.raises(StorageError) as info:
        checkpointer.restore(small_state(0.0))
    message = str(info.value)
    assert "\n" not in message and len(message) < 1000, message
    assert f"every checkpoint in {tmp_path.absolute() / 'checkpoints'} is damaged" in message
    assert "start the run anew in another work directory" in message


def test_a_damaged_step_asked_for_is_one_line_without_falling_back(tmp_path):
    write_checkpoints(tmp_path, {1: small_state(1.0), 2: small_state(2.0)})
    damage(tmp_path / "checkpoints" / "2", "truncated manifest")
    with Checkpointer(tmp_path) as checkpointer, pytest.raises(StorageError) as info:
        checkpointer.restore(small_state(0.0), step=2)
    message = str(info.value)
    assert "\n" not in message, message
    assert f"{tmp_path.absolute() / 'checkpoints' / '2'} is damaged: default/manifest.ocdbt: " in message
    assert "restore another step ([1])" in message


MISFITS = {
    "shape": (
        lambda state: state | {"params": state["params"] | {"conv": {"kernel": jnp.zeros((3, 3, 1, 8))}}},
        r"params/conv/kernel has shape \(3, 3, 1, 4\), this config's model \(3, 3, 1, 8\)",
    ),
    "dtype": (
        lambda state: state | {"params": state["params"] | {"bias": jnp.zeros((4,), jnp.int32)}},
        r"params/bias has dtype float32, this config's model int32",
    ),
    "missing": (
        lambda state: state | {"params": state["params"] | {"extra": jnp.zeros(2)}},
        r"this config's model has params/extra, which the checkpoint does not hold",
    ),
    "extra": (
        lambda state: state | {"params": {"conv": state["params"]["conv"]}},
        r"the checkpoint holds params/bias, which this config's model does not have",
    ),
}


@pytest.mark.parametrize("misfit", list(MISFITS))
def test_a_checkpoint_of_another_model_is_one_line_naming_the_variable(tmp_path, misfit):
    """orbax's message suggested strict=False and named no variable."""
    change, expected = MISFITS[misfit]
    write_checkpoints(tmp_path, {40: small_state(1.0)})
    abstract = jax.eval_shape(lambda: change(small_state(0.0)))  # no array allocated
    pattern = rf"^checkpoint step 40 in .*checkpoints: {expected}: resume with the config the run was trained with$"
    with Checkpointer(tmp_path) as checkpointer:
        with pytest.raises(ConfigError, match=pattern):
            checkpointer.check_compatible(abstract)
        with pytest.raises(ConfigError, match=pattern):  # not taken for damage: no fallback, no traceback
            checkpointer.restore(change(small_state(0.0)))
        assert checkpointer.check_compatible(jax.eval_shape(lambda: small_state(0.0))) == 40


def test_close_waits_for_a_write_at_most_its_timeout(tmp_path):
    checkpointer = Checkpointer(tmp_path)
    wait_until_finished = checkpointer.manager.wait_until_finished
    checkpointer.manager.wait_until_finished = lambda: time.sleep(30)  # a write that hangs
    start = time.monotonic()
    with pytest.raises(StorageError, match=r"checkpoints: a checkpoint write did not finish within 0.5 s"):
        checkpointer.close(timeout=0.5)
    assert time.monotonic() - start < 10
    checkpointer.manager.wait_until_finished = wait_until_finished
    checkpointer.close()


def test_an_abandoned_checkpointer_closes_without_waiting(tmp_path):
    """A distributed run that lost a process gives up its collective write instead of waiting for it."""
    with Checkpointer(tmp_path) as checkpointer:
        checkpointer.manager.wait_until_finished = checkpointer.manager.close = lambda: time.sleep(30)
        start = time.monotonic()
        checkpointer.abandon()
    assert time.monotonic() - start < 5


FAILING_WRITE = """
import errno, os, sys, threading
import numpy as np

real_mkdir = os.mkdir

def denied(path, *args, **kwargs):  # orbax's temporary folder of a step cannot be made
    if "orbax-checkpoint-tmp" in os.fspath(path):
        raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
    return real_mkdir(path, *args, **kwargs)

os.mkdir = denied
from capsjax.training.checkpoint import Checkpointer

checkpointer = Checkpointer(sys.argv[1])
for _ in range(2):
    try:
        checkpointer.save(1, {"w": np.zeros(3)})
        checkpointer.close()
    except OSError as err:
        print("error:", err)
for thread in threading.enumerate():  # orbax's threads may take a moment to end, never minutes
    if thread is not threading.current_thread() and not thread.daemon:
        thread.join(20)
print("threads:", [thread.name for thread in threading.enumerate() if thread.is_alive() and not thread.daemon])
"""


def test_a_process_whose_checkpoint_write_failed_exits(tmp_path):
    """After a failed write, orbax's writer threads waited minutes for a folder that was never made, and
    the process did not exit."""
    script = tmp_path / "failing_write.py"
    script.write_text(textwrap.dedent(FAILING_WRITE))
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.monotonic() - start < 90
    lines = result.stdout.splitlines()
    folder = tmp_path / "run" / "checkpoints"
    error = f"error: {folder}: permission denied: a checkpoint could not be written (the last complete one is kept)"
    assert lines[:2] == [error, error], result.stdout
    assert lines[-1] == "threads: ['MainThread']", result.stdout


def test_leaving_the_with_block_closes_and_keeps_the_blocks_error(tmp_path, caplog):
    closed = []
    with Checkpointer(tmp_path) as checkpointer:
        close = checkpointer.manager.close
        checkpointer.manager.close = lambda: closed.append(close())
    assert closed == [None]

    def full_disk():
        raise ValueError('RESOURCE_EXHAUSTED: Error writing "w/0.0" in OCDBT database')

    with caplog.at_level(logging.WARNING, logger="capsjax"), pytest.raises(KeyError, match="the block's error"):
        with Checkpointer(tmp_path) as checkpointer:
            checkpointer.manager.wait_until_finished = full_disk
            checkpointer.manager.close = lambda: None
            raise KeyError("the block's error")
    assert any("no space left on device" in record.getMessage() for record in caplog.records)


def test_nothing_is_written_before_the_first_checkpoint(tmp_path):
    """A refused or interrupted start left an empty checkpoints folder."""
    checkpointer = Checkpointer(tmp_path)
    assert checkpointer.latest_step() is None and checkpointer.all_steps() == []
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in .*checkpoints"):
        checkpointer.restore(small_state(0.0))
    checkpointer.close()
    assert os.listdir(tmp_path) == []
    with Checkpointer(tmp_path) as checkpointer:
        checkpointer.save(3, small_state(3.0))
    assert Checkpointer(tmp_path).all_steps() == [3]
