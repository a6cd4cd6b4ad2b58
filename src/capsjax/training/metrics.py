"""One writer for metrics: JSON lines (``metrics.jsonl``) and TensorBoard event files."""

from __future__ import annotations

import json
import pathlib
import time

import numpy as np


class MetricWriter:
    """Writes scalar metrics per step to ``workdir/metrics.jsonl`` and ``workdir/tensorboard/``."""

    def __init__(self, workdir: str | pathlib.Path):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.workdir / "metrics.jsonl", "a", buffering=1)
        try:
            from tensorboardX import SummaryWriter

            self._tensorboard = SummaryWriter(str(self.workdir / "tensorboard"))
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
