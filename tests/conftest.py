import pathlib

import jax
import pytest

from helpers import write_fake_mnist

# Silent broadcasting between arrays of different rank is a bug in capsule math: make it raise.
jax.config.update("jax_numpy_rank_promotion", "raise")

MNIST_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(autouse=True)
def no_internet_downloads(tmp_path_factory, monkeypatch):
    """Tests never download from the internet: the dataset mirror is a closed port on 127.0.0.1 and the
    download cache an empty temporary folder (tests of the downloader serve files on 127.0.0.1)."""
    monkeypatch.setenv("CAPSJAX_DATASET_MIRROR", "http://127.0.0.1:9")
    cache = tmp_path_factory.mktemp("download_cache")
    monkeypatch.setattr("capsjax.data.download.DEFAULT_CACHE", cache)
    monkeypatch.setattr("capsjax.data.sources.DEFAULT_CACHE", cache)


@pytest.fixture
def x64():
    """Run a test in float64 (for jax.test_util.check_grads)."""
    with jax.enable_x64(True):
        yield


MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def real_mnist_present() -> bool:
    return all((MNIST_DIR / name).exists() for name in MNIST_FILES)


@pytest.fixture(scope="session")
def real_mnist_dir():
    """The real MNIST IDX files beside the checkout; skip (visibly) where they are absent.

    The tests that need the real files (their contents and checksums; the shipped weights' accuracy)
    use it: the documented skips of a fresh clone.
    """
    if not real_mnist_present():
        pytest.skip(f"real MNIST not found at {MNIST_DIR}")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """The real MNIST beside the checkout, or else a generated stand-in of 6,000 + 1,000 images in a
    folder named ``mnist`` (enough for every smoke budget; its classes are easy to learn)."""
    if real_mnist_present():
        return MNIST_DIR
    return write_fake_mnist(tmp_path_factory.mktemp("generated") / "mnist", train=6000, test=1000)
