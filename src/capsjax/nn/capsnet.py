"""The CapsNet of Sabour et al. (2017) and its configuration."""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

import capsjax.nn.config_rules as rules
from capsjax.nn.interface import ModelOutput, check_images
from capsjax.nn.layers import KERNEL_INITS, ClassReadout, Conv2D, Decoder, PrimaryCapsules, RoutedCapsules
from capsjax.ops.convolution import LOWERINGS
from capsjax.ops.routing import ROUTING_FUNCTIONS
from capsjax.ops.routing_types import learned_parameters
from capsjax.ops.squashing import safe_norm

EM_COSTS = ("standardised", "paper")
SCORES = ("length", "activation", "linear")


@dataclasses.dataclass(frozen=True)
class RoutingConfig(rules.Checked):
    """Routing between primary and class capsules; defaults are the paper's.

    ``learn``: learn the routing algorithm's own parameters (EM's ``beta_u`` and ``beta_a``,
    self-attention's log priors, inverted dot-product's layer-norm scale and offset), as their papers
    do; dynamic routing has none (True is then an error). False (the default, as configs saved
    before the option) leaves them out: the routing functions' defaults apply.

    ``em_cost``: EM routing's cost, ``"standardised"`` over the output capsules (the default:
    :func:`~capsjax.ops.em_routing.em_routing_fn` with ``normalize_cost=True``) or ``"paper"``
    (Hinton et al. 2018's formula, ``normalize_cost=False``; in CapsNet it stayed at chance, see
    RESULTS.md). Other algorithms take only the default.
    """

    name: str = "dynamic"
    num_iters: int = 3
    bias: bool = False
    leaky: bool = False
    stop_gradient: bool = False
    remat: bool = False
    chunk_size: int | None = None  # examples per routing chunk; None: 1 on CPU, whole batch elsewhere
    learn: bool = False
    em_cost: str = "standardised"

    RULES: ClassVar[dict[str, rules.Rule]] = {
        "name": rules.one_of(ROUTING_FUNCTIONS),
        "num_iters": rules.NUM_ITERS,
        "bias": rules.BOOL,
        "leaky": rules.BOOL,
        "stop_gradient": rules.BOOL,
        "remat": rules.BOOL,
        "chunk_size": rules.or_none(rules.NON_NEGATIVE, "None or an integer >= 0"),
        "learn": rules.BOOL,
        "em_cost": rules.one_of(EM_COSTS),
    }

    def check_together(self, prefix: str = "config.") -> None:
        """Options of one routing algorithm set for another; ``learn`` for an algorithm with nothing to learn.

        Raises:
          ConfigError: one line naming both fields.
        """
        name = f"{prefix}name = {self.name!r}"
        if self.name != "em" and self.em_cost != "standardised":
            raise rules.refuse(f"{prefix}em_cost", self.em_cost, f"'standardised' with {name} (it is EM's option)")
        for option in ("leaky", "stop_gradient"):
            if self.name != "dynamic" and getattr(self, option):
                raise rules.refuse(prefix + option, True, f"false with {name} (it is dynamic routing's option)")
        if self.learn and not learned_parameters(ROUTING_FUNCTIONS[self.name]):
            raise rules.refuse(f"{prefix}learn", True, f"false with {name} (it has no parameters to learn)")


@functools.cache
def routing_gives_activations(name: str) -> bool:
    """Whether the routing algorithm ``name`` returns output activations (EM does), traced on tiny shapes."""
    votes = jax.ShapeDtypeStruct((2, 2, 4), jnp.float32)
    return jax.eval_shape(lambda v: ROUTING_FUNCTIONS[name](v, num_iters=1), votes).activations is not None


@dataclasses.dataclass(frozen=True)
class CapsNetConfig(rules.Checked):
    """The CapsNet architecture. The defaults are the paper's MNIST network (8,215,568 parameters).

    ``scores``: how a class capsule gives its class's score (in [0, 1], for the margin loss):
    ``"length"`` (the paper's), ``"activation"`` (the routing's output activations: EM routing's,
    as in matrix capsules) or ``"linear"`` (a learned linear readout of each class capsule's pose
    through a sigmoid, as inverted dot-product routing's paper classifies its capsules' poses).

    ``kernel_init``: the initializer of the two convolutions' and the decoder's kernels, a name in
    :data:`~capsjax.nn.layers.KERNEL_INITS`: ``"lecun_normal"`` (Flax's default, as configs saved
    before the option) or ``"glorot_uniform"`` (Keras's, as CapsNet-Keras). The class capsules' ``W``
    is set by ``w_init_std`` either way.
    """

    image_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    conv_channels: int = 256
    conv_kernel: int = 9
    primary_types: int = 32
    primary_dim: int = 8
    primary_kernel: int = 9
    primary_stride: int = 2
    class_dim: int = 16
    routing: RoutingConfig = RoutingConfig()
    decoder_hidden: tuple[int, ...] = (512, 1024)
    w_init_std: float = 0.01
    conv_lowering: str = "auto"
    compute_dtype: str = "float32"
    scores: str = "length"
    kernel_init: str = "lecun_normal"

    RULES: ClassVar[dict[str, rules.Rule]] = {
        "image_shape": rules.IMAGE_SHAPE,
        "num_classes": rules.NUM_CLASSES,
        "conv_channels": rules.SIZE,
        "conv_kernel": rules.KERNEL,
        "primary_types": rules.SIZE,
        "primary_dim": rules.SIZE,
        "primary_kernel": rules.KERNEL,
        "primary_stride": rules.KERNEL,
        "class_dim": rules.SIZE,
        "decoder_hidden": rules.sizes(),
        "w_init_std": rules.POSITIVE_NUMBER,
        "conv_lowering": rules.one_of(LOWERINGS),
        "compute_dtype": rules.COMPUTE_DTYPE,
        "scores": rules.one_of(SCORES),
        "kernel_init": rules.one_of(KERNEL_INITS),
    }

    def check_together(self, prefix: str = "config.") -> None:
        """The image fits both convolutions; the routing's options fit it; its scores are ones it gives.

        Raises:
          ConfigError: one line naming the fields that do not fit together.
        """
        smallest = self.conv_kernel + self.primary_kernel - 1
        if min(self.image_shape[:2]) < smallest:
            raise rules.refuse(
                f"{prefix}image_shape",
                self.image_shape,
                f"at least {smallest}x{smallest} for {prefix}conv_kernel = {self.conv_kernel} "
                f"then {prefix}primary_kernel = {self.primary_kernel}",
            )
        self.routing.check_together(f"{prefix}routing.")
        if self.scores == "activation" and not routing_gives_activations(self.routing.name):
            raise rules.refuse(
                f"{prefix}scores",
                self.scores,
                f"'length' or 'linear' with {prefix}routing.name = {self.routing.name!r} "
                "(it gives no activations; EM does)",
            )


def _routing_options(routing: RoutingConfig) -> dict:
    """The routing function's options: dynamic routing's ``leaky`` and ``stop_gradient``, EM's cost.

    Raises:
      ValueError: an option given to an algorithm it is not for, or ``em_cost`` not in ``EM_COSTS``.
    """
    if routing.em_cost not in EM_COSTS:
        raise ValueError(f"routing.em_cost must be one of {EM_COSTS}, got {routing.em_cost!r}")
    if routing.name != "em" and routing.em_cost != "standardised":
        raise ValueError(f"routing.em_cost applies to EM routing, not {routing.name!r}")
    if routing.name != "dynamic" and (routing.leaky or routing.stop_gradient):
        raise ValueError(f"routing.leaky and routing.stop_gradient apply to dynamic routing, not {routing.name!r}")
    if routing.name == "dynamic":
        return {"leaky": routing.leaky, "stop_gradient": routing.stop_gradient}
    if routing.name == "em":
        return {"normalize_cost": routing.em_cost == "standardised"}
    return {}


def _gives_activations(layer: RoutedCapsules) -> bool:
    """Whether the layer's routing returns output activations (traced on one example's shapes only)."""
    in_caps, out_caps, out_dim, _ = layer.W.shape
    votes = jax.ShapeDtypeStruct((in_caps, out_caps, out_dim), jnp.float32)
    result = jax.eval_shape(lambda v: layer.routing_fn(v, num_iters=layer.num_iters, **layer._options()), votes)
    return result.activations is not None


class CapsNet(nnx.Module):
    """The CapsNet of Sabour et al. (2017), Fig. 1 and 2.

    conv 256@9x9 ReLU -> primary capsules (32 x 8D on a 6x6 grid) -> 10 x 16D class capsules by
    dynamic routing -> decoder 512 -> 1024 -> 784 from the masked class capsules.

    Args:
      config: a :class:`CapsNetConfig`; None means the paper's MNIST network.
      rngs: parameter initialisation.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from capsjax import CapsNet
      >>> out = CapsNet(rngs=nnx.Rngs(0))(jnp.zeros((2, 28, 28, 1)))
      >>> out.scores.shape, out.capsules.shape, out.reconstructions.shape
      ((2, 10), (2, 10, 16), (2, 28, 28, 1))
    """

    def __init__(self, config: CapsNetConfig | None = None, *, rngs: nnx.Rngs):
        config = config or CapsNetConfig()
        self.config = config
        dtype = jnp.dtype(config.compute_dtype)
        height, width, channels = config.image_shape
        self.conv = Conv2D(
            channels,
            config.conv_channels,
            config.conv_kernel,
            lowering=config.conv_lowering,
            kernel_init=config.kernel_init,
            dtype=dtype,
            rngs=rngs,
        )
        self.primary = PrimaryCapsules(
            config.conv_channels,
            num_types=config.primary_types,
            caps_dim=config.primary_dim,
            kernel_size=config.primary_kernel,
            stride=config.primary_stride,
            lowering=config.conv_lowering,
            kernel_init=config.kernel_init,
            dtype=dtype,
            rngs=rngs,
        )
        smallest = config.conv_kernel + config.primary_kernel - 1
        if min(height, width) < smallest:
            layer = "first conv" if min(height, width) < config.conv_kernel else "primary capsules' conv"
            k1, k2 = config.conv_kernel, config.primary_kernel
            raise ValueError(
                f"config.image_shape {config.image_shape} is too small for the {layer} ({k1}x{k1} conv, then "
                f"{k2}x{k2}): the smallest image that works is {smallest}x{smallest}"
            )
        grid_h, grid_w = self.primary.grid_size(height - config.conv_kernel + 1, width - config.conv_kernel + 1)
        self.primary_grid = (grid_h, grid_w)
        self.num_primary = grid_h * grid_w * config.primary_types
        routing = config.routing
        self.classes = RoutedCapsules(
            self.num_primary,
            config.primary_dim,
            config.num_classes,
            config.class_dim,
            routing=routing.name,
            num_iters=routing.num_iters,
            routing_options=_routing_options(routing),
            use_bias=routing.bias,
            remat=routing.remat,
            chunk_size=routing.chunk_size,
            learn_routing=routing.learn,
            w_init_std=config.w_init_std,
            dtype=dtype,
            rngs=rngs,
        )
        if config.scores not in SCORES:
            raise ValueError(f"config.scores: expected one of {list(SCORES)}, got {config.scores!r}")
        if config.scores == "activation" and not _gives_activations(self.classes):
            raise ValueError(f"config.scores = 'activation': routing {routing.name!r} gives no activations (EM does)")
        self.readout = (
            ClassReadout(config.num_classes, config.class_dim, rngs=rngs) if config.scores == "linear" else None
        )
        self.decoder = Decoder(
            config.num_classes,
            config.class_dim,
            config.image_shape,
            hidden=config.decoder_hidden,
            kernel_init=config.kernel_init,
            dtype=dtype,
            rngs=rngs,
        )

    def primary_capsules(self, x: Float[Array, "batch height width channels"]) -> Float[Array, "batch in_caps in_dim"]:
        """Images -> primary capsules ``[batch, in_caps, primary_dim]`` (ordered row, column, type)."""
        check_images(x, self.config.image_shape)
        return self.primary(jax.nn.relu(self.conv(x)))

    def encode(self, x: Float[Array, "batch height width channels"], *, fused: bool = False):
        """Images -> (class capsules ``[batch, classes, dim]``, couplings ``[batch, in_caps, classes]``).

        ``fused``: route with the faster forward pass of :class:`RoutedCapsules` (same result).
        """
        routed = self.classes(self.primary_capsules(x), fused=fused)
        return routed.v, routed.c

    def class_scores(
        self, capsules: Float[Array, "batch classes dim"], activations=None
    ) -> Float[Array, "batch classes"]:
        """Each class's score in [0, 1] by ``config.scores`` (``activations``: the routing's, ``[batch, classes]``)."""
        if self.config.scores == "activation":
            return activations
        if self.config.scores == "linear":
            return self.readout(capsules)
        return safe_norm(capsules, eps=1e-9)

    def reconstruct(
        self, capsules: Float[Array, "batch classes dim"], mask: Float[Array, "batch classes"]
    ) -> Float[Array, "batch height width channels"]:
        """Decode the capsules selected by ``mask`` (one-hot rows) into images."""
        return self.decoder(capsules, mask)

    def __call__(
        self, x: Float[Array, "batch height width channels"], labels=None, *, dropout_key=None, reconstruct: bool = True
    ) -> ModelOutput:
        """Classify and reconstruct.

        Args:
          x: images ``[batch, height, width, channels]`` in [0, 1].
          labels: integer classes ``[batch]`` to mask the decoder input with (training); None
            masks by the best class score (evaluation). With ``[batch, objects]`` labels
            (MultiMNIST) each object's capsule is decoded alone: reconstructions are then
            ``[batch, objects, height, width, channels]``.
          dropout_key: unused (CapsNet has no dropout); accepted so that models are interchangeable.
          reconstruct: run the decoder; False leaves ``reconstructions`` None: classification only,
            with the fused routing whose forward pass is faster (inference).

        Returns:
          :class:`ModelOutput`.
        """
        routed = self.classes(self.primary_capsules(x), fused=not reconstruct)
        capsules = routed.v
        scores = self.class_scores(capsules, routed.activations)
        reconstructions = self.decoder.by_labels(capsules, labels, scores) if reconstruct else None
        return ModelOutput(scores=scores, capsules=capsules, reconstructions=reconstructions, couplings=routed.c)
