import os
import pathlib
import shutil
import tempfile

# One XLA compilation cache for the whole test run, made before jax is imported: the xdist workers
# and the subprocesses the tests start (CLI runs, experiment scripts) inherit the variable, so the
# many tests that train the same tiny network compile it once. Measured on 2 cores: tests/test_loop.py
# 247 s without it, 139 s with it. A cache hit returns the program XLA would compile (the key holds the
# program, the compile options, XLA_FLAGS and the jax version): nothing a test checks changes. A cache
# the caller names is kept; the one made here is removed when the run that made it ends.
_MADE_XLA_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _MADE_XLA_CACHE = tempfile.mkdtemp(prefix="capsjax-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _MADE_XLA_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

from helpers import write_fake_mnist  # noqa: E402

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


def pytest_unconfigure(config):
    if _MADE_XLA_CACHE is not None:
        shutil.rmtree(_MADE_XLA_CACHE, ignore_errors=True)
