"""Losses of the CapsNet paper: margin loss (eq. 4) and the reconstruction regulariser (sec. 4.1);
the spread loss of matrix capsules; a distillation loss toward a teacher's class scores.

Both return one value per example (``[...]``, the leading dims of the input); average over the
batch where you use them.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from capsjax.ops.masking import label_mask

Reduction = Literal["sum", "mean"]


def _reduce(x: jax.Array, reduction: Reduction, axis, name: str) -> jax.Array:
    if reduction == "sum":
        return jnp.sum(x, axis=axis)
    if reduction == "mean":
        return jnp.mean(x, axis=axis)
    raise ValueError(f"{name}: expected 'sum' or 'mean', got {reduction!r}")


def margin_loss(
    lengths: Float[ArrayLike, "... classes"],
    labels: ArrayLike,
    *,
    m_plus: float = 0.9,
    m_minus: float = 0.1,
    lam: float = 0.5,
    reduction: Reduction = "sum",
) -> Float[Array, "..."]:
    r"""Margin loss on capsule lengths.

    .. math:: L_k = T_k \max(0, m^+ - |v_k|)^2 + \lambda (1 - T_k) \max(0, |v_k| - m^-)^2

    Args:
      lengths: capsule lengths ``[..., classes]``.
      labels: integer classes ``[...]``, or (multi-)hot targets ``[..., classes]`` (e.g. the two
        digits of a MultiMNIST image).
      m_plus, m_minus, lam: the paper's 0.9, 0.1 and 0.5.
      reduction: over classes. ``"sum"`` is the paper's eq. 4; ``"mean"`` divides it by the number
        of classes. (The paper's official code averages over classes and also halves the loss: 1/20
        of eq. 4 on MNIST, so its 0.0005 reconstruction weight counts 20 times as much as here.)

    Returns:
      loss per example ``[...]``.

    References:
      Sabour, Frosst, Hinton (2017), eq. 4.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax import margin_loss
      >>> float(margin_loss(jnp.array([0.95, 0.05]), jnp.array(0)))   # both margins met
      0.0
    """
    lengths = jnp.asarray(lengths)
    labels = jnp.asarray(labels)
    if lengths.ndim < 1:
        raise ValueError(f"lengths: expected rank >= 1 [..., classes], got shape {lengths.shape}")
    if labels.shape == lengths.shape:
        targets = labels.astype(lengths.dtype)
    elif labels.shape == lengths.shape[:-1]:
        if not jnp.issubdtype(labels.dtype, jnp.integer):
            raise ValueError(f"labels: class indices must be integers, got dtype {labels.dtype}")
        targets = label_mask(labels, lengths.shape[-1]).astype(lengths.dtype)
    else:
        raise ValueError(
            f"labels: expected shape {lengths.shape[:-1]} (classes) or {lengths.shape} (targets) "
            f"for lengths of shape {lengths.shape}, got {labels.shape}"
        )
    present = targets * jnp.square(jax.nn.relu(m_plus - lengths))
    absent = lam * (1.0 - targets) * jnp.square(jax.nn.relu(lengths - m_minus))
    return _reduce(present + absent, reduction, -1, "reduction")


def reconstruction_loss(
    images: Float[ArrayLike, "... height width channels"],
    reconstructions: ArrayLike,
    *,
    weight: float = 0.0005,
    reduction: Reduction = "sum",
) -> Float[Array, "..."]:
    r"""Weighted squared error between images and their reconstructions, per example.

    .. math:: L_{\mathrm{rec}} = w \sum_p (x_p - \hat x_p)^2

    The paper sums the squared error over the 784 pixels and scales it by :math:`w = 0.0005` so that
    it does not dominate the margin loss. ``reduction="mean"`` averages over pixels instead.

    Args:
      images: ``[..., height, width, channels]`` in [0, 1].
      reconstructions: same shape (a flat ``[..., height*width*channels]`` is also accepted).
      weight: the paper's 0.0005.
      reduction: over pixels.

    Returns:
      loss per example ``[...]``.

    References:
      Sabour, Frosst, Hinton (2017), section 4.1.
    """
    images = jnp.asarray(images)
    reconstructions = jnp.asarray(reconstructions)
    if images.ndim < 3:
        raise ValueError(f"images: expected rank >= 3 [..., height, width, channels], got {images.shape}")
    batch_shape = images.shape[:-3]
    flat_images = images.reshape(batch_shape + (-1,))
    if reconstructions.size != images.size or reconstructions.shape[: len(batch_shape)] != batch_shape:
        raise ValueError(
            f"reconstructions: expected shape {images.shape} (or flat {flat_images.shape}), got {reconstructions.shape}"
        )
    flat_reconstructions = reconstructions.reshape(flat_images.shape)
    squared_error = jnp.square(flat_images - flat_reconstructions)
    return weight * _reduce(squared_error, reduction, -1, "reduction")


def spread_loss(
    activations: Float[ArrayLike, "... classes"], labels: ArrayLike, *, margin: float | ArrayLike = 0.9
) -> Float[Array, "..."]:
    r"""Spread loss of matrix capsules (Hinton, Sabour, Frosst 2018, sec. 3.1), per example.

    .. math:: L = \sum_{i \ne t} \max(0, m - (a_t - a_i))^2

    where :math:`a_t` is the activation of the target class; :math:`m` grows during training
    (:func:`spread_margin`), which the paper found avoids dead capsules early on.

    Args:
      activations: class activations ``[..., classes]``.
      labels: class indices ``[...]``.
      margin: :math:`m` (a number, or a traced value for a schedule).

    Returns:
      ``[...]``.
    """
    activations = jnp.asarray(activations)
    target = label_mask(labels, activations.shape[-1]).astype(activations.dtype)
    a_target = jnp.sum(activations * target, axis=-1, keepdims=True)
    gaps = jnp.square(jnp.maximum(0.0, margin - (a_target - activations)))
    return jnp.sum(gaps * (1.0 - target), axis=-1)


def spread_margin(step: ArrayLike, *, start: float = 0.2, end: float = 0.9, steps: int = 50_000) -> jax.Array:
    """The spread loss's margin: linear from ``start`` to ``end`` over ``steps`` training steps, then ``end``."""
    fraction = jnp.clip(jnp.asarray(step, jnp.float32) / steps, 0.0, 1.0)
    return start + (end - start) * fraction


def distillation_loss(
    scores: Float[ArrayLike, "... classes"], teacher_scores: Float[ArrayLike, "... classes"]
) -> Float[Array, "..."]:
    r"""Squared distance from a teacher's class scores, per example (knowledge distillation).

    .. math:: L = \sum_k (s_k - t_k)^2

    For capsule lengths (each in [0, 1), one per class, not a distribution) this plays the part of
    Hinton, Vinyals and Dean's (2015) matching of softened outputs: it passes on the teacher's
    scores of the wrong classes, which the margin loss ignores below ``m_minus``. The teacher's
    scores get no gradient.

    Args:
      scores: the model's ``[..., classes]``.
      teacher_scores: the teacher's (or the mean of several teachers') ``[..., classes]``.

    Returns:
      ``[...]``.
    """
    scores = jnp.asarray(scores)
    teacher_scores = jax.lax.stop_gradient(jnp.asarray(teacher_scores))
    if scores.shape != teacher_scores.shape:
        raise ValueError(f"teacher_scores: expected the scores' shape {scores.shape}, got {teacher_scores.shape}")
    return jnp.sum(jnp.square(scores - teacher_scores), axis=-1)
