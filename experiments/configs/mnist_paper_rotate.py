"""The paper's CapsNet on MNIST, tenth attempt: the eighth with small random rotations.

Written after the ninth attempt (mnist_paper_seed1.py, the eighth with seed 1) ended at 99.59%,
five test images below the eighth's 99.64%: with this recipe the seed alone moves the end by
0.05 points, so a better recipe, not another seed, is needed for issue 15's 99.65%. Both runs
peaked near their 20th epoch and then slipped back by 0.01-0.03 points while the training loss
kept falling, which is what a network of 8.2 million weights does when the training images say
no more. The guess tested here: more varied training images. Each training image is, with
probability one half, rotated about its centre by an angle with a standard deviation of 6.6
degrees, clipped at 20 (``data.rotate_degrees = 20``, the sampling of Efficient-CapsNet's
official code at two thirds of its 30), before the usual whole-pixel shifts of up to 3 px. MNIST's
test digits differ in slant more than in anything else but position; the paper shifts only.
Everything else is the eighth's (seed 0, Keras's initial weights, batch 100, gradient through the
last routing iteration only, parameter average 0.999), with 19 epochs at x0.78 per epoch (last
rate 1.1e-5) so that the run ends inside one 3-hour session: work directories do not outlive a
session on these machines. (It was first started at 26 epochs x0.84 and stopped after 4 minutes,
at step 240, when this machine trained at 140 img/s instead of the 185-275 of earlier sessions:
26 epochs would have needed 3 hours. No test accuracy had been measured.) At epoch 2 the machine
slowed further, to 105-115 img/s (13-23% of its CPU time stolen by other guests), too slow for 19
epochs before the session's end. So, decided then, after epoch 1's test measurement only: if the
run has not ended by 15:42 UTC on 2026-12-03, it is stopped then (a stop writes a checkpoint at that
step), and the reported model is that last checkpoint's parameter average, whatever its step.

Decided before training: the reported model is the last checkpoint's parameter average (the test
set picks nothing), and it replaces the shipped file only if its exported file scores higher.

Command:  nohup capsjax train --config experiments/configs/mnist_paper_rotate.py \\
              --workdir runs/mnist_paper_rotate --data-dir ../shared/data \\
              > runs/mnist_paper_rotate.log 2>&1 &
          capsjax train --workdir runs/mnist_paper_rotate --resume     # after an interruption
Report:   capsjax export --workdir runs/mnist_paper_rotate --output weights/capsnet_mnist.msgpack
          python experiments/paper_accuracy.py --workdir runs/mnist_paper_rotate \\
              --weights weights/capsnet_mnist.msgpack --data-dir ../shared/data
Expected: aims at >= 99.65% at the last epoch; about 2.3 hours of training on a 2-core CPU.
"""

import dataclasses
import pathlib

from capsjax.training.config import TrainConfig, load_config_file

EPOCHS = 19
DECAY_PER_EPOCH = 0.78
ROTATE_DEGREES = 20.0  # the largest angle; half the images are rotated, with std 0.33 x 20 degrees


def get_config() -> TrainConfig:
    config = load_config_file(pathlib.Path(__file__).with_name("mnist_paper_long.py"))
    return dataclasses.replace(
        config,
        epochs=EPOCHS,
        optim=dataclasses.replace(config.optim, decay_rate=DECAY_PER_EPOCH),
        data=dataclasses.replace(config.data, rotate_degrees=ROTATE_DEGREES),
    )
