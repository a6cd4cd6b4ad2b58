"""The paper's SVHN CapsNet (Sabour et al. 2017, sec. 7): 64 primary capsule types on 32x32 colour digits.

Recipe: ``svhn_capsnet`` in recipes.py (1 epoch of batch 128).

Command:  capsjax train --config experiments/configs/svhn.py --workdir runs/svhn --data DIR
          (DIR holds train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/)
Expected: not measured here (SVHN is not reachable from this machine); the paper reports 4.3% test
error after full training. The model is sized to the data: 32x32x3 images, 10 classes.
"""

import pathlib
import runpy

from capsjax.training.config import TrainConfig

RECIPES = runpy.run_path(str(pathlib.Path(__file__).with_name("recipes.py")))


def get_config() -> TrainConfig:
    return RECIPES["svhn_capsnet"]()
