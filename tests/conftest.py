import pathlib

import jax
import pytest

# Silent broadcasting between arrays of different rank is a bug in capsule math: make it raise.
jax.config.update("jax_numpy_rank_promotion", "raise")

MNIST_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture
def x64():
    """Run a test in float64 (for jax.test_util.check_grads)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="session")
def mnist_dir():
    """The real MNIST IDX files beside the checkout; skip (visibly) where they are absent."""
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {MNIST_DIR}")
    return MNIST_DIR
