"""Efficient-CapsNet on Fashion-MNIST: the recipe of weights/efficient_capsnet_fashion_mnist.msgpack.

Recipe: ``fashion_mnist_efficient_capsnet`` in recipes.py: the network, loss and schedule of
``efficient_capsnet.py`` (30 epochs at batch 64, Adam 5e-4 x0.97 per epoch) on Fashion-MNIST with
+-2 px shifts and left-right flips, the augmentation every model of experiments/fashion_mnist.py shares.

Command:  apt-get install dataset-fashion-mnist   # files land in /usr/share/datasets/fashion-mnist/
          capsjax train --config experiments/configs/fashion_mnist_efficient_capsnet.py \\
              --workdir runs/fashion_mnist_efficient_capsnet
Expected: about 92.5% test accuracy. Measured, seed 0 on a 2-core CPU: 92.57% at the last epoch, the
same from the exported bfloat16 weights (weights/efficient_capsnet_fashion_mnist.msgpack); 90% first
at epoch 6, 92% at epoch 14; 2.5 hours of training while other work shared the CPU.
"""

import pathlib
import runpy

from capsjax.training.config import TrainConfig

RECIPES = runpy.run_path(str(pathlib.Path(__file__).with_name("recipes.py")))


def get_config() -> TrainConfig:
    return RECIPES["fashion_mnist_efficient_capsnet"]()
