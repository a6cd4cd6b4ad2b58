"""A run's test error through training, against epochs and against training time, from ``metrics.jsonl``.

Training time is measured from the records' wall-clock stamps, without the time a run spent stopped:
a long run is interrupted (the machine is shut down, the process is paused, a crash) and resumed, so the
interval between two records that spans such a stop (longer than ``gap_seconds``) is replaced by the
run's typical interval between records (their median).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure


class ErrorPoint(NamedTuple):
    """One evaluation of a run on its test split."""

    step: int
    epoch: float
    error_percent: float
    hours: float  # training time up to this evaluation, interruptions left out


def _intervals(records: Sequence[dict], gap_seconds: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Seconds between consecutive records (sorted by step, then time) ``[n - 1]``, which of them are
    stops (longer than ``gap_seconds``), and the typical interval (the median of the others)."""
    intervals = np.diff(np.array([r["time"] for r in records], float))
    stops = intervals > gap_seconds
    typical = float(np.median(intervals[~stops])) if np.any(~stops) else 0.0
    return intervals, stops, typical


def training_hours(records: Sequence[dict], *, gap_seconds: float = 300.0) -> dict[int, float]:
    """Training time in hours at each record's step (the first record's interval is counted twice:
    the time before it, compilation included, is taken to be one more interval like it)."""
    records = sorted(records, key=lambda r: (r["step"], r["time"]))
    if len(records) < 2:
        return {r["step"]: 0.0 for r in records}
    intervals, stops, typical = _intervals(records, gap_seconds)
    intervals = np.where(stops, typical, intervals)
    elapsed = np.concatenate([[intervals[0]], intervals[0] + np.cumsum(intervals)])
    return {r["step"]: float(seconds) / 3600.0 for r, seconds in zip(records, elapsed, strict=True)}


class Interruptions(NamedTuple):
    """The stops :func:`training_hours` leaves out of a run's training time."""

    count: int
    hours: float  # the stops' length, minus the typical interval each is replaced by
    elapsed_hours: float  # first to last record, stops included


def interruptions(records: Sequence[dict], *, gap_seconds: float = 300.0) -> Interruptions:
    """How often and for how long a run was stopped: intervals between consecutive records (in step
    order) longer than ``gap_seconds``."""
    records = sorted(records, key=lambda r: (r["step"], r["time"]))
    if len(records) < 2:
        return Interruptions(0, 0.0, 0.0)
    intervals, stops, typical = _intervals(records, gap_seconds)
    elapsed = float(max(r["time"] for r in records) - min(r["time"] for r in records)) / 3600.0
    return Interruptions(int(stops.sum()), float(np.sum(intervals[stops] - typical)) / 3600.0, elapsed)


def error_curve(records: Sequence[dict], *, steps_per_epoch: int, gap_seconds: float = 300.0) -> list[ErrorPoint]:
    """The test evaluations of a run's metric records, in step order (the last one of a step that was
    evaluated twice, e.g. before and after a resume)."""
    hours = training_hours(records, gap_seconds=gap_seconds)
    tests = {r["step"]: r for r in records if "test/error_percent" in r}
    return [
        ErrorPoint(step, step / steps_per_epoch, float(tests[step]["test/error_percent"]), hours[step])
        for step in sorted(tests)
    ]


def continued_curve(curves: Sequence[Sequence[ErrorPoint]]) -> list[ErrorPoint]:
    """One curve of runs that continued each other (each started from the weights the one before it
    ended with, ``capsjax train --init-weights``): each run's steps, epochs and hours counted on from
    where the run before it ended."""
    joined: list[ErrorPoint] = []
    for curve in curves:
        last = joined[-1] if joined else ErrorPoint(0, 0.0, 0.0, 0.0)
        joined += [
            ErrorPoint(last.step + p.step, last.epoch + p.epoch, p.error_percent, last.hours + p.hours) for p in curve
        ]
    return joined


def time_to_accuracy(curve: Sequence[ErrorPoint], accuracies_percent: Sequence[float]) -> dict[str, ErrorPoint | None]:
    """The first evaluation reaching each test accuracy (in percent), or None where none did."""
    return {
        f"{accuracy:g}": next((p for p in curve if 100.0 - p.error_percent >= accuracy - 1e-9), None)
        for accuracy in accuracies_percent
    }


def plot_learning_curve(
    curve: Sequence[ErrorPoint],
    path: pathlib.Path,
    *,
    marks: Sequence[float] = (),
    restarts: Sequence[ErrorPoint] = (),
) -> pathlib.Path:
    """Two panels: test error (%, log scale) against epoch and against training hours; dotted lines
    at the test errors of the accuracies in ``marks`` (percent), dashed vertical lines at
    ``restarts`` (the last point of each run that a later run continued)."""
    return plot_learning_curves({"": curve}, path, marks=marks, restarts=restarts)


def plot_learning_curves(
    curves: Mapping[str, Sequence[ErrorPoint]],
    path: pathlib.Path,
    *,
    marks: Sequence[float] = (),
    restarts: Sequence[ErrorPoint] = (),
) -> pathlib.Path:
    """:func:`plot_learning_curve` for several runs: one line per label of ``curves`` (a legend unless
    the only label is empty), in both panels."""
    fig = learning_curves_figure(curves, marks=marks, restarts=restarts)
    fig.savefig(path, dpi=110)
    return path


def learning_curves_figure(
    curves: Mapping[str, Sequence[ErrorPoint]], *, marks: Sequence[float] = (), restarts: Sequence[ErrorPoint] = ()
) -> Figure:
    """The figure :func:`plot_learning_curves` writes."""
    fig = Figure(figsize=(10.0, 4.0))
    axes = fig.subplots(1, 2)
    for ax, x_of, label in (
        (axes[0], attrgetter("epoch"), "epoch"),
        (axes[1], attrgetter("hours"), "training time (hours, interruptions left out)"),
    ):
        for name, curve in curves.items():
            ax.plot([x_of(p) for p in curve], [p.error_percent for p in curve], marker="o", markersize=3, label=name)
        for point in restarts:
            ax.axvline(x_of(point), color="tab:red", linestyle="--", linewidth=1)
        right = max(x_of(p) for curve in curves.values() for p in curve)
        for accuracy in marks:
            ax.axhline(100.0 - accuracy, color="gray", linestyle=":", linewidth=1)
            ax.annotate(f"{accuracy:g}%", (right, 100.0 - accuracy), fontsize=7, color="gray", va="bottom", ha="right")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test error %")
        ax.grid(alpha=0.3, which="both")
        if any(curves):
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
