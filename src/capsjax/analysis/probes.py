"""What a trained CapsNet does: capsule-dimension perturbations (paper Fig. 4) and routing couplings."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from capsjax.nn.capsnet import CapsNet
from capsjax.ops.masking import label_mask

PAPER_DELTAS = tuple(np.round(np.arange(-0.25, 0.2501, 0.05), 2))


def perturb_capsule(
    capsules: Float[Array, "classes dim"], class_index: int, deltas
) -> Float[Array, "dim deltas classes dim"]:
    """Copies of ONE example's capsules with ``capsules[class_index, d] += delta`` for every d and delta."""
    deltas = jnp.asarray(deltas, capsules.dtype)
    dim = capsules.shape[-1]
    offsets = jnp.eye(dim, dtype=capsules.dtype)[:, None, :] * deltas[None, :, None]  # [dim, deltas, dim]
    base = jnp.broadcast_to(capsules, (dim, len(deltas)) + capsules.shape)
    return base.at[:, :, class_index, :].add(offsets)


def perturbation_grid(model, image: Float[Array, "height width channels"], deltas=PAPER_DELTAS):
    """Reconstructions ``[dim, len(deltas), h, w, c]`` with each dimension of the winning capsule tweaked.

    ``model``: any model with ``encode`` and ``reconstruct`` (CapsNet, EfficientCapsNet).

    Returns ``(grid, predicted_class)``.
    """
    output = model(image[None], reconstruct=False)
    capsules, winner = output.capsules, int(jnp.argmax(output.scores[0]))  # the model's own class scores
    tweaked = perturb_capsule(capsules[0], winner, deltas)
    dim, n = tweaked.shape[:2]
    flat = tweaked.reshape((dim * n,) + tweaked.shape[2:])
    mask = label_mask(jnp.full((dim * n,), winner), capsules.shape[1])
    recon = model.reconstruct(flat, mask)
    return recon.reshape((dim, n) + recon.shape[1:]), winner


def couplings_by_iteration(model: CapsNet, image: Float[Array, "height width channels"], max_iters: int = 3):
    """Coupling coefficients after 1..max_iters routing iterations for ONE image.

    Returns:
      ``[max_iters, grid_h, grid_w, types, classes]`` and the class scores ``[max_iters, classes]``
      (by the model's ``config.scores``: the capsule lengths for the paper's CapsNet).
    """
    primary = model.primary_capsules(image[None])
    votes = model.classes.votes(primary)
    grid_h, grid_w = model.primary_grid
    maps, scores = [], []
    for iters in range(1, max_iters + 1):
        out = model.classes.route(votes, num_iters=iters, primary=primary)  # routed as the forward pass
        maps.append(out.c[0].reshape(grid_h, grid_w, model.config.primary_types, model.config.num_classes))
        scores.append(model.class_scores(out.v, out.activations)[0])
    return jnp.stack(maps), jnp.stack(scores)
