"""The paper's CapsNet on smallNORB with the paper's preprocessing (Sabour et al. 2017, sec. 7).

Recipe: ``smallnorb_capsnet`` in recipes.py (1 epoch of batch 128). Images are resized from 96x96 to
48x48; training sees random 32x32 crops, testing the centre 32x32 crop; no extra shifts. The network
is sized to the data (32x32x1 images, 5 classes).

Command:  capsjax train --config experiments/configs/smallnorb.py --workdir runs/smallnorb --data PATH
          (PATH: the folder with the six smallnorb-5x46789x9x18x6x2x96x96-{training,testing}-{dat,cat,info}.mat
          files from https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/, gunzipped or not)
Expected: not measured here (the data is not reachable from this machine); the paper reports
2.7% test error after full training.
"""

import pathlib
import runpy

from capsjax.training.config import TrainConfig

RECIPES = runpy.run_path(str(pathlib.Path(__file__).with_name("recipes.py")))


def get_config() -> TrainConfig:
    return RECIPES["smallnorb_capsnet"]()
