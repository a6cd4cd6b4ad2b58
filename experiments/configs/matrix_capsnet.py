"""The smaller matrix capsule network with EM routing (Hinton, Sabour, Frosst 2018) on smallNORB.

Recipe: ``matrix_capsnet_smallnorb`` in recipes.py. A=64, B=8, C=D=16 (67,154 parameters at 32x32x1,
5 classes), 3 EM iterations, trained with the spread loss whose margin grows from 0.2 to 0.9 over the
first 5,000 steps (of about 7,600: 10 epochs of smallNORB's 24,300 training images); no decoder. The
smallNORB recipe of ``smallnorb.py``: images resized from 96x96 to 48x48, random 32x32 crops for
training, the centre crop for testing, no extra shifts.

Command:  capsjax train --config experiments/configs/matrix_capsnet.py --workdir runs/matrix_capsnet --data PATH
          (PATH: the folder with the smallNORB ``.mat`` files, as for smallnorb.py)
Expected: not measured here (the data is not reachable from this machine); the paper reports 1.8%
test error for its larger network (A=B=C=D=32, ``--config.matrix_capsnet`` sizes of the "paper"
preset) after full training.
"""

import pathlib
import runpy

from capsjax.training.config import TrainConfig

RECIPES = runpy.run_path(str(pathlib.Path(__file__).with_name("recipes.py")))


def get_config() -> TrainConfig:
    return RECIPES["matrix_capsnet_smallnorb"]()
