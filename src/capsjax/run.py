"""A training run in a work directory: config, metrics, checkpoints, images and a summary.

``workdir/`` after :func:`train_and_evaluate`::

    config.json            the resolved TrainConfig
    metrics.jsonl          one JSON record per logged step and per evaluation
    tensorboard/           the same metrics as TensorBoard event files
    checkpoints/<step>/    orbax checkpoints (every checkpoint_every_steps and eval_every_steps, each
                           epoch, on SIGINT/SIGTERM; the newest keep_checkpoints of them)
    reconstructions_epoch<N>.png   test digits (odd rows) and their reconstructions (even rows)
    summary.json           test accuracy, error %, epochs, wall time, examples/s, parameters, versions
"""

from __future__ import annotations

import json
import logging
import pathlib
import platform
import signal
import threading
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from capsjax.affine import pad_to_canvas
from capsjax.checkpoint import Checkpointer
from capsjax.config import TrainConfig, read_config, save_config
from capsjax.data import ArrayDataset, eval_batches, load_dataset, prefetch, train_batches
from capsjax.images import reconstruction_grid, save_png
from capsjax.metrics import MetricWriter
from capsjax.models import count_params
from capsjax.train import Sharding, evaluate, init_state, make_eval_step, make_train_step, to_float

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


def _install_signal_handlers(stop: StopRequested):
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda signum, _frame: stop.set(signal.Signals(signum).name))
    return previous


def load_split(config: TrainConfig, split: str, data_dir=None) -> ArrayDataset:
    """One split as the config asks: the first ``*_examples`` images, on ``canvas`` if set."""
    limit = config.data.train_examples if split == "train" else config.data.test_examples
    if config.data.name == "multimnist":
        from capsjax.multimnist import load_multimnist

        return load_multimnist(split, data_dir=data_dir, num_examples=limit)
    dataset = load_dataset(config.data.name, split, data_dir=data_dir).take(limit)
    if config.data.canvas:
        dataset = ArrayDataset(pad_to_canvas(dataset.images, config.data.canvas), dataset.labels, dataset.source)
    return dataset


def load_data(config: TrainConfig, data_dir=None) -> tuple[ArrayDataset, ArrayDataset]:
    return load_split(config, "train", data_dir), load_split(config, "test", data_dir)


def _versions() -> dict:
    import flax
    import optax

    return {"capsjax": __import__("capsjax").__version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "python": platform.python_version(), "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()]}


def save_reconstructions(graphdef, params, dataset: ArrayDataset, path: pathlib.Path, *, count: int = 32):
    """PNG grid of the first ``count`` test images over their reconstructions (masked by prediction)."""
    if dataset.targets is not None:
        from capsjax.figures import save_overlay_grid

        return save_overlay_grid(graphdef, params, dataset.take(count), path)
    model = nnx.merge(graphdef, params)
    images = dataset.images[:count]
    output = jax.jit(lambda m, x: m(to_float(x)))(model, images)
    if output.reconstructions is None:
        return None
    return save_png(path, reconstruction_grid(images, np.asarray(output.reconstructions)), scale=3)


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
      data_dir: folder of IDX files (see :func:`capsjax.data.load_dataset`).
      resume: continue from the latest checkpoint; the result equals an uninterrupted run.
      hooks: called after each step with ``(step, metrics)``.
      stop: a :class:`StopRequested` to end the run early (a checkpoint is written first).
      progress: show a progress bar.

    Returns:
      the summary dict, also written to ``workdir/summary.json`` (``status`` is ``"completed"`` or
      ``"interrupted"``).
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpointer = Checkpointer(workdir, keep=config.keep_checkpoints)
    if not resume and checkpointer.latest_step() is not None:
        step = checkpointer.latest_step()
        checkpointer.close()
        raise ValueError(f"{workdir} already holds a checkpoint (step {step}): continue it "
                         "with --resume, or train into a new --workdir")
    config_path = workdir / "config.json"
    if resume and config_path.exists() and read_config(config_path) != config:
        log.warning("resuming with a config that differs from %s; the new one is used", config_path)
    save_config(config, config_path)

    sharding = Sharding.over_local_devices()
    sharding.check_batch_size(config.batch_size)
    sharding.check_batch_size(config.eval_batch_size, "eval_batch_size")
    train_set, test_set = load_data(config, data_dir)
    steps_per_epoch = len(train_set) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size ({config.batch_size}) is larger than the training set ({len(train_set)})")
    total_steps = steps_per_epoch * config.epochs

    graphdef, state = init_state(config)
    num_params = count_params(nnx.merge(graphdef, state.params))
    if resume and checkpointer.latest_step() is not None:
        state = checkpointer.restore(state)
        log.info("resumed from step %d", int(state.step))
    state = sharding.replicated(state)
    train_step = make_train_step(graphdef, config)
    eval_step = make_eval_step(graphdef, config)

    stop = StopRequested() if stop is None else stop
    previous_handlers = _install_signal_handlers(stop)
    writer = MetricWriter(workdir)
    step = int(state.step)
    start_time = time.perf_counter()
    trained_examples, train_seconds = 0, 0.0
    test_metrics: dict = {}

    def test_now() -> dict:
        checkpointer.save(step, state)
        metrics = evaluate(eval_step, state.params, eval_batches(test_set, batch_size=config.eval_batch_size),
                           sharding)
        writer.write_scalars(step, metrics, prefix="test/")
        return metrics

    bar = tqdm(total=total_steps, initial=step, disable=not progress, unit="step", dynamic_ncols=True)
    try:
        while step < total_steps and not stop:
            epoch = step // steps_per_epoch
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
            batches = train_batches(
                train_set, batch_size=config.batch_size, seed=config.seed, epoch=epoch,
                start=step % steps_per_epoch,
            )
            window_start, window_steps = time.perf_counter(), 0
            for batch in prefetch(batches, sharding.batch, size=config.prefetch):
                state, metrics = train_step(state, *batch)
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
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.3f}",
                                    ex_s=f"{metrics['examples_per_sec']:.0f}")
                    window_start, window_steps = time.perf_counter(), 0
                bar.update(1)
                if step % config.checkpoint_every_steps == 0:
                    checkpointer.save(step, state)
                if stop or step % steps_per_epoch == 0:
                    break
                if config.eval_every_steps and step % config.eval_every_steps == 0:
                    accuracy = test_now()["accuracy"]
                    bar.set_postfix_str(f"test accuracy {100 * accuracy:.2f}% at step {step}")
            if step % steps_per_epoch == 0:
                test_metrics = test_now()
                save_reconstructions(graphdef, state.params, test_set,
                                     workdir / f"reconstructions_epoch{step // steps_per_epoch}.png")
                bar.write(f"epoch {step // steps_per_epoch}: test accuracy {100 * test_metrics['accuracy']:.2f}% "
                          f"({test_metrics['count']} images)")
        if stop:
            checkpointer.save(step, state)
            bar.write(f"stopped ({stop.reason}) at step {step}; checkpoint saved; continue with --resume")
    finally:
        bar.close()
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
        "batch_size": config.batch_size,
        "devices": sharding.num_devices,
        "versions": _versions(),
    }
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def restore_params(workdir: str | pathlib.Path, *, step: int | None = None):
    """``(config, graphdef, params)`` of checkpoint ``step`` (default: the latest) of a run's work directory."""
    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").exists():
        raise FileNotFoundError(f"{workdir} is not a capsjax work directory (no config.json)")
    config = read_config(workdir / "config.json")
    graphdef, state = init_state(config)
    checkpointer = Checkpointer(workdir, keep=None)  # reading must never prune a run's checkpoints
    try:
        state = checkpointer.restore(state, step)
    finally:
        checkpointer.close()
    return config, graphdef, state.params


def evaluate_checkpoint(workdir, *, data_dir=None, step: int | None = None, dataset: ArrayDataset | None = None
                        ) -> dict:
    """Metrics of checkpoint ``step`` (default: the latest) of a run on ``dataset`` (default: the
    run's test split, as its config asks)."""
    config, graphdef, params = restore_params(workdir, step=step)
    sharding = Sharding.over_local_devices()
    test_set = load_split(config, "test", data_dir) if dataset is None else dataset
    params = sharding.replicated(params)
    return evaluate(make_eval_step(graphdef, config), params,
                    eval_batches(test_set, batch_size=config.eval_batch_size), sharding)
