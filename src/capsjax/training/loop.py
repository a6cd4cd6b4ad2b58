"""The training loop over a prepared run: train, checkpoint, evaluate, write the summary.

``workdir/`` after :func:`train_and_evaluate`::

    config.json            the resolved TrainConfig, with the data folder and class names
    metrics.jsonl          one JSON record per logged step and per evaluation
    tensorboard/           the same metrics as TensorBoard event files
    checkpoints/<step>/    orbax checkpoints (every checkpoint_every_steps and eval_every_steps, each
                           epoch, on SIGINT/SIGTERM; the newest keep_checkpoints of them)
    reconstructions_epoch<N>.png   test digits (odd rows) and their reconstructions (even rows)
    summary.json           test accuracy, error %, epochs, wall time, examples/s, parameters, versions

:func:`capsjax.training.run.prepare_run` checks everything first; this module only runs what it
prepared, writing each file atomically. In a distributed run (:mod:`capsjax.training.distributed`)
every process trains the same model on its rows of each global batch; process 0 alone writes these
files, except the checkpoints, which all processes write together.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from capsjax.data.atomic import write_json
from capsjax.data.dataset import ArrayDataset
from capsjax.data.image_files import overlay_grid, reconstruction_grid, save_png
from capsjax.data.pipeline import eval_batches, prefetch, train_batches
from capsjax.errors import DistributedError, NonFiniteError, WorkdirError
from capsjax.nn.registry import count_params
from capsjax.training.checkpoint import Checkpointer
from capsjax.training.config import TrainConfig, save_config
from capsjax.training.datasets import size_model_to_data
from capsjax.training.distributed import any_process, first_line, is_peer_failure
from capsjax.training.evaluation import evaluate, model_outputs
from capsjax.training.ledger import Ledger, summarise
from capsjax.training.metrics import MetricWriter, NoMetricWriter
from capsjax.training.run import PreparedRun, prepare_run, teachers_of
from capsjax.training.sharding import Sharding
from capsjax.training.state import TrainState, evaluation_params, init_state, restart_state
from capsjax.training.steps import make_eval_step, make_train_step

log = logging.getLogger("capsjax")

# Called after every step with (step, metrics); may set the run's stop event (tests, schedulers).
StepHook = Callable[[int, dict], None]


class StopRequested:
    """A flag set by SIGINT/SIGTERM (or a hook); the loop checkpoints and returns when it is set."""

    def __init__(self):
        self.event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = reason
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


@contextlib.contextmanager
def stop_on_signals(stop: StopRequested) -> Iterator[StopRequested]:
    """SIGINT and SIGTERM set ``stop`` inside the block (main thread only); the previous handlers return after."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda signum, _frame: stop.set(signal.Signals(signum).name))
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def save_reconstructions(graphdef, params, dataset: ArrayDataset, path: pathlib.Path, *, count: int = 32):
    """PNG of the first ``count`` test images and their reconstructions; None for a model without a decoder.

    One object per image: inputs over reconstructions (the capsule chosen by the prediction).
    Several objects (MultiMNIST): each input over its objects' reconstructions, each decoded from
    that object's true class capsule, in red and green.
    """
    sample = dataset.take(count)
    labels = None if sample.targets is None else sample.labels
    params = jax.tree.map(np.asarray, jax.device_get(params))  # computed here alone, whatever the mesh
    reconstructions = model_outputs(nnx.merge(graphdef, params), sample.images, labels).reconstructions
    if reconstructions is None:
        return None
    grid = (reconstruction_grid if labels is None else overlay_grid)(sample.images, reconstructions)
    return save_png(path, grid, scale=3)


def initial_state(run: PreparedRun, checkpointer: Checkpointer, sharding: Sharding) -> tuple[nnx.GraphDef, TrainState]:
    """The model's graph and the state the run starts from: its checkpoint, its initial weights, or a new one."""
    graphdef, state = init_state(run.config)
    if run.init_params is not None:
        state = restart_state(state, run.init_params, run.config.optim)
    state = sharding.replicated(state)  # restored into these shardings: every process reads its part
    if run.resume_step is not None:
        state = checkpointer.restore(state)  # the newest intact checkpoint
        log.info("resumed from step %d", int(state.step))
    return graphdef, state


class Trainer:
    """One prepared run's steps, checkpoints and evaluations; :meth:`fit` runs it to its end or a stop."""

    def __init__(self, run: PreparedRun, checkpointer: Checkpointer, *, hooks: Sequence[StepHook] = ()):
        self.run, self.config, self.checkpointer, self.hooks = run, run.config, checkpointer, hooks
        self.writer = NoMetricWriter()  # until :meth:`fit` is given the run's writer
        self.sharding = Sharding.over_all_devices()
        self.graphdef, self.state = initial_state(run, checkpointer, self.sharding)
        self.ledger = Ledger(step=int(self.state.step))
        log.info("compiling the training step (the first step waits for it)")
        teachers = teachers_of(run, self.sharding.replicated)
        self.train_step = make_train_step(self.graphdef, self.config, teachers)
        self.eval_step = make_eval_step(self.graphdef, self.config)
        self.last_checkpoint = time.monotonic()

    def book(self, step: int, metrics) -> None:
        """Account for a finished step; stops the run on a non-finite one unless told to skip it."""
        if not self.ledger.book(step, metrics, skip=self.config.on_nonfinite == "skip"):
            values = jax.device_get(metrics)
            kept = self.checkpointer.latest_step()
            where = f"the last good checkpoint (step {kept}) is kept" if kept is not None else "no checkpoint was kept"
            raise NonFiniteError(
                f"step {step}: the loss ({float(values['loss']):.4g}) or the gradients (norm "
                f"{float(values['grad_norm']):.4g}) are not finite; likely causes: a learning rate too high "
                f"(config.optim.learning_rate = {self.config.optim.learning_rate:g}), non-finite input data, a "
                f"custom loss or layer; {where}: lower the learning rate and --resume, or skip such steps with "
                "--config.on_nonfinite=skip"
            )

    def save_checkpoint(self) -> None:
        self.book(self.ledger.step, self.ledger.latest)  # never write a non-finite state
        self.checkpointer.save(self.ledger.step, self.state)
        self.last_checkpoint = time.monotonic()

    def test(self) -> tuple[dict, nnx.State]:
        """Checkpoint, evaluate on the test split, log; returns the test metrics and the variables tested."""
        self.save_checkpoint()
        rows = self.sharding.process_rows(self.config.eval_batch_size)
        batches = eval_batches(self.run.test_set, batch_size=self.config.eval_batch_size, rows=rows)
        tested = evaluation_params(self.state, self.config.optim)
        self.ledger.test_metrics = evaluate(self.eval_step, tested, batches, self.sharding)
        self.writer.write_scalars(self.ledger.step, self.ledger.test_metrics, prefix="test/")
        return self.ledger.test_metrics, tested

    def end_of_epoch(self, say) -> None:
        metrics, tested = self.test()
        epoch = self.ledger.step // self.run.steps_per_epoch
        if self.run.primary:
            save_reconstructions(
                self.graphdef, tested, self.run.test_set, self.run.workdir / f"reconstructions_epoch{epoch}.png"
            )
        say(f"epoch {epoch}: test accuracy {100 * metrics['accuracy']:.2f}% ({metrics['count']} images)")

    def log_window(self, metrics, bar) -> None:
        metrics = self.ledger.close_window(jax.device_get(metrics), self.config.batch_size, self.config.log_every_steps)
        self.writer.write_scalars(self.ledger.step, metrics, prefix="train/")
        bar.set_postfix(
            loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.3f}", ex_s=f"{metrics['examples_per_sec']:.0f}"
        )

    def epoch_batches(self):
        step, per_epoch = self.ledger.step, self.run.steps_per_epoch
        batches = train_batches(
            self.run.train_set,
            batch_size=self.config.batch_size,
            seed=self.config.seed,
            epoch=step // per_epoch,
            start=step % per_epoch,
            rows=self.sharding.process_rows(self.config.batch_size),
        )
        return prefetch(batches, self.sharding.batch, size=self.config.prefetch)

    def train_epoch(self, stop: StopRequested, bar) -> bool:
        """Train to the end of the current epoch or a stop; returns whether the run was asked to stop."""
        config, ledger = self.config, self.ledger
        ledger.open_window()
        in_flight = None
        for batch in self.epoch_batches():
            self.state, metrics = self.train_step(self.state, *batch)
            # At most one step in flight: wait for the previous one once this one is queued, so the bar
            # and examples/s follow completed steps and the device never idles.
            if in_flight is not None:
                self.book(ledger.step, jax.block_until_ready(in_flight))
            in_flight = ledger.latest = metrics
            ledger.advance()
            for hook in self.hooks:
                hook(ledger.step, metrics)
            if ledger.step % config.log_every_steps == 0 or ledger.step % self.run.steps_per_epoch == 0:
                self.log_window(metrics, bar)
            bar.update(1)
            minutes = config.checkpoint_every_minutes
            overdue = minutes is not None and time.monotonic() - self.last_checkpoint >= 60 * minutes
            overdue, stopping = any_process(overdue, bool(stop))  # one process's clock or signal decides for all
            if ledger.step % config.checkpoint_every_steps == 0 or overdue:
                self.save_checkpoint()
            if stopping or ledger.step % self.run.steps_per_epoch == 0:
                return stopping
            if config.eval_every_steps and ledger.step % config.eval_every_steps == 0:
                bar.set_postfix_str(f"test accuracy {100 * self.test()[0]['accuracy']:.2f}% at step {ledger.step}")
        return False

    def fit(self, stop: StopRequested, writer, *, progress: bool) -> None:
        """Train to the last step (or a stop), evaluating after each epoch; metrics go to ``writer``."""
        run, ledger, self.writer = self.run, self.ledger, writer
        shown = progress and run.primary
        bar = tqdm(total=run.total_steps, initial=ledger.step, disable=not shown, unit="step", dynamic_ncols=True)
        say = bar.write if run.primary else (lambda text: None)  # messages of a distributed run: process 0's
        with contextlib.closing(bar):
            stopping = False
            while ledger.step < run.total_steps and not stopping:
                bar.set_description(f"epoch {ledger.step // run.steps_per_epoch + 1}/{self.config.epochs}")
                stopping = self.train_epoch(stop, bar)
                if ledger.step % run.steps_per_epoch == 0:
                    self.end_of_epoch(say)
            if stopping:
                self.save_checkpoint()
                say(
                    f"stopped ({stop.reason or 'another process was stopped'}) at step {ledger.step}; "
                    "checkpoint saved; continue with --resume"
                )
            elif not ledger.test_metrics:  # the last step was checkpointed but never tested (a crash between)
                self.test()


def _peer_failure(err: Exception, step: int, checkpointer: Checkpointer) -> DistributedError:
    return DistributedError(
        f"another process of the distributed run failed at step {step} ({first_line(err)}); the last "
        f"complete checkpoint (step {checkpointer.latest_step()}) is kept: restart every process with --resume"
    )


def run_training(run: PreparedRun, *, hooks: Sequence[StepHook] = (), stop=None, progress: bool = True) -> dict:
    """Run a prepared run to its end (or a stop) and write its summary; returns the summary."""
    if run.primary:
        save_config(run.config, run.workdir / "config.json", data_dir=run.data_dir, class_names=run.class_names)
    start = time.perf_counter()
    stop = StopRequested() if stop is None else stop
    with Checkpointer(run.workdir, keep=run.config.keep_checkpoints) as checkpointer, stop_on_signals(stop):
        trainer = Trainer(run, checkpointer, hooks=hooks)
        # Records after the step the run continues from are dropped (a new run's folder holds no metrics.jsonl).
        writer = MetricWriter(run.workdir, resume_step=trainer.ledger.step) if run.primary else NoMetricWriter()
        with contextlib.closing(writer):
            try:
                trainer.fit(stop, writer, progress=progress)
            except Exception as err:  # a lost process shows as a JAX runtime error, or orbax's wrapping of it
                if is_peer_failure(err):
                    checkpointer.abandon()  # a collective write would wait for the lost process
                    raise _peer_failure(err, trainer.ledger.step, checkpointer) from None
                raise
    summary = summarise(run, trainer.ledger, time.perf_counter() - start)
    summary["parameters"] = count_params(nnx.merge(trainer.graphdef, trainer.state.params))
    if run.primary:
        write_json(run.workdir / "summary.json", summary)
    return summary


def train_and_evaluate(
    config: TrainConfig,
    workdir: str | pathlib.Path,
    *,
    data_dir=None,
    resume: bool = False,
    hooks: Sequence[StepHook] = (),
    stop: StopRequested | None = None,
    progress: bool = True,
) -> dict:
    """Prepare a run (:func:`~capsjax.training.run.prepare_run`), then train it, evaluating after every epoch.

    Args:
      config: the run's :class:`TrainConfig`.
      workdir: output folder (created; a new run needs one without another run's files).
      data_dir: a folder of data files (it must exist); default: the recorded one of a resumed run,
        or where :func:`capsjax.data.sources.load_dataset` looks.
      resume: continue from the latest checkpoint; the result equals an uninterrupted run. A
        finished run is left as it is, and its summary returned.
      hooks: called after each step with ``(step, metrics)``.
      stop: a :class:`StopRequested` to end the run early (a checkpoint is written first).
      progress: show a progress bar.

    Returns:
      the summary dict, also written to ``workdir/summary.json`` (``status`` is ``"completed"`` or
      ``"interrupted"``).
    """
    with prepare_run(config, workdir, data_dir=data_dir, resume=resume) as run:
        if run.finished is not None:
            log.info("%s: the run is complete (step %d); its results are kept", run.workdir, run.finished["step"])
            return run.finished
        return run_training(run, hooks=hooks, stop=stop, progress=progress)


__all__ = [
    "NonFiniteError",
    "StopRequested",
    "WorkdirError",
    "run_training",
    "size_model_to_data",
    "train_and_evaluate",
]
