"""Prepare, then run: a run checked whole before its first byte is written.

:func:`prepare_run` turns a config, the data options and a work directory into a
:class:`PreparedRun`: the work directory claimed (:mod:`capsjax.training.workdir`), the data found
and loaded, the model sized to it, every rule of the config applied once, the initial weights,
the teachers and a resumed checkpoint checked against the model's shapes (``jax.eval_shape``:
nothing is allocated for a model that does not fit), the data of a resumed run checked against
the data it trained on. Only then does :mod:`capsjax.training.loop` write anything. A finished run
resumed is prepared as finished: its results are returned, never recomputed or overwritten.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
from collections.abc import Iterator, Sequence

from flax import nnx

from capsjax.data.dataset import ArrayDataset
from capsjax.errors import ConfigError
from capsjax.training.checkpoint import Checkpointer
from capsjax.training.config import (
    TrainConfig,
    check_augmentation,
    config_warnings,
    read_config,
    recorded_data_dir,
    validate,
)
from capsjax.training.datasets import load_sized_data
from capsjax.training.distributed import is_primary
from capsjax.training.state import abstract_model
from capsjax.training.weights import fitting_params, read_teachers
from capsjax.training.workdir import claim_workdir, finished_summary

log = logging.getLogger("capsjax")

Teacher = tuple[nnx.GraphDef, nnx.State]


@dataclasses.dataclass(frozen=True)
class PreparedRun:
    """Everything a run needs, checked: what :func:`capsjax.training.loop.run_training` runs.

    Attributes:
      config: the config, sized to the data and validated.
      workdir: the claimed work directory.
      train_set, test_set: the data.
      data_dir: the folder the data came from (recorded in ``config.json`` for eval and --resume).
      class_names: label k's name, for data that has names.
      resume_step: the checkpoint step the run continues from; None for a new run.
      init_params: the variables of ``config.init_weights`` fitted to the model; None otherwise.
      teachers: ``(graph, params)`` of each of ``config.teachers``.
      primary: this process writes the run's files (process 0 of a distributed run).
      finished: the summary of a finished run that was resumed (nothing is left to do); else None.
    """

    config: TrainConfig
    workdir: pathlib.Path
    train_set: ArrayDataset
    test_set: ArrayDataset
    data_dir: str | None
    class_names: tuple[str, ...] | None
    primary: bool
    resume_step: int | None = None
    init_params: nnx.State | None = None
    teachers: tuple[Teacher, ...] = ()
    finished: dict | None = None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_set) // self.config.batch_size

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs


def _data_folder(train_set: ArrayDataset, data_dir) -> str | None:
    """Where the data came from, as recorded for eval and --resume: its folder, or the folder given."""
    source = pathlib.Path(train_set.source)
    folder = source if source.is_dir() else (pathlib.Path(data_dir) if data_dir else None)
    return str(folder.absolute()) if folder else None


def _check_resumed_data(config: TrainConfig, recorded: TrainConfig, workdir: pathlib.Path) -> None:
    """Refuse to continue a run on other data than it trained on (``config.data``)."""
    changed = [
        f.name
        for f in dataclasses.fields(config.data)
        if getattr(config.data, f.name) != getattr(recorded.data, f.name)
    ]
    if changed:
        field = changed[0]
        raise ConfigError(
            f"--resume {workdir}: the run trained with config.data.{field} = {getattr(recorded.data, field)!r}, "
            f"not {getattr(config.data, field)!r}; continue on the run's data, or train into a new --workdir"
        )


def _check_resumed_folder(run_folder: str | None, recorded_folder: str | None, workdir: pathlib.Path) -> None:
    """Refuse to continue a run on data found in another folder than the one it recorded."""
    if run_folder is not None and recorded_folder is not None and run_folder != recorded_folder:
        raise ConfigError(
            f"--resume {workdir}: the run trained on data from {recorded_folder}, not {run_folder}; leave out "
            "--data-dir (the recorded folder is used), or train into a new --workdir"
        )


def _resumed_config(workdir: pathlib.Path, config: TrainConfig) -> tuple[TrainConfig | None, str | None]:
    """``(config, data folder)`` recorded by the run in ``workdir``; ``(None, None)`` where none ran."""
    path = workdir / "config.json"
    if not path.is_file():
        return None, None
    recorded = read_config(path)
    _check_resumed_data(config, recorded, workdir)
    return recorded, recorded_data_dir(path)


def _check_start(config: TrainConfig, recorded: TrainConfig | None, resume_step: int | None, workdir) -> None:
    """A continued run keeps the initial weights it started from (--init-weights starts a new run only)."""
    if resume_step is not None and recorded is not None and config.init_weights != recorded.init_weights:
        raise ConfigError(
            f"{workdir} already holds a checkpoint (step {resume_step}) of a run started from "
            f"{recorded.init_weights or 'a random initialisation'}: --init-weights only starts a new run"
        )
    if config.init_weights and resume_step is None and not pathlib.Path(config.init_weights).is_file():
        raise ConfigError(f"config.init_weights = {config.init_weights!r}: no such file")


def _load_sized(config: TrainConfig, data_dir) -> tuple[TrainConfig, ArrayDataset, ArrayDataset]:
    """The data, and ``config`` sized to it and checked whole (every rule, once)."""
    config, train_set, test_set = load_sized_data(config, data_dir)
    config = validate(config)
    check_augmentation(config, test_set.images.shape[1:], has_targets=train_set.targets is not None)
    if len(train_set) < config.batch_size:
        raise ConfigError(
            f"config.batch_size = {config.batch_size}: larger than the training set ({len(train_set)} images)"
        )
    for warning in config_warnings(config):
        log.warning("%s", warning)
    return config, train_set, test_set


def _prepare(config: TrainConfig, workdir: pathlib.Path, *, data_dir, resume: bool, primary: bool) -> PreparedRun:
    validate(config)  # the fields the data does not decide: fail before loading anything
    latest, recorded, recorded_folder = None, None, None
    if resume:
        with Checkpointer(workdir) as checkpointer:
            latest = checkpointer.latest_step()
        recorded, recorded_folder = _resumed_config(workdir, config)
    _check_start(config, recorded, latest, workdir)
    data_dir = recorded_folder if data_dir is None else data_dir
    config, train_set, test_set = _load_sized(config, data_dir)
    data_folder = _data_folder(train_set, data_dir)
    _check_resumed_folder(data_folder, recorded_folder, workdir)
    graphdef, state_shapes = abstract_model(config)
    run = PreparedRun(
        config, workdir, train_set, test_set, data_dir=data_folder, class_names=train_set.class_names, primary=primary
    )
    if latest is not None:
        with Checkpointer(workdir) as checkpointer:
            latest = checkpointer.check_compatible(state_shapes)  # the newest readable one
        finished = finished_summary(workdir, latest, run.total_steps)
        return dataclasses.replace(run, resume_step=latest, finished=finished)
    init_params = None
    if config.init_weights:
        init_params = fitting_params(config.init_weights, state_shapes.params, model=config.model)
        log.info("starting from the weights in %s", config.init_weights)
    teachers = read_teachers(config, graphdef, state_shapes.params)
    return dataclasses.replace(run, init_params=init_params, teachers=teachers)


@contextlib.contextmanager
def prepare_run(
    config: TrainConfig, workdir: str | pathlib.Path, *, data_dir=None, resume: bool = False
) -> Iterator[PreparedRun]:
    """Claim ``workdir`` and check the whole run; yields the :class:`PreparedRun`, holding the claim.

    Args:
      config: the run's config (its model is sized to the data here).
      workdir: the run's folder (created; a new run needs one without another run's files).
      data_dir: a folder of data files (it must exist); None: the recorded folder of a resumed run,
        or else where :func:`capsjax.data.sources.load_dataset` looks.
      resume: continue the run in ``workdir`` from its latest checkpoint.

    Raises:
      CapsjaxError: one line, before anything is written (a ConfigError, DataError, WeightsError or
        WorkdirError naming the field, file or folder).
    """
    primary = is_primary()
    with claim_workdir(workdir, resume=resume, exclusive=primary) as claimed:
        yield _prepare(config, claimed, data_dir=data_dir, resume=resume, primary=primary)


def teachers_of(run: PreparedRun, replicate) -> Sequence[Teacher]:
    """The run's teachers with their parameters placed by ``replicate`` (e.g. ``Sharding.replicated``)."""
    return [(graph, replicate(params)) for graph, params in run.teachers]


__all__ = ["PreparedRun", "prepare_run", "teachers_of"]
