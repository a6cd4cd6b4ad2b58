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
      params: the model's variables (``nnx.State``, see :func:`split_model`): its parameters
        (``nnx.Param``) and, for a model with batch norm, its running batch statistics
        (``nnx.BatchStat``), which the train step updates but gradients never reach.
      opt_state: optax state of the parameters alone (:func:`trainable`).
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


class ParamAverage(NamedTuple):
    """Optimizer state of :func:`track_param_average`.

    Attributes:
      count: updates averaged so far (int32 scalar).
      total: ``sum_t (1 - decay) * decay ** (count - t) * params_t`` over the parameters after
        each update ``t``, like the parameters; ``total / (1 - decay ** count)`` is the average.
    """

    count: jax.Array
    total: optax.Params


def track_param_average(decay: float) -> optax.GradientTransformation:
    """An optax transformation that passes updates through unchanged and keeps an exponential
    moving average of the parameters they produce (put it last in a chain; read the average with
    :func:`param_average`). The total starts at zero and the average is bias-corrected, as Adam's
    moments are, so it is the weighted mean of the iterates seen so far however few there were."""

    def init(params):
        return ParamAverage(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(updates, state: ParamAverage, params=None):
        if params is None:
            raise ValueError("track_param_average needs the parameters: call update(updates, state, params)")
        new_params = optax.apply_updates(params, updates)
        total = optax.incremental_update(new_params, state.total, step_size=1 - decay)
        return updates, ParamAverage(state.count + 1, total)

    return optax.GradientTransformation(init, update)


def param_average(opt_state: optax.OptState, decay: float) -> optax.Params | None:
    """The bias-corrected parameter average held in ``opt_state`` (None if it holds none, or
    before the first update)."""
    found = [
        s
        for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, ParamAverage))
        if isinstance(s, ParamAverage)
    ]
    if not found or int(found[0].count) == 0:
        return None
    return optax.tree_utils.tree_bias_correction(found[0].total, decay, found[0].count)


def make_optimizer(config: OptimConfig) -> optax.GradientTransformation:
    """Adam with :func:`learning_rate_schedule`, followed by :func:`track_param_average` when
    ``config.average_decay`` > 0 (without it the optimizer state is Adam's alone, as before)."""
    adam = optax.adam(learning_rate_schedule(config))
    if config.average_decay > 0:
        return optax.chain(adam, track_param_average(config.average_decay))
    return adam


def create_model(config: TrainConfig, *, seed: int | None = None) -> nnx.Module:
    """The model named by ``config.model``, initialised from ``seed`` (default ``config.seed``)."""
    model_config = getattr(config, config.model, None)
    return build_model(config.model, model_config, rngs=nnx.Rngs(config.seed if seed is None else seed))


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, nnx.State]:
    """``(graphdef, variables)``: the model's structure, and its parameters and batch statistics
    together in one ``nnx.State`` (what :attr:`TrainState.params`, checkpoints and weights files hold).

    For a model without batch norm (CapsNet, the CNN) this is exactly ``nnx.split(model, nnx.Param)``,
    so their checkpoints keep the layout they always had. A variable of any other kind is an error
    (NNX's "non-exhaustive filters"), never silently left out of a checkpoint.
    """
    return nnx.split(model, (nnx.Param, nnx.BatchStat))


def trainable(params: nnx.State) -> nnx.State:
    """The ``nnx.Param`` part of :attr:`TrainState.params`: what gradients and the optimizer see."""
    return nnx.filter_state(params, nnx.Param)


def init_state(config: TrainConfig) -> tuple[nnx.GraphDef, TrainState]:
    """Build the model and the initial :class:`TrainState`; returns ``(graphdef, state)``."""
    graphdef, params = split_model(create_model(config))
    tx = make_optimizer(config.optim)
    rng = jax.random.key_data(jax.random.key(config.seed + 1))
    return graphdef, TrainState(jnp.zeros((), jnp.int32), params, tx.init(trainable(params)), rng)


def evaluation_params(state: TrainState, optim: OptimConfig) -> nnx.State:
    """The variables to evaluate, export and analyse: ``state.params``, with its parameters replaced
    by their running average when ``optim.average_decay`` > 0 (the batch statistics stay)."""
    average = param_average(state.opt_state, optim.average_decay) if optim.average_decay > 0 else None
    if average is None:
        return state.params
    return nnx.merge_state(state.params, average)


def restart_state(state: TrainState, params: nnx.State, optim: OptimConfig) -> TrainState:
    """A new run's first state holding ``params`` (e.g. trained weights, same layout as
    ``state.params``): step 0, a fresh optimizer state for ``optim``, ``state``'s PRNG key."""
    return TrainState(jnp.zeros((), jnp.int32), params, make_optimizer(optim).init(trainable(params)), state.rng)


def abstract_model(config: TrainConfig) -> tuple[nnx.GraphDef, TrainState]:
    """``(graphdef, state)`` as :func:`init_state` gives them, the state's leaves ``jax.ShapeDtypeStruct``,
    computed without allocating anything: what a file or checkpoint is checked against before a model
    is built."""
    graphdef = split_model(nnx.eval_shape(lambda: create_model(config)))[0]
    return graphdef, jax.eval_shape(lambda: init_state(config)[1])
