"""What the three capsjax scripts share: time a training config's train or classify step by ``protocol.py``.

Training: the jitted train step of ``capsjax train`` (its buffers donated). Inference: the jitted
classify step. Each step runs on one random uint8 batch of the model's image shape. The process
limits its malloc arenas as the ``capsjax`` command does (:mod:`capsjax.training.host_memory`).
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from flax import nnx
from protocol import report, time_steps  # protocol.py sits beside this script

from capsjax.nn import count_params
from capsjax.training.config import TrainConfig
from capsjax.training.host_memory import limit_malloc_arenas
from capsjax.training.state import init_state
from capsjax.training.steps import make_classify_step, make_train_step


def time_config(config: TrainConfig, args: argparse.Namespace, **extra) -> dict:
    """Time ``config``'s model as ``args`` ask (``--mode``, ``--batch``, ``--steps``, ``--warmup``); print the line."""
    limit_malloc_arenas()
    graphdef, state = init_state(config)
    model = getattr(config, config.model)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch, *model.image_shape), dtype=np.uint8)
    labels = rng.integers(0, model.num_classes, args.batch).astype(np.int32)
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
    parameters = count_params(nnx.merge(graphdef, state.params))
    framework = f"jax {jax.__version__} on {jax.default_backend()}"
    return report("capsjax", framework, args, times, parameters=parameters, **extra)
