"""A small, fast CapsNet on 6,000 MNIST training images: the end-to-end check.

Recipe: ``smoke_capsnet`` in recipes.py (64 conv channels, 8 primary capsule types, 3 epochs of batch 64).

Command:  capsjax train --config experiments/configs/smoke.py --workdir runs/smoke --data-dir DIR
Expected: >= 95% test accuracy on the first 1,000 test images, in about a minute on 2 CPU cores.
It writes the same work-directory contents as a full run.
"""

import pathlib
import runpy

from capsjax.training.config import TrainConfig

RECIPES = runpy.run_path(str(pathlib.Path(__file__).with_name("recipes.py")))


def get_config() -> TrainConfig:
    return RECIPES["smoke_capsnet"]()
