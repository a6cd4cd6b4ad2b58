"""A run's bookkeeping: the step, skipped steps, examples per second, the latest test metrics, the summary."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import time
from typing import Any

import flax
import jax
import optax


@dataclasses.dataclass
class Ledger:
    """What the loop counts as it goes.

    Attributes:
      step: the last step dispatched.
      latest: the metrics of that step (possibly still being computed).
      skipped_steps: steps whose update was skipped for a non-finite loss (``on_nonfinite="skip"``).
      trained_examples, train_seconds: examples and seconds of the timed windows (compiling excluded).
      test_metrics: the latest evaluation on the test split.
    """

    step: int
    latest: Any = None
    skipped_steps: int = 0
    trained_examples: int = 0
    train_seconds: float = 0.0
    test_metrics: dict = dataclasses.field(default_factory=dict)
    _booked_step: int = -1
    _window_start: float = 0.0
    _window_steps: int = 0

    def __post_init__(self):
        self._booked_step = self.step

    def book(self, step: int, metrics, *, skip: bool) -> bool:
        """Account for finished step ``step`` once; False if it was not finite and not to be skipped."""
        if metrics is None or step <= self._booked_step:
            return True
        if bool(metrics["finite"]):
            self._booked_step = step
            return True
        if skip:
            self._booked_step = step
            self.skipped_steps += 1
            return True
        return False

    def advance(self) -> None:
        """One more step dispatched."""
        self.step += 1
        self._window_steps += 1

    def open_window(self) -> None:
        """Start timing the steps until the next :meth:`close_window`."""
        self._window_start, self._window_steps = time.perf_counter(), 0

    def close_window(self, metrics: dict, batch_size: int, log_every: int) -> dict:
        """``metrics`` with the window's ``examples_per_sec``; counts the window unless it held compiling."""
        elapsed = time.perf_counter() - self._window_start
        metrics = dict(metrics, examples_per_sec=self._window_steps * batch_size / elapsed)
        if self._window_steps >= 2 or self.step > log_every:  # the first window holds the compilation
            self.trained_examples += self._window_steps * batch_size
            self.train_seconds += elapsed
        self.open_window()
        return metrics


def versions() -> dict:
    """The versions of capsjax and its main libraries, and the devices used."""
    return {
        "capsjax": importlib.metadata.version("capsjax"),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "python": platform.python_version(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.local_devices()],
    }


def summarise(run, ledger: Ledger, wall_seconds: float) -> dict:
    """The run's ``summary.json`` record (``run``: the :class:`~capsjax.training.run.PreparedRun`)."""
    config, test = run.config, ledger.test_metrics
    return {
        "status": "interrupted" if ledger.step < run.total_steps else "completed",
        "model": config.model,
        "dataset": config.data.name,
        "data_source": run.train_set.source,
        "step": ledger.step,
        "epochs": ledger.step / run.steps_per_epoch,
        "train_examples": len(run.train_set),
        "test_accuracy": test.get("accuracy"),
        "test_error_percent": test.get("error_percent"),
        "test_examples": test.get("count"),
        "wall_time_sec": wall_seconds,
        "train_examples_per_sec": ledger.trained_examples / ledger.train_seconds if ledger.train_seconds else None,
        "skipped_steps": ledger.skipped_steps,
        "batch_size": config.batch_size,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "global_devices": jax.device_count(),
        "versions": versions(),
    }
