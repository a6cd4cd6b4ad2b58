"""The data a run's config asks for: one place that turns ``config.data`` into splits, and sizes the
model to them."""

from __future__ import annotations

import dataclasses
import logging

from capsjax.data.dataset import ArrayDataset
from capsjax.data.registry import load_split
from capsjax.errors import ConfigError
from capsjax.nn.registry import MODELS
from capsjax.training.config import TrainConfig

log = logging.getLogger("capsjax")


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


def load_sized_data(config: TrainConfig, data_dir=None) -> tuple[TrainConfig, ArrayDataset, ArrayDataset]:
    """``(config sized to the data, train split, test split)`` (see :func:`size_model_to_data`)."""
    train_set, test_set = load_data_split(config, "train", data_dir), load_data_split(config, "test", data_dir)
    return size_model_to_data(config, train_set, test_set), train_set, test_set


def size_model_to_data(config: TrainConfig, train_set: ArrayDataset, test_set: ArrayDataset) -> TrainConfig:
    """``config`` with every model's ``image_shape`` and ``num_classes`` taken from the data: the
    test images' shape (training crops to it), and the number of class names the dataset has, or
    else its largest label + 1. The sized config is validated afterwards, by :func:`prepare_run`.

    Raises:
      ConfigError: the train and test images differ in size, or a label exceeds the classes.
    """
    shape = tuple(int(d) for d in test_set.images.shape[1:])  # what the model sees (train crops to it)
    train_shape = tuple(int(d) for d in train_set.images.shape[1:])
    crop = config.data.crop
    expected = (crop, crop, shape[2]) if crop and train_shape[0] > crop else train_shape
    if expected != shape:
        raise ConfigError(f"{train_set.source}: the train images are {train_shape} but the test images {shape}")
    largest = int(max(train_set.labels.max(initial=0), test_set.labels.max(initial=0)))
    num_classes = len(train_set.class_names) if train_set.class_names else largest + 1
    if num_classes < 2:
        raise ConfigError(f"{train_set.source}: holds one class; a classifier needs images of at least two")
    if largest >= num_classes:
        raise ConfigError(f"{train_set.source}: label {largest} out of range for the dataset's {num_classes} classes")
    sized = {
        name: dataclasses.replace(getattr(config, name), image_shape=shape, num_classes=num_classes)
        for name in MODELS  # every model's config field is named as the model
    }
    if sized[config.model] != getattr(config, config.model):  # the model that trains, not the others
        log.info("model sized to the data: images %s, %d classes", shape, num_classes)
    return dataclasses.replace(config, **sized)
