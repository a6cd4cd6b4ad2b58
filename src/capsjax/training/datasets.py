"""The data a run's config asks for: one place that turns ``config.data`` into a split."""

from __future__ import annotations

from capsjax.data.dataset import ArrayDataset
from capsjax.data.registry import load_split
from capsjax.training.config import TrainConfig


def load_data_split(config: TrainConfig, split: str, data_dir=None) -> ArrayDataset:
    """One split as ``config.data`` asks (see :func:`capsjax.data.registry.load_split`)."""
    data = config.data
    return load_split(
        data.name,
        split,
        data_dir=data_dir,
        num_examples=data.train_examples if split == "train" else data.test_examples,
        canvas=data.canvas,
        path=data.path,
        test_fraction=data.test_fraction,
        seed=config.seed,
        resize=data.resize,
        crop=data.crop,
    )
