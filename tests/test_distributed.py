"""Multi-process training on JAX's distributed runtime: 2 processes on 127.0.0.1 with Gloo collectives."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from capsjax.cli import main
from capsjax.data.dataset import ArrayDataset
from capsjax.data.pipeline import eval_batches, train_batches
from capsjax.training.checkpoint import restore_params
from capsjax.training.distributed import ProcessSpec, any_process, cluster_detected, initialize
from capsjax.training.evaluation import evaluate_checkpoint
from capsjax.training.loop import train_and_evaluate
from capsjax.training.metrics import read_metrics
from capsjax.training.sharding import Sharding
from helpers import tiny_config, write_fake_mnist

TRAIN, TEST, BATCH, EVAL_BATCH = 256, 100, 32, 48  # 8 steps per epoch; the last eval batch padded
TINY_CONFIG = f"""
from capsjax.nn import CapsNetConfig
from capsjax.training.config import DataConfig, TrainConfig


def get_config():
    return TrainConfig(
        capsnet=CapsNetConfig(conv_channels=16, primary_types=4, class_dim=8, decoder_hidden=(32,)),
        data=DataConfig(train_examples=None, test_examples=None),
        batch_size={BATCH}, eval_batch_size={EVAL_BATCH}, epochs=1, checkpoint_every_steps=3, log_every_steps=2,
    )
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(tmp: pathlib.Path, workdir: pathlib.Path, *extra: str, resume: bool = False) -> list[subprocess.Popen]:
    """Start 2 ``capsjax train`` processes of one run; their output goes to ``workdir.name``-``i``.log."""
    port = free_port()
    start = ["--resume"] if resume else ["--config", str(tmp / "tiny.py"), "--data-dir", str(tmp / "data")]
    processes = []
    for rank in range(2):
        command = [sys.executable, "-m", "capsjax", "train", "--workdir", str(workdir), *start]
        command += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(rank)]
        command += ["--heartbeat-timeout", "10", *extra]
        with open(tmp / f"{workdir.name}-{rank}.log", "w") as log:
            # The run's XLA compilation cache (conftest.py): launches after the first reuse its steps.
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    return processes


def wait_all(processes, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    try:
        return [process.wait(timeout=max(deadline - time.monotonic(), 0.1)) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()  # reaped: no process outlives its test


def wait_for(path: pathlib.Path, processes, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            for process in processes:
                process.kill()
                process.wait()
            pytest.fail(f"{path} never appeared")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """One epoch of the tiny CapsNet trained by 2 processes; returns the folder holding it."""
    tmp = tmp_path_factory.mktemp("distributed")
    write_fake_mnist(tmp / "data", train=TRAIN, test=TEST)
    (tmp / "tiny.py").write_text(TINY_CONFIG)
    codes = wait_all(launch(tmp, tmp / "two"), timeout=240)
    assert codes == [0, 0], (tmp / "two-0.log").read_text()[-3000:] + (tmp / "two-1.log").read_text()[-3000:]
    return tmp


def test_two_processes_train_what_one_process_trains(two_process_run):
    tmp = two_process_run
    config = tiny_config(batch_size=BATCH, eval_batch_size=EVAL_BATCH, epochs=1)
    alone = train_and_evaluate(config, tmp / "one", data_dir=tmp / "data", progress=False)
    _, _, one = restore_params(tmp / "one")
    _, _, two = restore_params(tmp / "two")  # written by 2 processes, read by this one
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(two), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    summary = json.loads((tmp / "two" / "summary.json").read_text())
    assert (summary["processes"], summary["global_devices"]) == (2, 2)
    assert summary["test_examples"] == TEST  # each test image counted once
    assert summary["test_accuracy"] == pytest.approx(alone["test_accuracy"])
    steps = [r["step"] for r in read_metrics(tmp / "two" / "metrics.jsonl") if "train/loss" in r]
    assert steps == sorted(set(steps))  # process 0 alone writes metrics
    assert evaluate_checkpoint(tmp / "two")["count"] == TEST


def test_a_lost_process_stops_the_other_and_the_run_resumes(two_process_run):
    tmp = two_process_run
    workdir = tmp / "faults"
    # kill -9 one process: the other exits with an error well within its timeout, never hangs.
    processes = launch(tmp, workdir, "--config.epochs=6")
    wait_for(workdir / "checkpoints" / "9", processes)
    processes[1].kill()
    processes[1].wait()
    started = time.monotonic()
    code = wait_all(processes[:1], timeout=40)[0]
    assert code == 1 and time.monotonic() - started < 40
    assert "another process of the distributed run failed" in (tmp / "faults-0.log").read_text()
    # --resume continues from the last complete checkpoint to the end.
    assert wait_all(launch(tmp, workdir, resume=True), timeout=180) == [0, 0]
    summary = json.loads((workdir / "summary.json").read_text())
    assert (summary["status"], summary["step"]) == ("completed", 6 * TRAIN // BATCH)


def test_each_process_reads_its_rows_of_every_global_batch():
    data = ArrayDataset(np.arange(100 * 4, dtype=np.uint8).reshape(100, 2, 2, 1), np.arange(100) % 10, "generated")
    whole = list(train_batches(data, batch_size=20, seed=3, epoch=1))
    halves = [list(train_batches(data, batch_size=20, seed=3, epoch=1, rows=slice(a, a + 10))) for a in (0, 10)]
    for batch, first, second in zip(whole, *halves, strict=True):
        np.testing.assert_array_equal(np.concatenate([first[1], second[1]]), batch[1])
    counted = sum(
        int(valid.sum())
        for rows in (slice(0, 24), slice(24, 48))
        for *_, valid in eval_batches(data, batch_size=48, rows=rows)
    )
    assert counted == 100


def test_a_single_process_holds_every_row_and_agrees_with_itself():
    sharding = Sharding.over_all_devices()
    assert sharding.process_rows(64) == slice(0, 64)
    assert not sharding.spans_processes
    assert any_process(False, True) == (False, True)


def test_clusters_are_recognised_from_their_environment():
    assert cluster_detected({"SLURM_STEP_NODELIST": "node[1-2]", "SLURM_NTASKS": "2"})
    assert not cluster_detected({"SLURM_STEP_NODELIST": "node1", "SLURM_NTASKS": "1"})
    assert cluster_detected({"OMPI_COMM_WORLD_SIZE": "4"})
    assert cluster_detected({"TPU_WORKER_HOSTNAMES": "host-0,host-1"})
    assert not cluster_detected({"TPU_WORKER_HOSTNAMES": "host-0"})
    assert not cluster_detected({})


def test_a_single_process_does_not_start_the_distributed_runtime(monkeypatch):
    for name in (
        "JAX_COORDINATOR_ADDRESS",
        "JAX_NUM_PROCESSES",
        "JAX_PROCESS_ID",
        "SLURM_NTASKS",
        "OMPI_COMM_WORLD_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)
    assert initialize(ProcessSpec()) is False
    assert initialize(ProcessSpec("127.0.0.1:1234", 1, 0)) is False


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--coordinator", "127.0.0.1:1234"], "together"),
        (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "must be in 0 .. 1"),
    ],
)
def test_bad_distributed_flags_are_one_line_errors(flags, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    code = main(["train", "--config", "experiments/configs/smoke.py", "--workdir", str(tmp_path / "w"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "w").exists()


def test_environment_variables_fill_the_flags(monkeypatch):
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    merged = ProcessSpec(process_id=1).merged(ProcessSpec.from_environment())
    assert merged == ProcessSpec("10.0.0.1:1234", 4, 1)
