"""What a trained CapsNet does: capsule-dimension perturbations (paper Fig. 4) and routing couplings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from capsjax.masking import label_mask
from capsjax.models import CapsNet

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


def perturbation_grid(model: CapsNet, image: Float[Array, "height width channels"], deltas=PAPER_DELTAS):
    """Reconstructions ``[dim, len(deltas), h, w, c]`` with each dimension of the winning capsule tweaked.

    Returns ``(grid, predicted_class)``.
    """
    capsules, _ = model.encode(image[None])
    lengths = jnp.linalg.norm(capsules[0], axis=-1)
    winner = int(jnp.argmax(lengths))
    tweaked = perturb_capsule(capsules[0], winner, deltas)
    dim, n = tweaked.shape[:2]
    flat = tweaked.reshape((dim * n,) + tweaked.shape[2:])
    mask = label_mask(jnp.full((dim * n,), winner), capsules.shape[1])
    recon = model.reconstruct(flat, mask)
    return recon.reshape((dim, n) + recon.shape[1:]), winner


def couplings_by_iteration(model: CapsNet, image: Float[Array, "height width channels"], max_iters: int = 3):
    """Coupling coefficients after 1..max_iters routing iterations for ONE image.

    Returns:
      ``[max_iters, grid_h, grid_w, types, classes]`` and the capsule lengths ``[max_iters, classes]``.
    """
    votes = model.classes.votes(model.primary_capsules(image[None]))[0]
    routing = model.classes.routing_fn
    bias = None if model.classes.bias is None else model.classes.bias[...]
    config = model.config
    grid = int(round((model.num_primary // config.primary_types) ** 0.5))
    maps, lengths = [], []
    for iters in range(1, max_iters + 1):
        out = routing(votes, num_iters=iters, bias=bias, **model.classes.routing_options)
        maps.append(out.c.reshape(grid, grid, config.primary_types, config.num_classes))
        lengths.append(jnp.linalg.norm(out.v, axis=-1))
    return jnp.stack(maps), jnp.stack(lengths)


def votes_agreement(model: CapsNet, image) -> jax.Array:
    """Length of each primary capsule's vote for each class, ``[in_caps, classes]`` (for shading maps)."""
    votes = model.classes.votes(model.primary_capsules(image[None]))[0]
    return jnp.linalg.norm(votes, axis=-1)
