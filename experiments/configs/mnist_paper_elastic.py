"""The paper's CapsNet on MNIST, fourteenth attempt: the shipped weights, trained on with elastic distortions.

Written on 2026-12-04 after the thirteenth attempt (mnist_paper_swa.py, 99.62%), before this run
started. Four runs of the eighth's recipe or its weights (the eighth, eleventh, twelfth and
thirteenth) settled at 99.62-99.64%, one to three test images short of issue 15's 99.65%: restarts,
longer schedules and weight averaging redraw the same level. The one change of level tried so far
came from the training images (the paper's 2 px shifts to 3 px); small rotations (the tenth) did not
help within 19 epochs. The standard way to lift MNIST accuracy with a fixed network is elastic
distortion (Simard, Steinkraus & Platt 2003, "Best Practices for Convolutional Neural Networks
Applied to Visual Document Analysis": 0.7% to 0.4% error for their convnet, from affine to elastic):
smooth random displacement fields that bend strokes the way hands vary, which shifts and rotations
cannot. capsjax gains it here (``data.elastic_alpha``, ``data.elastic_sigma``; Simard's values 34 and
4 pixels, moving pixels about 1.5 px), applied to half the training images before the whole-pixel
shifts of up to 3 px.

This run: the shipped (eighth's) weights (``init_weights``, a fresh Adam and a fresh parameter
average 0.999), everything else of the eighth (network, loss, 3 px shifts, batch 100, routing
gradient through the last iteration, seed 0), with elastic distortions, from lr 3e-4 (the eighth's
rate near its epoch 8, so that the weights can move to fit the new images) x0.76 per epoch as a
staircase over 14 epochs (8,400 steps; the last epoch at 8.4e-6, the eighth's last rate). 46 epochs
in all. About 1.45 hours of training at 165 img/s; the distortions cost about 2.5 ms a batch.

Decided before training: the reported model is the last checkpoint's parameter average (the test
set picks nothing), and it replaces the shipped file only if its exported file scores higher. If the
machine is too slow to finish, the run is stopped by SIGTERM at 15:00 UTC on the day it starts and
that checkpoint is reported, whatever its step.

It reads the shipped weights where mnist_paper_restart.py does (its WEIGHTS; the eighth attempt's
file, SHA-256 in its EIGHTH_SHA256). Put them there:

          cp weights/capsnet_mnist.msgpack runs/capsnet_mnist_eighth.msgpack

Command:  nohup capsjax train --config experiments/configs/mnist_paper_elastic.py \\
              --workdir runs/mnist_paper_elastic --data-dir ../shared/data \\
              > runs/mnist_paper_elastic.log 2>&1 &
          capsjax train --workdir runs/mnist_paper_elastic --resume     # after an interruption
Report:   capsjax export --workdir runs/mnist_paper_elastic --output weights/capsnet_mnist.msgpack
          git show 4d7976f:experiments/figures/paper_accuracy/paper_accuracy.json \\
              > runs/mnist_paper_long_report.json
          python experiments/paper_accuracy.py --earlier runs/mnist_paper_long_report.json \\
              --workdir runs/mnist_paper_elastic --weights weights/capsnet_mnist.msgpack \\
              --data-dir ../shared/data           # one curve over the 46 epochs
Expected: aims at >= 99.65% at the last epoch; about 1.45 hours of training on a 2-core CPU.
"""

import dataclasses
import pathlib

from capsjax.training.config import TrainConfig, load_config_file

EPOCHS = 14
LEARNING_RATE = 3e-4
DECAY_PER_EPOCH = 0.76
ELASTIC_ALPHA = 34.0  # Simard et al. 2003's scale of the displacement field
ELASTIC_SIGMA = 4.0  # and its Gaussian blur, in pixels


def get_config() -> TrainConfig:
    """The eleventh attempt (the shipped weights, a fresh Adam) with elastic distortions and a longer decay."""
    config = load_config_file(pathlib.Path(__file__).with_name("mnist_paper_restart.py"))
    return dataclasses.replace(
        config,
        epochs=EPOCHS,
        optim=dataclasses.replace(config.optim, learning_rate=LEARNING_RATE, decay_rate=DECAY_PER_EPOCH),
        data=dataclasses.replace(config.data, elastic_alpha=ELASTIC_ALPHA, elastic_sigma=ELASTIC_SIGMA),
    )
