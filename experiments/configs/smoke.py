"""A small, fast CapsNet on 5,000 MNIST training images: the end-to-end check.

Command:  capsjax train --config experiments/configs/smoke.py --workdir runs/smoke --data-dir DIR
Expected: >= 95% test accuracy on the first 1,000 test images, in about a minute on 2 CPU cores.
It writes the same work-directory contents as a full run.
"""

from capsjax.nn import CapsNetConfig
from capsjax.training.config import DataConfig, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        capsnet=CapsNetConfig(conv_channels=64, primary_types=8, decoder_hidden=(128, 256)),
        data=DataConfig(train_examples=6000, test_examples=1000),
        optim=OptimConfig(learning_rate=3e-3, decay_steps=100, decay_rate=0.9),
        batch_size=64,
        epochs=3,
        checkpoint_every_steps=100,
        log_every_steps=10,
    )
