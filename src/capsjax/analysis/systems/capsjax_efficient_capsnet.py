"""capsjax's Efficient-CapsNet timed by the same protocol as its peers (see ``protocol.py``).

Training: the jitted train step of the ``efficient_capsnet_mnist`` recipe (experiments/configs/recipes.py):
Adam 5e-4 decayed x0.97 per epoch, the margin loss summed over classes plus 0.392 x the
reconstruction's mean squared error, random +-2 px shifts on device, batch norm by the batch's
statistics, its buffers donated. Inference: the jitted classify step (no decoder, batch norm by its
running averages). ``--bfloat16`` sets ``EfficientCapsNetConfig.compute_dtype="bfloat16"``
(parameters stay float32).
"""

from __future__ import annotations

from capsjax_timing import time_config  # beside this script, with protocol.py
from protocol import parse_args

from capsjax.nn import EfficientCapsNetConfig
from capsjax.training.config import DataConfig, LossConfig, OptimConfig, TrainConfig

MNIST_TRAIN_IMAGES = 60_000


def train_config(batch: int, *, bfloat16: bool = False) -> TrainConfig:
    """The ``efficient_capsnet_mnist`` recipe at ``batch`` (the learning rate decays once per epoch of it)."""
    model = EfficientCapsNetConfig(compute_dtype="bfloat16" if bfloat16 else "float32")
    return TrainConfig(
        model="efficient_capsnet",
        efficient_capsnet=model,
        data=DataConfig(max_shift=2),
        optim=OptimConfig(
            learning_rate=5e-4, decay_rate=0.97, decay_steps=max(1, MNIST_TRAIN_IMAGES // batch), staircase=True
        ),
        loss=LossConfig(margin_reduction="sum", recon_weight=0.392 / 784),
        batch_size=batch,
    )


def main(argv=None):
    args = parse_args(argv)
    config = train_config(args.batch, bfloat16=args.bfloat16)
    time_config(config, args)


if __name__ == "__main__":
    main()
