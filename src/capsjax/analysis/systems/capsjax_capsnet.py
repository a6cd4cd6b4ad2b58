"""capsjax's CapsNet timed by the same protocol as its peers (see ``protocol.py``).

Training: the jitted train step of ``make train`` (Adam, margin + reconstruction loss, random
+-2 px shifts on device), its buffers donated. Inference: the jitted classify step (no decoder).
``--bfloat16`` sets ``CapsNetConfig.compute_dtype="bfloat16"`` (parameters stay float32).
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from protocol import parse_args, report, time_steps  # protocol.py sits beside this script

from capsjax.nn import CapsNetConfig, count_params
from capsjax.training.config import TrainConfig
from capsjax.training.state import init_state
from capsjax.training.steps import make_classify_step, make_train_step


def main(argv=None):
    args = parse_args(argv)
    capsnet = CapsNetConfig(compute_dtype="bfloat16" if args.bfloat16 else "float32")
    config = TrainConfig(batch_size=args.batch, capsnet=capsnet)
    graphdef, state = init_state(config)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch, *capsnet.image_shape), dtype=np.uint8)
    labels = rng.integers(0, capsnet.num_classes, args.batch).astype(np.int32)
    if args.mode == "train":
        train_step = make_train_step(graphdef, config)
        holder = [state]

        def step():
            holder[0], metrics = train_step(holder[0], images, labels)
            jax.block_until_ready(metrics)

    else:
        classify_step = make_classify_step(graphdef)
        step = lambda: jax.block_until_ready(classify_step(state.params, images))
    times = time_steps(step, steps=args.steps, warmup=args.warmup)
    report(
        "capsjax",
        f"jax {jax.__version__} on {jax.default_backend()}",
        args,
        times,
        parameters=count_params(nnx.merge(graphdef, state.params)),
    )


if __name__ == "__main__":
    main()
