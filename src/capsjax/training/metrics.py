"""One writer for metrics: JSON lines (``metrics.jsonl``) and TensorBoard event files."""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np


class MetricWriter:
    """Writes scalar metrics per step to ``workdir/metrics.jsonl`` and ``workdir/tensorboard/``."""

    def __init__(self, workdir: str | pathlib.Path, *, resume_step: int | None = None):
        """``resume_step``: a run continues from this step; records of later steps (logged before a
        crash, and about to be logged again) are dropped, so each step keeps one record."""
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "metrics.jsonl"
        if resume_step is not None and path.exists():
            kept = [r for r in read_metrics(path) if r["step"] <= resume_step]
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            tmp.replace(path)  # atomic
        self._jsonl = open(path, "a", buffering=1)
        try:
            from tensorboardX import SummaryWriter

            purge = {} if resume_step is None else {"purge_step": resume_step + 1}
            self._tensorboard = SummaryWriter(str(self.workdir / "tensorboard"), **purge)
        except ImportError:  # TensorBoard logging is optional
            self._tensorboard = None

    def write_scalars(self, step: int, scalars: dict, *, prefix: str = "") -> None:
        values = {f"{prefix}{k}": float(np.asarray(v)) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **values}) + "\n")
        if self._tensorboard is not None:
            for name, value in values.items():
                self._tensorboard.add_scalar(name, value, int(step))

    def flush(self) -> None:
        self._jsonl.flush()
        if self._tensorboard is not None:
            self._tensorboard.flush()

    def close(self) -> None:
        self.flush()
        self._jsonl.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_metrics(path: str | pathlib.Path) -> list[dict]:
    """All records of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]


class NoMetricWriter:
    """A :class:`MetricWriter` that writes nothing (the processes of a distributed run other than 0)."""

    def write_scalars(self, step: int, scalars: dict, *, prefix: str = "") -> None:
        del step, scalars, prefix

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
