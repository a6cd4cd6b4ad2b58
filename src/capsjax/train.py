"""Training and evaluation: pure jitted steps over pytrees, sharded over the batch axis.

The train step is a pure function ``(TrainState, images, labels) -> (TrainState, metrics)``
of pytrees, compiled once; the model's structure (NNX ``GraphDef``) is closed over. The batch
axis is sharded over every local device with a ``jax.sharding.Mesh`` (axis ``"data"``), so the
same code runs on 1 CPU, 8 GPUs or a TPU slice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from capsjax.augment import shift_batch
from capsjax.config import LossConfig, OptimConfig, TrainConfig
from capsjax.losses import margin_loss, reconstruction_loss
from capsjax.models import build_model


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


def to_float(images: jax.Array) -> jax.Array:
    """uint8 images (what travels host -> device, 4x less than float32) to float32 in [0, 1]."""
    return images.astype(jnp.float32) / 255.0


def multi_hot(labels: jax.Array, num_classes: int) -> jax.Array:
    """``[batch, objects]`` class indices -> ``[batch, classes]`` targets (1 for each present class)."""
    return jnp.clip(jnp.sum(jax.nn.one_hot(labels, num_classes), axis=1), 0.0, 1.0)


def correct_predictions(lengths: jax.Array, labels: jax.Array) -> jax.Array:
    """Per example: the longest capsule is the label; with ``[batch, k]`` labels (MultiMNIST, the
    paper's rule), the ``k`` longest capsules are exactly the labelled classes."""
    if labels.ndim == 1:
        return jnp.argmax(lengths, axis=-1) == labels
    top = jax.lax.top_k(lengths, labels.shape[1])[1]
    return jnp.all(multi_hot(top, lengths.shape[-1]) == multi_hot(labels, lengths.shape[-1]), axis=-1)


def classification_loss(output, labels, config: LossConfig) -> jax.Array:
    """Per-example class loss ``[batch]``.

    A model with ``logits`` (the CNN) gets softmax cross-entropy for one label per image, and for
    several (``[batch, objects]`` labels, MultiMNIST) a sigmoid cross-entropy per class summed over
    the classes, since the present classes are not mutually exclusive. A capsule model gets the
    margin loss on its capsule lengths, with every labelled class present.
    """
    if labels.ndim == 2:
        present = multi_hot(labels, output.lengths.shape[-1])
        if output.logits is not None:
            return jnp.sum(optax.sigmoid_binary_cross_entropy(output.logits, present), axis=-1)
        labels = present
    elif output.logits is not None:
        return optax.softmax_cross_entropy_with_integer_labels(output.logits, labels)
    return margin_loss(output.lengths, labels, m_plus=config.m_plus, m_minus=config.m_minus, lam=config.lam,
                       reduction=config.margin_reduction)


def compute_losses(output, images, labels, config: LossConfig, targets=None) -> tuple[jax.Array, dict]:
    """Mean loss over the batch and its parts.

    :func:`classification_loss`, plus the weighted reconstruction loss when there are
    reconstructions and ``recon_weight > 0``. With ``[batch, objects]`` labels each object's
    reconstruction is compared with ``targets [batch, objects, h, w, c]`` (that object alone).
    """
    classification = jnp.mean(classification_loss(output, labels, config))
    reconstruction = jnp.zeros((), jnp.float32)
    if output.reconstructions is not None and config.recon_weight > 0:
        wanted = images if targets is None else targets
        per_object = reconstruction_loss(wanted, output.reconstructions, weight=config.recon_weight)
        reconstruction = jnp.mean(per_object.reshape(per_object.shape[0], -1).sum(-1))
    accuracy = jnp.mean(correct_predictions(output.lengths, labels))
    total = classification + reconstruction
    return total, {"loss": total, "class_loss": classification, "recon_loss": reconstruction, "accuracy": accuracy}


def make_train_step(graphdef: nnx.GraphDef, config: TrainConfig) -> Callable:
    """The jitted train step ``(state, images uint8 [b,h,w,c], labels [b]) -> (state, metrics)``.

    Augmentation (random shifts of ``config.data.max_shift`` pixels) runs on device inside the
    step; its randomness and the dropout key derive from ``fold_in(state.rng, state.step)``, so a
    resumed run repeats them exactly. The state's buffers are donated.
    """
    tx = make_optimizer(config.optim)
    schedule = learning_rate_schedule(config.optim)

    def train_step(state: TrainState, images, labels, targets=None):
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        shift_key, dropout_key = jax.random.split(key)
        images = to_float(images)
        if targets is not None:
            targets = to_float(targets)  # objects were placed by the data generator: no shifts
        elif config.data.max_shift > 0:
            images = shift_batch(images, shift_key, max_shift=config.data.max_shift)

        def loss_fn(params):
            model = nnx.merge(graphdef, params)
            output = model(images, labels, dropout_key=dropout_key)
            return compute_losses(output, images, labels, config.loss, targets)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {**metrics, "learning_rate": schedule(state.step), "grad_norm": optax.global_norm(grads)}
        return TrainState(state.step + 1, params, opt_state, state.rng), metrics

    return jax.jit(train_step, donate_argnums=0)


def make_eval_step(graphdef: nnx.GraphDef, config: TrainConfig) -> Callable:
    """Jitted ``(params, images uint8, labels, valid bool) -> {correct, loss_sum, count}``."""

    def eval_step(params, images, labels, valid):
        images = to_float(images)
        output = nnx.merge(graphdef, params)(images)
        correct = correct_predictions(output.lengths, labels) & valid
        per_example = classification_loss(output, labels, config.loss)
        return {
            "correct": jnp.sum(correct),
            "loss_sum": jnp.sum(jnp.where(valid, per_example, 0.0)),
            "count": jnp.sum(valid),
        }

    return jax.jit(eval_step)


@dataclasses.dataclass(frozen=True)
class Sharding:
    """Where arrays live: a 1-D mesh over all local devices; batches split on ``"data"``."""

    mesh: Mesh

    @classmethod
    def over_local_devices(cls) -> Sharding:
        return cls(Mesh(np.array(jax.local_devices()), ("data",)))

    @property
    def num_devices(self) -> int:
        return self.mesh.devices.size

    def batch(self, tree):
        """Split the leading (batch) axis of every leaf over the devices."""
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec("data")))

    def replicated(self, tree):
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

    def check_batch_size(self, batch_size: int, name: str = "batch_size") -> None:
        if batch_size % self.num_devices:
            raise ValueError(f"{name} ({batch_size}) must be divisible by the number of devices ({self.num_devices})")


def evaluate(eval_step: Callable, params, batches, sharding: Sharding) -> dict:
    """Accuracy and mean loss over eval batches ``(images, labels, valid)``."""
    totals = {"correct": 0, "loss_sum": 0.0, "count": 0}
    for batch in batches:
        out = eval_step(params, *sharding.batch(batch))
        for k in totals:
            totals[k] += np.asarray(out[k]).item()
    count = max(totals["count"], 1)
    accuracy = totals["correct"] / count
    return {"accuracy": accuracy, "error_percent": 100.0 * (1.0 - accuracy), "loss": totals["loss_sum"] / count,
            "count": totals["count"]}
