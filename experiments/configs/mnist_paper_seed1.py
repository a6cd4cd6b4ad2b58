"""The paper's CapsNet on MNIST, ninth attempt: the eighth with another seed.

Written after the eighth attempt (mnist_paper_long.py) ended at 99.64% from its bfloat16 file,
one test image short of issue 15's 99.65%. The seventh and eighth attempts, which differ only in
schedule length, both settled at 99.61-99.65% from their 18th epoch on. This run changes nothing
but ``seed`` (0 -> 1: other initial weights, another shuffle order and other shifts), to measure
whether that plateau is the level of this recipe or one draw from a spread around it. About 2.1-2.4
hours of training here, so it fits one 3-hour session.

Decided before training: the reported model is the last checkpoint's parameter average (the test
set picks nothing), and it replaces the shipped file only if its exported file scores higher.

Command:  nohup capsjax train --config experiments/configs/mnist_paper_seed1.py \\
              --workdir runs/mnist_paper_seed1 --data-dir ../shared/data \\
              > runs/mnist_paper_seed1.log 2>&1 &
          capsjax train --workdir runs/mnist_paper_seed1 --resume     # after an interruption
Report:   capsjax export --workdir runs/mnist_paper_seed1 --output weights/capsnet_mnist.msgpack
          python experiments/paper_accuracy.py --workdir runs/mnist_paper_seed1 \\
              --weights weights/capsnet_mnist.msgpack --data-dir ../shared/data
Expected: 99.60-99.66% at the last epoch; about 2.1-2.4 hours of training on a 2-core CPU.
"""

import dataclasses
import pathlib

from capsjax.training.config import TrainConfig, load_config_file

SEED = 1


def get_config() -> TrainConfig:
    config = load_config_file(pathlib.Path(__file__).with_name("mnist_paper_long.py"))
    return dataclasses.replace(config, seed=SEED)
