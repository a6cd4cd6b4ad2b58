"""The trained weights committed under weights/: small, float32 when loaded, the very file their
report measured, and a trained model on the real test images its config names."""

import hashlib
import json
import pathlib
import runpy
import subprocess

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


def _git_file(commit: str, path: str) -> bytes | None:
    """``path`` as ``commit`` holds it, or None without git or where the clone lacks the commit."""
    try:
        shown = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, check=False)
    except OSError:
        return None
    return shown.stdout if shown.returncode == 0 else None


def test_the_continued_paper_run_starts_from_the_50_epoch_weights(tmp_path):
    """experiments/configs/mnist_paper_continued.py continues the 50-epoch run: the file it names is
    the one its commit shipped (the SHA-256 it records), and its model fits that file exactly."""
    from capsjax.training.config import load_config_file
    from capsjax.training.state import init_state
    from capsjax.training.weights import fitting_params

    config_path = ROOT / "experiments" / "configs" / "mnist_paper_continued.py"
    namespace = runpy.run_path(str(config_path))
    config = load_config_file(config_path)
    assert pathlib.Path(config.init_weights) == ROOT / "runs" / "capsnet_mnist_50epochs.msgpack"
    stored = _git_file(namespace["STAGE_ONE_COMMIT"], "weights/capsnet_mnist.msgpack")
    if stored is None:
        pytest.skip("the 50-epoch weights' commit is not in this clone (shallow, or no git)")
    assert hashlib.sha256(stored).hexdigest() == namespace["STAGE_ONE_SHA256"]
    path = tmp_path / "capsnet_mnist_50epochs.msgpack"
    path.write_bytes(stored)
    params = fitting_params(str(path), init_state(config)[1].params, model=config.model)
    expected = jax.tree.leaves(nnx.to_pure_dict(read_weights(path).params))
    assert all(
        bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(nnx.to_pure_dict(params)), expected, strict=True)
    )
