"""The training state (a pytree), its optimizer and its initialisation from a config."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from capsjax.nn.registry import build_model
from capsjax.training.config import OptimConfig, TrainConfig


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree; what a checkpoint holds).

    Attributes:
      step: optimizer steps taken (int32 scalar).
      params: model parameters (``nnx.State``).
      opt_state: optax state.
      rng: raw PRNG key data ``[2]`` uint32; step ``t`` uses ``fold_in(rng, t)``.
    """

    step: jax.Array
    params: nnx.State
    opt_state: optax.OptState
    rng: jax.Array


def learning_rate_schedule(config: OptimConfig) -> optax.Schedule:
    """``lr * decay_rate ** (step / decay_steps)`` (0.96 per 2000 steps by default)."""
    return optax.exponential_decay(
        config.learning_rate, config.decay_steps, config.decay_rate, staircase=config.staircase
    )


def make_optimizer(config: OptimConfig) -> optax.GradientTransformation:
    """Adam with :func:`learning_rate_schedule`."""
    return optax.adam(learning_rate_schedule(config))


def create_model(config: TrainConfig, *, seed: int | None = None) -> nnx.Module:
    """The model named by ``config.model``, initialised from ``seed`` (default ``config.seed``)."""
    model_config = getattr(config, config.model, None)
    return build_model(config.model, model_config, rngs=nnx.Rngs(config.seed if seed is None else seed))


def init_state(config: TrainConfig) -> tuple[nnx.GraphDef, TrainState]:
    """Build the model and the initial :class:`TrainState`; returns ``(graphdef, state)``."""
    graphdef, params = nnx.split(create_model(config), nnx.Param)
    tx = make_optimizer(config.optim)
    rng = jax.random.key_data(jax.random.key(config.seed + 1))
    return graphdef, TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), rng)
