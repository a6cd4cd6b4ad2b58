"""What training minimises and counts: the class loss, the reconstruction loss, the distillation loss
and correct predictions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from capsjax.nn.interface import ModelOutput
from capsjax.ops.losses import distillation_loss, margin_loss, reconstruction_loss, spread_loss, spread_margin
from capsjax.ops.masking import multi_hot
from capsjax.training.config import LossConfig


def correct_predictions(scores: jax.Array, labels: jax.Array) -> jax.Array:
    """Per example ``[batch]`` bool: the highest score ``[batch, classes]`` is the label; with
    ``[batch, k]`` labels (MultiMNIST, the paper's rule), the ``k`` highest are exactly the labelled classes."""
    if labels.ndim == 1:
        return jnp.argmax(scores, axis=-1) == labels
    top = jax.lax.top_k(scores, labels.shape[1])[1]
    return jnp.all(multi_hot(top, scores.shape[-1]) == multi_hot(labels, scores.shape[-1]), axis=-1)


def classification_loss(
    output: ModelOutput, labels: jax.Array, config: LossConfig, *, step: jax.Array | int | None = None
) -> jax.Array:
    """Per-example class loss ``[batch]``.

    A model with ``logits`` (the CNN) gets softmax cross-entropy for one label per image, and for
    several (``[batch, objects]`` labels, MultiMNIST) a sigmoid cross-entropy per class summed over
    the classes, since the present classes are not mutually exclusive. A capsule model gets the
    margin loss on its class scores (capsule lengths by default), with every labelled class present, or with
    ``config.class_loss == "spread"`` the spread loss on its scores (one label per image), whose
    margin follows :func:`capsjax.ops.losses.spread_margin` at training ``step`` (None: the end margin).
    """
    if config.class_loss == "spread" and output.logits is None:
        if labels.ndim != 1:
            raise ValueError(f"labels: the spread loss takes one class per image [batch], got shape {labels.shape}")
        if step is None:
            margin = config.spread_margin_end
        else:
            margin = spread_margin(
                step, start=config.spread_margin_start, end=config.spread_margin_end, steps=config.spread_margin_steps
            )
        return spread_loss(output.scores, labels, margin=margin)
    if labels.ndim == 2:
        present = multi_hot(labels, output.scores.shape[-1])
        if output.logits is not None:
            return jnp.sum(optax.sigmoid_binary_cross_entropy(output.logits, present), axis=-1)
        labels = present
    elif output.logits is not None:
        return optax.softmax_cross_entropy_with_integer_labels(output.logits, labels)
    return margin_loss(
        output.scores,
        labels,
        m_plus=config.m_plus,
        m_minus=config.m_minus,
        lam=config.lam,
        reduction=config.margin_reduction,
    )


def compute_losses(
    output: ModelOutput,
    images: jax.Array,
    labels: jax.Array,
    config: LossConfig,
    targets: jax.Array | None = None,
    *,
    step: jax.Array | int | None = None,
    teacher_scores: jax.Array | None = None,
) -> tuple[jax.Array, dict]:
    """Mean loss over the batch and its parts.

    :func:`classification_loss` (at training ``step``, which sets the spread loss's margin), plus
    the weighted reconstruction loss when there are reconstructions and ``recon_weight > 0``. With
    ``[batch, objects]`` labels each object's reconstruction is compared with
    ``targets [batch, objects, h, w, c]`` (that object alone). With ``teacher_scores``
    ``[batch, classes]`` (teachers' class scores of the same images), plus ``distill_weight`` times
    :func:`capsjax.ops.losses.distillation_loss`.
    """
    classification = jnp.mean(classification_loss(output, labels, config, step=step))
    reconstruction = jnp.zeros((), jnp.float32)
    if output.reconstructions is not None and config.recon_weight > 0:
        wanted = images if targets is None else targets
        per_object = reconstruction_loss(wanted, output.reconstructions, weight=config.recon_weight)
        reconstruction = jnp.mean(per_object.reshape(per_object.shape[0], -1).sum(-1))
    accuracy = jnp.mean(correct_predictions(output.scores, labels))
    total = classification + reconstruction
    distillation = {}
    if teacher_scores is not None:
        distillation = {"distill_loss": jnp.mean(distillation_loss(output.scores, teacher_scores))}
        total = total + config.distill_weight * distillation["distill_loss"]
    parts = {"class_loss": classification, "recon_loss": reconstruction, "accuracy": accuracy, **distillation}
    return total, {"loss": total, **parts}
