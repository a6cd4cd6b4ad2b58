"""The trained weights committed under weights/: small, float32 when loaded, the very file their
report measured, a trained model on the real test images its config names, and trained by the
recipe of a config file under experiments/configs."""

import hashlib
import json
import pathlib
import runpy

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import capsjax
from capsjax.data.sources import SYSTEM_DIR
from capsjax.nn.registry import MODELS
from capsjax.training.config import TrainConfig, load_config_file, to_dict
from capsjax.training.datasets import load_data_split
from capsjax.training.evaluation import evaluate_weights
from capsjax.training.weights import read_weights

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "weights").glob("*.msgpack"))
CONFIGS = ROOT / "experiments" / "configs"
MAX_BYTES = 20 * 1024 * 1024
# Test images checked per dataset: MNIST's first 1,000 (a few seconds for the paper's CapsNet on 2
# cores); all of the others, whose first 1,000 are not known to be easier than the rest.
CHECKED_IMAGES = {"mnist": 1000}


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


def real_test_folder(dataset: str, request) -> pathlib.Path:
    """The folder of ``dataset``'s real test files on this machine; skip (visibly) where they are absent."""
    if dataset == "mnist":
        return request.getfixturevalue("real_mnist_dir")
    # The system folder the library also reads (Debian's dataset-fashion-mnist installs there).
    for folder in (SYSTEM_DIR / dataset, SYSTEM_DIR / dataset.replace("_", "-")):
        if folder.is_dir():
            return folder
    pytest.skip(f"the real {dataset} test set is not on this machine")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_file_classifies_real_test_images_as_its_report_says(path, request):
    report = report_of(path)
    config = read_weights(path).config
    folder = real_test_folder(config.data.name, request)
    test = load_data_split(config, "test", folder)
    assert pathlib.Path(test.source).resolve() == folder.resolve()  # the real files, not a fallback
    checked = CHECKED_IMAGES.get(config.data.name, len(test))
    accuracy = evaluate_weights(path, dataset=test.take(checked))["accuracy"]
    # The report's accuracy on all 10,000 images, less 5 images in those checked (MNIST's first 1,000
    # are among the cleaner half): an untrained or wrongly rounded file fails by far more.
    assert accuracy >= report["test_accuracy_from_weights"] - 5 / checked


# Each shipped file, the config file that trained it and that file's recipe in recipes.py.
RECIPES = {
    "capsnet_mnist.msgpack": ("mnist_paper_long.py", "shipped_mnist_capsnet"),
    "efficient_capsnet_mnist.msgpack": ("efficient_capsnet_augmented.py", "efficient_capsnet_mnist_augmented"),
    "efficient_capsnet_fashion_mnist.msgpack": (
        "fashion_mnist_efficient_capsnet.py",
        "fashion_mnist_efficient_capsnet",
    ),
}


def fields_that_train(config: TrainConfig) -> dict:
    """``config`` as a dict without the groups of the models it does not train (their defaults may move)."""
    unused = set(MODELS) - {config.model}
    return {name: value for name, value in to_dict(config).items() if name not in unused}


def test_every_shipped_file_has_a_recipe():
    assert sorted(RECIPES) == [path.name for path in SHIPPED]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_file_was_trained_with_its_config_files_recipe(path):
    """The config stored in a shipped file is what its config file and recipe give today, so that
    the command in that config file's docstring retrains it."""
    config_file, recipe = RECIPES[path.name]
    expected = load_config_file(CONFIGS / config_file)
    assert runpy.run_path(str(CONFIGS / "recipes.py"))[recipe]() == expected
    assert fields_that_train(read_weights(path).config) == fields_that_train(expected)
