"""The paper's SVHN CapsNet (Sabour et al. 2017, sec. 7): 64 primary capsule types on 32x32 colour digits.

Command:  capsjax train --config experiments/configs/svhn.py --workdir runs/svhn --data DIR
          (DIR holds train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/)
Expected: not measured here (SVHN is not reachable from this machine); the paper reports 4.3% test
error after full training. The model is sized to the data: 32x32x3 images, 10 classes.
"""

import dataclasses

from capsjax.nn import CapsNetConfig
from capsjax.training.config import TrainConfig


def get_config() -> TrainConfig:
    return dataclasses.replace(TrainConfig(epochs=1, batch_size=128), capsnet=CapsNetConfig(primary_types=64))
