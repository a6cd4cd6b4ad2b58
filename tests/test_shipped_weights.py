"""The trained weights committed under weights/: small, float32 when loaded, the very file their
report measured, and a trained model on the real test images its config names."""

import hashlib
import json
import pathlib

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import capsjax
from capsjax.training.datasets import load_data_split
from capsjax.training.evaluation import evaluate_weights
from capsjax.training.weights import read_weights

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "weights").glob("*.msgpack"))
MAX_BYTES = 20 * 1024 * 1024
CHECKED_IMAGES = 1000  # of the test split: a few seconds for the paper's CapsNet on 2 cores


def report_of(path: pathlib.Path) -> dict:
    """The one experiments/figures/*/*.json report whose ``weights`` field names ``path``."""
    reports = []
    for candidate in sorted((ROOT / "experiments" / "figures").glob("*/*.json")):
        record = json.loads(candidate.read_text())
        if isinstance(record, dict) and "weights" in record and (ROOT / record["weights"]).resolve() == path:
            reports.append(record)
    assert len(reports) == 1, f"{len(reports)} reports under experiments/figures name {path.relative_to(ROOT)}"
    return reports[0]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_file_is_small_loads_as_float32_and_is_the_one_reported(path):
    assert path.stat().st_size <= MAX_BYTES
    report = report_of(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == report["weights_sha256"]
    assert path.stat().st_size == report["weights_bytes"]
    model = capsjax.load_weights(path)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert leaves and all(leaf.dtype == jnp.float32 for leaf in leaves)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_file_classifies_real_test_images_as_its_report_says(path, real_mnist_dir):
    report = report_of(path)
    config = read_weights(path).config
    if config.data.name != "mnist":
        pytest.skip(f"{path.name}: its test set ({config.data.name}) is not beside the checkout")
    test = load_data_split(config, "test", real_mnist_dir)
    assert pathlib.Path(test.source).resolve() == real_mnist_dir.resolve()  # the real files, not a fallback
    accuracy = evaluate_weights(path, dataset=test.take(CHECKED_IMAGES))["accuracy"]
    # The report's accuracy on all 10,000 images, less 5 images in these 1,000 (the first 1,000 are
    # among the cleaner half): an untrained or wrongly rounded file fails by far more.
    assert accuracy >= report["test_accuracy_from_weights"] - 5 / CHECKED_IMAGES


@pytest.mark.skipif(not (ROOT / "weights" / "capsnet_mnist.msgpack").exists(), reason="no shipped CapsNet weights")
def test_the_continued_paper_run_starts_from_the_shipped_weights():
    """experiments/configs/mnist_paper_continued.py continues the shipped 50-epoch weights: it names
    them, and its model fits them exactly."""
    from capsjax.training.config import load_config_file
    from capsjax.training.state import init_state
    from capsjax.training.weights import fitting_params

    path = ROOT / "weights" / "capsnet_mnist.msgpack"
    config = load_config_file(ROOT / "experiments" / "configs" / "mnist_paper_continued.py")
    assert pathlib.Path(config.init_weights) == path
    params = fitting_params(config.init_weights, init_state(config)[1].params, model=config.model)
    stored = jax.tree.leaves(nnx.to_pure_dict(read_weights(path).params))
    assert all(
        bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(nnx.to_pure_dict(params)), stored, strict=True)
    )
