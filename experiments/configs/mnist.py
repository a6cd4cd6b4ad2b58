"""The paper's CapsNet on MNIST (Sabour et al. 2017): 3 routing iterations, reconstruction loss.

Command:  make install train   (or: capsjax train --config experiments/configs/mnist.py --workdir runs/mnist)
Expected: >= 99.0% test accuracy after 1 epoch (see README for the measured figure); the paper
reports 99.75% (0.25% error) after full training.
"""

from capsjax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=128)
