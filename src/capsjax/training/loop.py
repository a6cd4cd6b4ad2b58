"""A training run in a work directory: config, metrics, checkpoints, images and a summary.

``workdir/`` after :func:`train_and_evaluate`::

    config.json            the resolved TrainConfig
    metrics.jsonl          one JSON record per logged step and per evaluation
    tensorboard/           the same metrics as TensorBoard event files
    checkpoints/<step>/    orbax checkpoints (every checkpoint_every_steps and eval_every_steps, each
                           epoch, on SIGINT/SIGTERM; the newest keep_checkpoints of them)
    reconstructions_epoch<N>.png   test digits (odd rows) and their reconstructions (even rows)
    summary.json           test accuracy, error %, epochs, wall time, examples/s, parameters, versions

In a distributed run (:mod:`capsjax.training.distributed`) every process trains the same model on
its rows of each global batch; process 0 alone writes these files, except the checkpoints, which
all processes write together.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import os
import pathlib
import platform
import signal
import threading
import time
from collections.abc import Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from capsjax.data.dataset import ArrayDataset
from capsjax.data.image_files import overlay_grid, reconstruction_grid, save_png
from capsjax.data.pipeline import eval_batches, prefetch, train_batches
from capsjax.errors import NonFiniteError, WorkdirError
from capsjax.nn.registry import MODELS, count_params
from capsjax.training.checkpoint import Checkpointer
from capsjax.training.config import (
    ConfigError,
    TrainConfig,
    check_augmentation,
    read_config,
    recorded_data_dir,
    save_config,
    validate,
)
from capsjax.training.datasets import load_data_split
from capsjax.training.distributed import DistributedError, any_process, first_line, is_peer_failure, is_primary
from capsjax.training.evaluation import evaluate, model_outputs
from capsjax.training.metrics import MetricWriter, NoMetricWriter
from capsjax.training.sharding import Sharding
from capsjax.training.state import evaluation_params, init_state, restart_state
from capsjax.training.steps import make_eval_step, make_train_step, teacher_scores
from capsjax.training.weights import fitting_params, read_weights

log = logging.getLogger("capsjax")

# Called after every step with (step, metrics); may set the run's stop event (tests, schedulers).
StepHook = Callable[[int, dict], None]


def prepare_workdir(workdir: str | pathlib.Path) -> pathlib.Path:
    """Create ``workdir`` if needed and check that files can be written there.

    Raises:
      WorkdirError: one line naming the path and the problem.
    """
    workdir = pathlib.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise WorkdirError(f"--workdir {workdir}: is a file, not a folder; choose another --workdir")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".capsjax-write-test-{os.getpid()}"  # one per process of a distributed run
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise WorkdirError(f"--workdir {workdir}: cannot write there ({err.strerror or err})") from None
    return workdir


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


def _install_signal_handlers(stop: StopRequested):
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda signum, _frame: stop.set(signal.Signals(signum).name))
    return previous


def load_data(config: TrainConfig, data_dir=None) -> tuple[ArrayDataset, ArrayDataset]:
    """The train and test splits as ``config.data`` asks."""
    return load_data_split(config, "train", data_dir), load_data_split(config, "test", data_dir)


def size_model_to_data(config: TrainConfig, train_set: ArrayDataset, test_set: ArrayDataset) -> TrainConfig:
    """``config`` with every model's ``image_shape`` and ``num_classes`` taken from the data: the
    test images' shape (training crops to it), and the number of class names the dataset has, or
    else its largest label + 1.

    Raises:
      ValueError: the train and test images differ in size, or a label exceeds the classes.
    """
    shape = tuple(int(d) for d in test_set.images.shape[1:])  # what the model sees (train crops to it)
    train_shape = tuple(int(d) for d in train_set.images.shape[1:])
    crop = config.data.crop
    expected = (crop, crop, shape[2]) if crop and train_shape[0] > crop else train_shape
    if expected != shape:
        raise ValueError(f"the train images are {train_shape} but the test images {shape}")
    largest = int(max(train_set.labels.max(initial=0), test_set.labels.max(initial=0)))
    num_classes = len(train_set.class_names) if train_set.class_names else max(2, largest + 1)
    if largest >= num_classes:
        raise ValueError(f"label {largest} out of range for the dataset's {num_classes} classes")
    sized = {
        name: dataclasses.replace(getattr(config, name), image_shape=shape, num_classes=num_classes)
        for name in MODELS  # every model's config field is named as the model
    }
    if sized[config.model] != getattr(config, config.model):  # the model that trains, not the others
        log.info("model sized to the data: images %s, %d classes", shape, num_classes)
    return dataclasses.replace(config, **sized)


def read_teachers(
    config: TrainConfig, graphdef: nnx.GraphDef, params: nnx.State, image_shape: Sequence[int]
) -> list[tuple[nnx.GraphDef, nnx.State]]:
    """The models of ``config.teachers`` as ``(graph, params)``, checked against this run's model.

    Raises:
      ConfigError: one line, when a file is missing or its model does not give class scores of the
        shape this run's model gives for images ``image_shape`` (height, width, channels).
    """
    images = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)

    def scores_shape(graph, model_params) -> tuple:
        return jax.eval_shape(lambda p, x: teacher_scores([(graph, p)], x), model_params, images).shape

    wanted = scores_shape(graphdef, params)
    teachers = []
    for path in config.teachers:
        if not pathlib.Path(path).is_file():
            raise ConfigError(f"config.teachers: {path!r}: no such file")
        weights = read_weights(path)
        try:
            given = scores_shape(weights.graphdef, weights.params)
        except (ValueError, TypeError) as err:
            raise ConfigError(
                f"config.teachers: {path}: its {weights.config.model} cannot take this run's images "
                f"{tuple(image_shape)}: {first_line(err)}"
            ) from None
        if given != wanted:
            raise ConfigError(
                f"config.teachers: {path}: its {weights.config.model} gives class scores of shape {given} for "
                f"images {tuple(image_shape)}, this run's model {wanted}"
            )
        teachers.append((weights.graphdef, weights.params))
    return teachers


def _versions() -> dict:
    return {
        "capsjax": importlib.metadata.version("capsjax"),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.local_devices()],
    }


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
    """Train ``config`` in ``workdir`` and evaluate on the test split after every epoch.

    Args:
      config: the run's :class:`TrainConfig`.
      workdir: output folder (created). With ``resume``, its checkpoint and config are used.
      data_dir: folder of IDX files (see :func:`capsjax.data.sources.load_dataset`).
      resume: continue from the latest checkpoint; the result equals an uninterrupted run.
      hooks: called after each step with ``(step, metrics)``.
      stop: a :class:`StopRequested` to end the run early (a checkpoint is written first).
      progress: show a progress bar.

    Returns:
      the summary dict, also written to ``workdir/summary.json`` (``status`` is ``"completed"`` or
      ``"interrupted"``).
    """
    validate(config)  # before anything is written
    workdir = prepare_workdir(workdir)
    checkpointer = Checkpointer(workdir, keep=config.keep_checkpoints)
    continuing = resume and checkpointer.latest_step() is not None
    if config.init_weights and not continuing and not pathlib.Path(config.init_weights).is_file():
        checkpointer.close()
        raise ConfigError(f"config.init_weights = {config.init_weights!r}: no such file")
    if not resume and checkpointer.latest_step() is not None:
        step = checkpointer.latest_step()
        checkpointer.close()
        raise ValueError(
            f"{workdir} already holds a checkpoint (step {step}): continue it "
            "with --resume, or train into a new --workdir"
        )
    config_path = workdir / "config.json"
    resumed_from = read_config(config_path) if resume and config_path.exists() else None
    if resumed_from is not None:
        data_dir = recorded_data_dir(config_path) if data_dir is None else data_dir
    if continuing and resumed_from is not None and config.init_weights != resumed_from.init_weights:
        step = checkpointer.latest_step()
        checkpointer.close()
        raise ValueError(
            f"{workdir} already holds a checkpoint (step {step}) of a run started from "
            f"{resumed_from.init_weights or 'a random initialisation'}: --init-weights only starts a new run"
        )

    sharding = Sharding.over_all_devices()
    primary = is_primary()
    sharding.check_batch_size(config.batch_size)
    sharding.check_batch_size(config.eval_batch_size, "eval_batch_size")
    train_set, test_set = load_data(config, data_dir)
    config = size_model_to_data(config, train_set, test_set)
    check_augmentation(config, test_set.images.shape[1:], has_targets=train_set.targets is not None)
    if resumed_from is not None and resumed_from != config and primary:
        log.warning("resuming with a config that differs from %s; the new one is used", config_path)
    graphdef, state = init_state(config)
    if config.init_weights and not continuing:  # before anything is written: a misfit is one line
        # Every process reads the file (the same file: replicated() below takes its values as equal).
        params = fitting_params(config.init_weights, state.params, model=config.model)
        state = restart_state(state, params, config.optim)
        if primary:
            log.info("starting from the weights in %s", config.init_weights)
    teachers = read_teachers(config, graphdef, state.params, test_set.images.shape[1:])
    # Written once the data is found, with where it came from: eval and --resume find it without a flag.
    source = pathlib.Path(train_set.source)
    resolved = source if source.is_dir() else (pathlib.Path(data_dir) if data_dir else None)
    if primary:
        save_config(
            config,
            config_path,
            data_dir=str(resolved.absolute()) if resolved else None,
            class_names=train_set.class_names,
        )
    steps_per_epoch = len(train_set) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size ({config.batch_size}) is larger than the training set ({len(train_set)})")
    total_steps = steps_per_epoch * config.epochs

    num_params = count_params(nnx.merge(graphdef, state.params))
    state = sharding.replicated(state)  # restored into these shardings: every process reads its part
    if continuing:
        state = checkpointer.restore(state)
        log.info("resumed from step %d", int(state.step))
    train_rows = sharding.process_rows(config.batch_size)
    eval_rows = sharding.process_rows(config.eval_batch_size)
    train_step = make_train_step(graphdef, config, [(graph, sharding.replicated(p)) for graph, p in teachers])
    eval_step = make_eval_step(graphdef, config)

    stop = StopRequested() if stop is None else stop
    previous_handlers = _install_signal_handlers(stop)
    writer = MetricWriter(workdir, resume_step=int(state.step) if resume else None) if primary else NoMetricWriter()
    step = int(state.step)
    start_time = time.perf_counter()
    trained_examples, train_seconds = 0, 0.0
    test_metrics: dict = {}

    skipped_steps, booked_step = 0, step
    metrics = None  # of the latest step

    def completed(done_step: int, done_metrics) -> None:
        """Book-keeping of a finished step, once each: its non-finite flag stops the run or counts a skip."""
        nonlocal skipped_steps, booked_step
        if done_metrics is None or done_step <= booked_step:
            return
        booked_step = done_step
        if bool(done_metrics["finite"]):
            return
        if config.on_nonfinite == "skip":
            skipped_steps += 1
            return
        values = jax.device_get(done_metrics)
        raise NonFiniteError(
            f"step {done_step}: the loss ({float(values['loss']):.4g}) or the gradients (norm "
            f"{float(values['grad_norm']):.4g}) are not finite; likely causes: a learning rate too high "
            f"(config.optim.learning_rate = {config.optim.learning_rate:g}), non-finite input data, a custom "
            f"loss or layer; the last good checkpoint (step {checkpointer.latest_step()}) is kept: lower the "
            "learning rate and --resume, or skip such steps with --config.on_nonfinite=skip"
        )

    last_checkpoint_time = time.monotonic()

    def save_checkpoint() -> None:
        nonlocal last_checkpoint_time
        completed(step, metrics)  # never write a non-finite state
        checkpointer.save(step, state)
        last_checkpoint_time = time.monotonic()

    def test_now() -> tuple[dict, nnx.State]:
        """Checkpoint, then evaluate on the test set; returns its metrics and the variables tested."""
        save_checkpoint()
        batches = eval_batches(test_set, batch_size=config.eval_batch_size, rows=eval_rows)
        tested = evaluation_params(state, config.optim)
        metrics = evaluate(eval_step, tested, batches, sharding)
        writer.write_scalars(step, metrics, prefix="test/")
        return metrics, tested

    bar = tqdm(total=total_steps, initial=step, disable=not (progress and primary), unit="step", dynamic_ncols=True)
    say = bar.write if primary else (lambda text: None)  # messages of a distributed run: process 0's
    stopping = False  # agreed by every process: they stop at the same step
    peer_failed = False
    try:
        while step < total_steps and not stopping:
            epoch = step // steps_per_epoch
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
            batches = train_batches(
                train_set,
                batch_size=config.batch_size,
                seed=config.seed,
                epoch=epoch,
                start=step % steps_per_epoch,
                rows=train_rows,
            )
            window_start, window_steps = time.perf_counter(), 0
            in_flight = None
            for batch in prefetch(batches, sharding.batch, size=config.prefetch):
                state, metrics = train_step(state, *batch)
                # At most one step in flight: wait for the previous one once this one is queued, so
                # the bar and examples/s follow completed steps (async dispatch would otherwise queue
                # many steps ahead, then stall at each metrics sync) and the device never idles.
                if in_flight is not None:
                    completed(step, jax.block_until_ready(in_flight))
                in_flight = metrics
                step += 1
                window_steps += 1
                for hook in hooks:
                    hook(step, metrics)
                if step % config.log_every_steps == 0 or step % steps_per_epoch == 0:
                    metrics = jax.device_get(metrics)
                    elapsed = time.perf_counter() - window_start
                    metrics["examples_per_sec"] = window_steps * config.batch_size / elapsed
                    if window_steps >= 2 or step > config.log_every_steps:  # exclude compile windows
                        trained_examples += window_steps * config.batch_size
                        train_seconds += elapsed
                    writer.write_scalars(step, metrics, prefix="train/")
                    bar.set_postfix(
                        loss=f"{metrics['loss']:.4f}",
                        acc=f"{metrics['accuracy']:.3f}",
                        ex_s=f"{metrics['examples_per_sec']:.0f}",
                    )
                    window_start, window_steps = time.perf_counter(), 0
                bar.update(1)
                minutes = config.checkpoint_every_minutes
                overdue = minutes is not None and time.monotonic() - last_checkpoint_time >= 60 * minutes
                # Every process takes the same decisions: one's clock or signal decides for all.
                overdue, stopping = any_process(overdue, bool(stop))
                if step % config.checkpoint_every_steps == 0 or overdue:
                    save_checkpoint()
                if stopping or step % steps_per_epoch == 0:
                    break
                if config.eval_every_steps and step % config.eval_every_steps == 0:
                    accuracy = test_now()[0]["accuracy"]
                    bar.set_postfix_str(f"test accuracy {100 * accuracy:.2f}% at step {step}")
            if step % steps_per_epoch == 0:
                test_metrics, tested = test_now()
                if primary:
                    path = workdir / f"reconstructions_epoch{step // steps_per_epoch}.png"
                    save_reconstructions(graphdef, tested, test_set, path)
                say(
                    f"epoch {step // steps_per_epoch}: test accuracy {100 * test_metrics['accuracy']:.2f}% "
                    f"({test_metrics['count']} images)"
                )
        if stopping:
            save_checkpoint()
            reason = stop.reason or "another process was stopped"
            say(f"stopped ({reason}) at step {step}; checkpoint saved; continue with --resume")
    except Exception as err:  # a lost process shows as a JAX runtime error, or orbax's wrapping of it
        if not is_peer_failure(err):
            raise
        peer_failed = True
        raise DistributedError(
            f"another process of the distributed run failed at step {step} ({first_line(err)}); the last "
            f"complete checkpoint (step {checkpointer.latest_step()}) is kept: restart every process with --resume"
        ) from None
    finally:
        bar.close()
        if not peer_failed:  # a collective write would wait for the lost process
            checkpointer.close()
        writer.close()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)

    summary = {
        "status": "interrupted" if step < total_steps else "completed",
        "model": config.model,
        "dataset": config.data.name,
        "data_source": train_set.source,
        "step": step,
        "epochs": step / steps_per_epoch,
        "train_examples": len(train_set),
        "test_accuracy": test_metrics.get("accuracy"),
        "test_error_percent": test_metrics.get("error_percent"),
        "test_examples": test_metrics.get("count"),
        "wall_time_sec": time.perf_counter() - start_time,
        "train_examples_per_sec": trained_examples / train_seconds if train_seconds else None,
        "parameters": num_params,
        "skipped_steps": skipped_steps,
        "batch_size": config.batch_size,
        "devices": sharding.num_devices,
        "processes": jax.process_count(),
        "global_devices": jax.device_count(),
        "versions": _versions(),
    }
    if primary:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
