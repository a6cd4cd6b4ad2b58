r"""Votes of matrix capsules (Hinton, Sabour, Frosst 2018) for ONE example.

A matrix capsule holds a 4x4 pose matrix :math:`M_i` (stored flat, 16 values in row-major order)
and an activation. Its vote for an output capsule :math:`j` is :math:`V_{ij} = M_i W_{ij}` with a
learned 4x4 transformation matrix :math:`W_{ij}`; the votes then go to
:func:`capsjax.ops.em_routing.em_routing`. In the class capsule layer the same :math:`W` is shared by
every position of a capsule type, and *coordinate addition* puts the position back into the votes:
the scaled (row, column) of the centre of the input capsule's receptive field is added to the first
two elements of the right-hand column of its vote matrix (flat indices 3 and 7).

:func:`matrix_votes` and :func:`class_votes` take ONE example; :func:`receptive_field_centres` is
static geometry (NumPy, computed at trace time).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from capsjax.ops._shapes import check_shape

POSE_DIM = 16
"""Values in a flattened 4x4 pose matrix."""

ROW_INDEX, COLUMN_INDEX = 3, 7
"""Flat indices of the vote elements (0, 3) and (1, 3) that coordinate addition adds the row and column to."""


def matrix_votes(
    poses: Float[ArrayLike, "in_caps 16"], weights: Float[ArrayLike, "in_caps out_caps 4 4"]
) -> Float[Array, "in_caps out_caps 16"]:
    r"""Votes :math:`V_{ij} = M_i W_{ij}` of every input capsule for every output capsule, for ONE example.

    Args:
      poses: input pose matrices ``[in_caps, 16]`` (4x4, row-major).
      weights: transformation matrices ``[in_caps, out_caps, 4, 4]``.

    Returns:
      votes ``[in_caps, out_caps, 16]`` (4x4, row-major).

    References:
      Hinton, Sabour, Frosst (2018), sec. 2.

    Example:
      >>> import jax.numpy as jnp
      >>> from capsjax.ops.matrix_votes import matrix_votes
      >>> pose = jnp.arange(16.0)[None]                        # one capsule
      >>> votes = matrix_votes(pose, jnp.eye(4)[None, None])   # W = identity
      >>> bool(jnp.all(votes[0, 0] == pose[0]))
      True
    """
    poses = jnp.asarray(poses)
    weights = jnp.asarray(weights)
    check_shape("poses", poses, ("in_caps", POSE_DIM))
    check_shape("weights", weights, (poses.shape[0], "out_caps", 4, 4))
    in_caps, out_caps = weights.shape[:2]
    matrices = poses.reshape(in_caps, 4, 4)
    return jnp.einsum("iab,iobc->ioac", matrices, weights.astype(poses.dtype)).reshape(in_caps, out_caps, POSE_DIM)


def class_votes(
    poses: Float[ArrayLike, "height width types 16"],
    weights: Float[ArrayLike, "types classes 4 4"],
    coordinates: Float[ArrayLike, "height width 2"],
) -> Float[Array, "in_caps classes 16"]:
    r"""Votes of a grid of capsules for the class capsules, with coordinate addition, for ONE example.

    Every position of a capsule type shares that type's transformation matrices; the coordinates of
    its position (``coordinates[r, c] = (row, column)``, scaled to [0, 1]) are added to the vote
    elements (0, 3) and (1, 3), i.e. flat indices 3 and 7:

    .. math:: V_{(r,c,t),k} = M_{r,c,t} W_{t,k} + \mathrm{row}_{r,c} \, e_{03} + \mathrm{col}_{r,c} \, e_{13}

    Args:
      poses: ``[height, width, types, 16]``.
      weights: ``[types, classes, 4, 4]``.
      coordinates: ``[height, width, 2]``, e.g. :func:`receptive_field_centres`.

    Returns:
      votes ``[height * width * types, classes, 16]``, input capsules ordered (row, column, type).

    References:
      Hinton, Sabour, Frosst (2018), sec. 3 ("coordinate addition").
    """
    poses = jnp.asarray(poses)
    weights = jnp.asarray(weights)
    check_shape("poses", poses, ("height", "width", "types", POSE_DIM))
    height, width, types, _ = poses.shape
    check_shape("weights", weights, (types, "classes", 4, 4))
    coordinates = jnp.asarray(coordinates, poses.dtype)
    check_shape("coordinates", coordinates, (height, width, 2))
    in_caps, classes = height * width * types, weights.shape[1]
    matrices = poses.reshape(height * width, types, 4, 4)
    votes = jnp.einsum("ptab,tkbc->ptkac", matrices, weights.astype(poses.dtype)).reshape(in_caps, classes, POSE_DIM)
    per_capsule = jnp.broadcast_to(coordinates[:, :, None, :], (height, width, types, 2)).reshape(in_caps, 2)
    offsets = jnp.zeros((in_caps, POSE_DIM), votes.dtype)
    offsets = offsets.at[:, ROW_INDEX].set(per_capsule[:, 0]).at[:, COLUMN_INDEX].set(per_capsule[:, 1])
    return votes + offsets[:, None, :]


def receptive_field_centres(
    grid_shape: tuple[int, int], image_shape: tuple[int, int], layers: Sequence[tuple[int, int]] = ()
) -> np.ndarray:
    """Centres of the receptive fields of a grid of positions, as (row, column) fractions of the image.

    ``layers`` are the ``(kernel, stride)`` of the VALID convolutions from the image to the grid.
    Position ``p`` sees pixels ``p * jump .. p * jump + field - 1``, where ``jump`` is the product of
    the strides and ``field`` the receptive field's size; its centre pixel is scaled to [0, 1] as
    ``(centre + 0.5) / size``. With no layers, the grid is the image: the centres of its cells.

    Args:
      grid_shape: ``(height, width)`` of the grid.
      image_shape: ``(height, width)`` of the image.
      layers: ``(kernel, stride)`` per layer, from the image up.

    Returns:
      float32 ``[height, width, 2]`` (NumPy: static, computed once at trace time).

    Example:
      >>> receptive_field_centres((2, 1), (8, 8), [(3, 2)])[:, 0, 0].tolist()   # pixels 1 and 3
      [0.1875, 0.4375]
    """
    field, jump = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
    axes = [
        (np.arange(n) * jump + (field - 1) / 2 + 0.5) / size for n, size in zip(grid_shape, image_shape, strict=True)
    ]
    rows, cols = np.meshgrid(*axes, indexing="ij")
    return np.stack([rows, cols], axis=-1).astype(np.float32)
