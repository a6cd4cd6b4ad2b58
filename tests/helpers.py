"""Shared test helpers: tiny configs and synthetic IDX folders (for mechanism tests, not accuracy)."""

from __future__ import annotations

import pathlib

import numpy as np

from capsjax import CapsNetConfig
from capsjax.data.idx import write_idx
from capsjax.training.config import DataConfig, TrainConfig


def write_fake_mnist(folder: pathlib.Path, *, train: int = 256, test: int = 64, seed: int = 0) -> pathlib.Path:
    """Four IDX files of random 28x28 digits-like blobs whose class sets the blob's position."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for k, label in enumerate(labels):
            row, col = 4 + 2 * (label // 5) * 5, 4 + 4 * (label % 5)
            images[k, row : row + 8, col : col + 4] = 255
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def write_norb(path: pathlib.Path, array: np.ndarray, magic: int) -> None:
    """``array`` as a smallNORB matrix file: its magic number (0x1E3D4C55 bytes, 0x1E3D4C54 int32),
    rank, at least 3 dimensions, then the little-endian data."""
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.array([magic, array.ndim, *dims], "<i4")
    path.write_bytes(header.tobytes() + array.astype(array.dtype.newbyteorder("<")).tobytes())


def tiny_config(**overrides) -> TrainConfig:
    """A CapsNet small enough to train a few steps in seconds."""
    defaults = dict(
        capsnet=CapsNetConfig(conv_channels=16, primary_types=4, class_dim=8, decoder_hidden=(32,)),
        data=DataConfig(train_examples=None, test_examples=None),
        batch_size=32,
        eval_batch_size=64,
        epochs=2,
        checkpoint_every_steps=3,
        log_every_steps=2,
    )
    defaults.update(overrides)
    return TrainConfig(**defaults)


def assert_examples_independent(forward, images: np.ndarray, fields: tuple[str, ...], *, seed: int = 0) -> None:
    """vmap = a loop at the model level: example k of ``forward(images)`` (a ``ModelOutput``) keeps each
    of ``fields`` when every other example of the batch is replaced by random pixels.

    Compared at one batch shape: a batch of one rounds differently in float32.
    """
    images = np.asarray(images)
    rng = np.random.default_rng(seed)
    batch = forward(images)
    for k in range(len(images)):
        others = rng.random(images.shape).astype(images.dtype)
        others[k] = images[k]
        again = forward(others)
        for field in fields:
            np.testing.assert_allclose(
                getattr(batch, field)[k], getattr(again, field)[k], rtol=1e-6, atol=1e-7, err_msg=field
            )
        assert np.abs(np.asarray(batch.scores) - np.asarray(again.scores)).max() > 1e-4  # the others did change
