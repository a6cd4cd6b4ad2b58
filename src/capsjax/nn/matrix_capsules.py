"""Matrix capsule layers (Hinton, Sabour, Frosst 2018): primary, convolutional and class capsules.

A layer of matrix capsules is a grid of ``types`` capsules per position, each a 4x4 pose matrix
(stored flat, ``16`` values) and an activation in (0, 1): poses ``[batch, h, w, types, 16]`` and
activations ``[batch, h, w, types]``. The layers own their parameters and call the pure functions
:func:`capsjax.ops.matrix_votes.matrix_votes`, :func:`capsjax.ops.matrix_votes.class_votes` and
:func:`capsjax.ops.em_routing.em_routing`, batched with ``jax.vmap`` over the examples (and the
output positions).

Routing in :class:`ConvCapsules` runs independently at each output position, over the capsules of
its receptive field: a lower capsule that falls in several receptive fields is assigned within each
of them separately (the paper normalises its assignments over all its parents together; the
per-position form is what most public implementations do, and it is one ``vmap``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from capsjax.nn.layers import Conv2D
from capsjax.ops._shapes import check_shape
from capsjax.ops.convolution import Lowering, conv_output_size, extract_patches
from capsjax.ops.em_routing import EMRoutingResult, em_routing, inverse_temperatures
from capsjax.ops.matrix_votes import POSE_DIM, class_votes, matrix_votes, receptive_field_centres


class MatrixCapsules(NamedTuple):
    """A grid of matrix capsules for a batch.

    Attributes:
      poses: ``[batch, h, w, types, 16]`` (4x4 pose matrices, row-major).
      activations: ``[batch, h, w, types]`` in (0, 1).
    """

    poses: Float[Array, "batch h w types 16"]
    activations: Float[Array, "batch h w types"]


def _schedule(num_iters: int, inverse_temperature: float, in_caps: int, out_caps: int) -> tuple[float, ...]:
    # The activations' cost grows with the mass assigned to a parent, about in_caps / out_caps times
    # the mean input activation: scaling the inverse temperature by out_caps / in_caps makes the same
    # value suit every layer size (Gritzman 2019, "Avoiding implementation pitfalls of matrix capsule
    # networks", discusses normalising this assigned mass).
    return inverse_temperatures(num_iters, final=inverse_temperature * out_caps / in_caps)


def _transformation_matrices(rngs: nnx.Rngs, shape: tuple[int, ...], std: float) -> nnx.Param:
    return nnx.Param(std * jax.random.normal(rngs.params(), shape, jnp.float32))


def _check_capsules(poses, activations, types: int) -> None:
    check_shape("poses", poses, ("batch", "h", "w", types, POSE_DIM))
    check_shape("activations", activations, jnp.shape(poses)[:4])


class PrimaryMatrixCapsules(nnx.Module):
    """A 1x1 convolution from features to ``num_types`` matrix capsules per position.

    Each position of the feature map ``[batch, h, w, in_channels]`` gives ``num_types`` capsules:
    16 channels of a type are its 4x4 pose, one more channel through a sigmoid its activation.

    Parameters: ``conv.kernel [1, 1, in_channels, num_types * 17]`` (LeCun-normal) and ``conv.bias
    [num_types * 17]`` (zeros), laid out as ``num_types * 16`` pose channels, then ``num_types``
    activation channels.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from capsjax.nn import PrimaryMatrixCapsules
      >>> caps = PrimaryMatrixCapsules(8, num_types=4, rngs=nnx.Rngs(0))(jnp.ones((2, 5, 5, 8)))
      >>> caps.poses.shape, caps.activations.shape
      ((2, 5, 5, 4, 16), (2, 5, 5, 4))
    """

    def __init__(
        self,
        in_channels: int,
        *,
        num_types: int = 32,
        lowering: Lowering = "auto",
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.conv = Conv2D(in_channels, num_types * (POSE_DIM + 1), 1, lowering=lowering, dtype=dtype, rngs=rngs)
        self.in_channels = in_channels
        self.num_types = num_types

    def __call__(self, features: Float[ArrayLike, "batch h w in_channels"]) -> MatrixCapsules:
        """Features ``[batch, h, w, in_channels]`` -> :class:`MatrixCapsules` (``[batch, h, w, num_types, 16]``
        poses, ``[batch, h, w, num_types]`` activations; float32)."""
        check_shape("features", features, ("batch", "h", "w", self.in_channels))
        y = self.conv(jnp.asarray(features)).astype(jnp.float32)
        batch, height, width, _ = y.shape
        split = self.num_types * POSE_DIM
        poses = y[..., :split].reshape(batch, height, width, self.num_types, POSE_DIM)
        return MatrixCapsules(poses=poses, activations=jax.nn.sigmoid(y[..., split:]))


class ConvCapsules(nnx.Module):
    """Convolutional matrix capsules: EM routing from each ``kernel_size x kernel_size`` receptive field.

    Each output position receives the ``kernel_size**2 * in_types`` capsules of its receptive field
    (VALID, stride ``stride``); each votes for every output type with a 4x4 transformation matrix
    per (kernel row, kernel column, input type, output type), shared over positions:
    ``votes = pose @ W``. Then :func:`capsjax.ops.em_routing.em_routing` at every output position
    and example (``vmap``) with learned ``beta_u`` and ``beta_a`` per output type.

    Parameters: ``W [kernel_size, kernel_size, in_types, out_types, 4, 4]`` (normal, std
    ``w_init_std``) and ``beta_u``, ``beta_a [out_types]`` (zeros). The default std is
    ``sqrt(in_caps / out_types)`` with ``in_caps = kernel_size**2 * in_types``: an output pose is a
    mean of votes (fewer than ``in_caps`` count once routing has assigned them), so a smaller std
    shrinks the poses, and the clusters' log-variances in the activations' cost, at every layer
    until the activations saturate. Measured at initialisation, this std keeps the poses' std
    within about 25% from layer to layer for both presets of
    :class:`~capsjax.nn.matrix_capsnet.MatrixCapsNetConfig`.

    Args:
      in_types, out_types: capsule types per position below and here.
      kernel_size, stride: of the convolution over positions (the paper: 3, and stride 2 then 1).
      num_iters: EM iterations (the paper: 3).
      inverse_temperature: the final inverse temperature of EM routing per unit of mean assigned
        mass: routing gets ``inverse_temperatures(num_iters, final=inverse_temperature * out_caps /
        in_caps)`` (0.01 for the paper's convolutional capsule layers).
      w_init_std: std of the initial transformation matrices (None: the default above).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from capsjax.nn import ConvCapsules
      >>> layer = ConvCapsules(4, 6, kernel_size=3, stride=2, rngs=nnx.Rngs(0))
      >>> out = layer(jnp.ones((2, 7, 7, 4, 16)), jnp.ones((2, 7, 7, 4)))
      >>> out.poses.shape, out.activations.shape
      ((2, 3, 3, 6, 16), (2, 3, 3, 6))
    """

    def __init__(
        self,
        in_types: int,
        out_types: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        num_iters: int = 3,
        inverse_temperature: float = 0.1,
        w_init_std: float | None = None,
        rngs: nnx.Rngs,
    ):
        in_caps = kernel_size * kernel_size * in_types
        std = (in_caps / out_types) ** 0.5 if w_init_std is None else w_init_std
        self.W = _transformation_matrices(rngs, (kernel_size, kernel_size, in_types, out_types, 4, 4), std)
        self.beta_u = nnx.Param(jnp.zeros((out_types,), jnp.float32))
        self.beta_a = nnx.Param(jnp.zeros((out_types,), jnp.float32))
        self.in_types = in_types
        self.out_types = out_types
        self.kernel_size = kernel_size
        self.stride = stride
        self.temperatures = _schedule(num_iters, inverse_temperature, in_caps, out_types)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Output grid for an input grid of ``height x width`` positions."""
        return (
            conv_output_size(height, self.kernel_size, self.stride),
            conv_output_size(width, self.kernel_size, self.stride),
        )

    def __call__(
        self, poses: Float[ArrayLike, "batch h w in_types 16"], activations: Float[ArrayLike, "batch h w in_types"]
    ) -> EMRoutingResult:
        """Route a batch of capsule grids.

        Args:
          poses: ``[batch, h, w, in_types, 16]``.
          activations: ``[batch, h, w, in_types]``.

        Returns:
          :class:`~capsjax.ops.em_routing.EMRoutingResult` with leading ``[batch, h', w']`` axes:
          poses ``[batch, h', w', out_types, 16]``, activations ``[batch, h', w', out_types]``,
          assignments ``[batch, h', w', kernel_size**2 * in_types, out_types]`` (inputs ordered kernel
          row, kernel column, type), variances ``[batch, h', w', out_types, 16]``, log_assignments
          shaped as the assignments.
        """
        poses, activations = jnp.asarray(poses, jnp.float32), jnp.asarray(activations, jnp.float32)
        _check_capsules(poses, activations, self.in_types)
        batch, height, width, types, _ = poses.shape
        k = self.kernel_size
        if height < k or width < k:
            raise ValueError(f"poses: spatial size {(height, width)} is smaller than the kernel {(k, k)}")
        # One gather of every receptive field, poses and activations together: [b, h', w', k*k*types*17].
        stacked = jnp.concatenate([poses, activations[..., None]], axis=-1).reshape(batch, height, width, -1)
        patches = extract_patches(stacked, kernel_size=(k, k), stride=self.stride)
        _, out_h, out_w, _ = patches.shape
        patches = patches.reshape(batch * out_h * out_w, k * k * types, POSE_DIM + 1)
        W = self.W[...].reshape(k * k * types, self.out_types, 4, 4)
        beta_u, beta_a, temperatures = self.beta_u[...], self.beta_a[...], self.temperatures

        def route_one(patch):
            votes = matrix_votes(patch[:, :POSE_DIM], W)
            a_in = patch[:, POSE_DIM]
            return em_routing(
                votes, a_in, beta_u=beta_u, beta_a=beta_a, num_iters=len(temperatures), temperatures=temperatures
            )

        routed = jax.vmap(route_one)(patches)
        return jax.tree.map(lambda x: x.reshape((batch, out_h, out_w) + x.shape[1:]), routed)


class ClassCapsules(nnx.Module):
    """Class capsules: every capsule of every position votes for each class, with coordinate addition.

    One 4x4 transformation matrix per (input type, class), shared over positions; the scaled
    (row, column) of each input position's receptive field centre is added to vote elements 3 and
    7 (:func:`capsjax.ops.matrix_votes.class_votes`); then
    :func:`capsjax.ops.em_routing.em_routing` per example with learned ``beta_u`` and ``beta_a``
    per class.

    Parameters: ``W [in_types, num_classes, 4, 4]`` (normal, std ``w_init_std``) and ``beta_u``,
    ``beta_a [num_classes]`` (zeros). With the default std 1 the votes have about 4 times the
    variance of the poses below (about 0.04 to 0.4 at initialisation for images in [0, 1]
    through :class:`ConvCapsules`), so the clusters' log-variances start near 0 and the class activations
    away from saturation.

    Args:
      in_types, num_classes: capsule types per position below, and classes.
      num_iters: EM iterations (the paper: 3).
      inverse_temperature: the final inverse temperature of EM routing per unit of mean assigned
        mass: routing gets ``inverse_temperatures(num_iters, final=inverse_temperature * out_caps /
        in_caps)`` (about 0.0035 for the paper's class capsules: 288 inputs, 32 types on a
        3x3 grid, to 10 classes).
      w_init_std: std of the initial transformation matrices.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from capsjax.nn import ClassCapsules
      >>> out = ClassCapsules(4, 5, rngs=nnx.Rngs(0))(jnp.ones((2, 3, 3, 4, 16)), jnp.ones((2, 3, 3, 4)))
      >>> out.poses.shape, out.activations.shape, out.assignments.shape
      ((2, 5, 16), (2, 5), (2, 36, 5))
    """

    def __init__(
        self,
        in_types: int,
        num_classes: int,
        *,
        num_iters: int = 3,
        inverse_temperature: float = 0.1,
        w_init_std: float = 1.0,
        rngs: nnx.Rngs,
    ):
        self.W = _transformation_matrices(rngs, (in_types, num_classes, 4, 4), w_init_std)
        self.beta_u = nnx.Param(jnp.zeros((num_classes,), jnp.float32))
        self.beta_a = nnx.Param(jnp.zeros((num_classes,), jnp.float32))
        self.in_types = in_types
        self.num_classes = num_classes
        self.num_iters = num_iters
        self.inverse_temperature = inverse_temperature

    def __call__(
        self,
        poses: Float[ArrayLike, "batch h w in_types 16"],
        activations: Float[ArrayLike, "batch h w in_types"],
        *,
        coordinates: Float[ArrayLike, "h w 2"] | None = None,
    ) -> EMRoutingResult:
        """Route a batch of capsule grids to the class capsules.

        Args:
          poses: ``[batch, h, w, in_types, 16]``.
          activations: ``[batch, h, w, in_types]``.
          coordinates: ``[h, w, 2]``, the (row, column) in [0, 1] added to each position's votes
            (:func:`capsjax.ops.matrix_votes.receptive_field_centres`); None: the centres of the
            input grid's cells.

        Returns:
          :class:`~capsjax.ops.em_routing.EMRoutingResult` with a leading batch axis: poses
          ``[batch, num_classes, 16]``, activations ``[batch, num_classes]``, assignments
          ``[batch, h * w * in_types, num_classes]`` (inputs ordered row, column, type), variances
          ``[batch, num_classes, 16]``, log_assignments shaped as the assignments.
        """
        poses, activations = jnp.asarray(poses, jnp.float32), jnp.asarray(activations, jnp.float32)
        _check_capsules(poses, activations, self.in_types)
        _, height, width, types, _ = poses.shape
        if coordinates is None:
            coordinates = receptive_field_centres((height, width), (height, width))
        check_shape("coordinates", coordinates, (height, width, 2))
        W, beta_u, beta_a = self.W[...], self.beta_u[...], self.beta_a[...]
        temperatures = _schedule(self.num_iters, self.inverse_temperature, height * width * types, self.num_classes)

        def route_one(poses_one, activations_one):
            votes = class_votes(poses_one, W, coordinates)
            a_in = activations_one.reshape(-1)
            return em_routing(
                votes, a_in, beta_u=beta_u, beta_a=beta_a, num_iters=len(temperatures), temperatures=temperatures
            )

        return jax.vmap(route_one)(poses, activations)
