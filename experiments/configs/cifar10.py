"""The paper's CIFAR-10 CapsNet (Sabour et al. 2017, sec. 7): 64 primary capsule types, leaky routing
(an orphan "none of the above" logit), trained on random 24x24 crops and tested on the centre crop.

Command:  capsjax train --config experiments/configs/cifar10.py --workdir runs/cifar10
          (downloads cifar-10-python.tar.gz on first use; or --data-dir DIR holding cifar-10-batches-py)
Expected: not measured here (CIFAR-10 is not reachable from this machine); the paper reports 10.6%
test error for a 7-model ensemble after full training. The model is sized to the data: 24x24x3
images, 10 classes, an 8x8x64 grid of primary capsules.
"""

import dataclasses

from capsjax.nn import CapsNetConfig, RoutingConfig
from capsjax.training.config import DataConfig, TrainConfig


def get_config() -> TrainConfig:
    capsnet = CapsNetConfig(primary_types=64, routing=RoutingConfig(leaky=True))
    return dataclasses.replace(
        TrainConfig(epochs=1, batch_size=128), capsnet=capsnet, data=DataConfig(name="cifar10", crop=24, max_shift=0)
    )
