"""capsjax's matrix capsule network with EM routing, timed by the same protocol as its peer (``protocol.py``).

The network of ``torch_matrix_capsnet.py``: ``MatrixCapsNetConfig.preset("small")`` (A=64, B=8,
C=D=16, 5 classes, 32x32x1 images) with the peer's 2 EM iterations; the recipe of
``experiments/configs/matrix_capsnet.py`` otherwise (spread loss, margin from 0.2 to 0.9, no
decoder, no shifts), with the peer's Adam learning rate and decay (3e-3, 0.96 every 20,000 steps).
Training: the jitted train step of ``capsjax train``, its buffers donated. Inference: the jitted
classify step. ``--bfloat16`` sets ``compute_dtype="bfloat16"`` (the two convolutions; EM routing
stays float32).

Where the two compute different things: the peer pads its first convolution (grids 16 -> 7 -> 5,
400 capsules into the class layer; here VALID, as in the paper: 14 -> 6 -> 4, 256) and normalises
its output by batch norm; it cancels the input activations in the M-step and keeps a fixed inverse
temperature 1e-3 (here ``R_ij a_i`` as in the paper, and a schedule rising to 0.1 x out/in caps per
layer); it adds ``row / h``, ``column / w`` to vote elements 0, 1 (here the receptive field centres
to elements 3, 7).
"""

from __future__ import annotations

from capsjax_timing import time_config  # beside this script, with protocol.py
from protocol import parse_args

from capsjax.nn import MatrixCapsNetConfig
from capsjax.training.config import DataConfig, LossConfig, OptimConfig, TrainConfig

EM_ITERS = 2  # as the peer: its README's smallNORB command runs --em-iters 2


def bench_config(batch: int, *, bfloat16: bool = False) -> TrainConfig:
    """The training config timed: the smallNORB matrix capsule recipe at the peer's sizes."""
    return TrainConfig(
        model="matrix_capsnet",
        matrix_capsnet=MatrixCapsNetConfig.preset(
            "small", num_iters=EM_ITERS, compute_dtype="bfloat16" if bfloat16 else "float32"
        ),
        data=DataConfig(resize=48, crop=32, max_shift=0),
        loss=LossConfig(class_loss="spread", recon_weight=0.0, spread_margin_steps=5_000),
        optim=OptimConfig(learning_rate=3e-3, decay_steps=20_000),
        batch_size=batch,
    )


def main(argv=None):
    args = parse_args(argv)
    config = bench_config(args.batch, bfloat16=args.bfloat16)
    time_config(config, args, em_iters=EM_ITERS)


if __name__ == "__main__":
    main()
