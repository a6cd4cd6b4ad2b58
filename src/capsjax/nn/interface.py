"""What every model takes and returns: images ``[batch, height, width, channels]`` in, :class:`ModelOutput` out.

A model is interchangeable in the training loop when it is called as
``model(images, labels=None, *, dropout_key=None, reconstruct=True)`` and returns a :class:`ModelOutput`
(``reconstruct=False``: no decoder, classification only).

A model with batch norm (Efficient-CapsNet) has two modes, NNX's ``use_running_average``
attribute: evaluation (normalise by the running averages; how models are built) and training
(normalise by the batch's statistics and update the running averages, ``nnx.BatchStat``).
:func:`with_mode` gives either; models without batch norm behave the same in both.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from capsjax.ops._shapes import check_shape


class ModelOutput(NamedTuple):
    """What a classifier returns for a batch.

    Attributes:
      scores: class scores ``[batch, classes]``: for CapsNet by its ``config.scores`` (capsule lengths
        in [0, 1) by default, the paper's), softmax
        probabilities for the CNN. The prediction is their argmax (their top ``k`` for images
        holding ``k`` objects; softmax keeps the logits' order, so the top ``k`` are the same
        whichever cross-entropy trained the CNN).
      capsules: class capsules ``[batch, classes, dim]`` (None for the CNN).
      reconstructions: ``[batch, height, width, channels]`` (None without a decoder).
      couplings: routing coefficients ``[batch, in_caps, classes]`` (None for the CNN).
      logits: unnormalised scores ``[batch, classes]`` of a classifier (None for CapsNet); when
        present, training uses cross-entropy on them instead of the margin loss (softmax for one
        label per image, per-class sigmoid for several; see
        :func:`capsjax.training.objectives.classification_loss`).
    """

    scores: Float[Array, "batch classes"]
    capsules: Any = None
    reconstructions: Any = None
    couplings: Any = None
    logits: Any = None

    @property
    def lengths(self) -> Float[Array, "batch classes"]:
        """Deprecated name of :attr:`scores` (they are lengths only for capsule models)."""
        warnings.warn("ModelOutput.lengths is deprecated; use ModelOutput.scores", DeprecationWarning, stacklevel=2)
        return self.scores


def check_images(x, image_shape: Sequence[int]) -> None:
    """Raise ValueError unless ``x`` is a batch of images of ``image_shape`` ``(height, width, channels)``.

    Outside ``jit`` (concrete arrays) the pixel values are checked too: NaN or infinite pixels are an
    error naming how many and where the first is. Under ``jit`` values cannot be checked: such pixels
    give NaN scores (and ``argmax`` of NaN scores is class 0), so check inputs before jitting.
    """
    check_shape("x", x, ("batch", *image_shape))
    if isinstance(x, jax.core.Tracer):
        return
    values = np.asarray(x)
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"x: {int(bad.sum())} pixel value(s) are NaN or infinite (the first at index {first}); "
                "images must be finite (floats in [0, 1] or uint8)"
            )


def with_mode(model: nnx.Module, *, training: bool) -> nnx.Module:
    """``model`` in training mode (batch norm uses the batch's statistics and updates its running
    averages) or evaluation mode (batch norm uses the running averages).

    A view: new module objects sharing ``model``'s variables (``nnx.view``); ``model`` itself keeps
    its mode. Models without batch norm come back unchanged in behaviour.
    """
    return nnx.view(model, use_running_average=not training, raise_if_not_found=False)
