"""The paper's CIFAR-10 CapsNet (Sabour et al. 2017, sec. 7): 64 primary capsule types, leaky routing
(an orphan "none of the above" logit), trained on random 24x24 crops and tested on the centre crop.

Recipe: ``cifar10_capsnet`` in recipes.py (1 epoch of batch 128).

Command:  capsjax train --config experiments/configs/cifar10.py --workdir runs/cifar10
          (downloads cifar-10-python.tar.gz on first use; or --data-dir DIR holding cifar-10-batches-py)
Expected: not measured here (CIFAR-10 is not reachable from this machine); the paper reports 10.6%
test error for a 7-model ensemble after full training. The model is sized to the data: 24x24x3
images, 10 classes, a 4x4x64 grid of primary capsules (1,024).
"""

import pathlib
import runpy

from capsjax.training.config import TrainConfig

RECIPES = runpy.run_path(str(pathlib.Path(__file__).with_name("recipes.py")))


def get_config() -> TrainConfig:
    return RECIPES["cifar10_capsnet"]()
