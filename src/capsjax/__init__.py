"""capsjax: Capsule Networks (Sabour, Frosst & Hinton 2017) in JAX and Flax NNX.

The public names of the two lower layers, :mod:`capsjax.ops` (pure math) and :mod:`capsjax.nn`
(layers and models). Data, training and analysis live in :mod:`capsjax.data`,
:mod:`capsjax.training` and :mod:`capsjax.analysis`; see ARCHITECTURE.md for the layers.
"""

import warnings as _warnings

from capsjax.nn import (
    BaselineCNN,
    CapsNet,
    CapsNetConfig,
    ClassReadout,
    CNNConfig,
    Conv2D,
    Decoder,
    DepthwiseConv2D,
    EfficientCapsNet,
    EfficientCapsNetConfig,
    InvertedAttentionCapsules,
    MatrixCapsNet,
    MatrixCapsNetConfig,
    ModelOutput,
    PrimaryCapsules,
    RoutedCapsules,
    RoutingConfig,
    build_model,
    count_params,
)
from capsjax.ops import (
    LEARNED_ROUTING_PARAMETERS,
    ROUTING_FUNCTIONS,
    EMRoutingResult,
    RoutingFn,
    RoutingResult,
    capsule_votes,
    conv2d,
    coupling_coefficients,
    depthwise_conv2d,
    distillation_loss,
    dynamic_routing,
    efficient_squash,
    em_routing,
    em_routing_fn,
    get_routing,
    inverted_dot_product_routing,
    inverted_dot_product_routing_layers,
    label_mask,
    length_mask,
    margin_loss,
    mask_capsules,
    reconstruction_loss,
    safe_norm,
    self_attention_routing,
    spread_loss,
    spread_margin,
    squash,
)

__version__ = "0.1.0"

__all__ = [
    "EMRoutingResult",
    "efficient_squash",
    "em_routing",
    "em_routing_fn",
    "inverted_dot_product_routing",
    "inverted_dot_product_routing_layers",
    "load_weights",
    "self_attention_routing",
    "BaselineCNN",
    "CNNConfig",
    "CapsNet",
    "CapsNetConfig",
    "ClassReadout",
    "Conv2D",
    "DepthwiseConv2D",
    "Decoder",
    "EfficientCapsNet",
    "EfficientCapsNetConfig",
    "InvertedAttentionCapsules",
    "MatrixCapsNet",
    "MatrixCapsNetConfig",
    "ModelOutput",
    "PrimaryCapsules",
    "LEARNED_ROUTING_PARAMETERS",
    "ROUTING_FUNCTIONS",
    "RoutedCapsules",
    "RoutingConfig",
    "RoutingFn",
    "RoutingResult",
    "build_model",
    "capsule_votes",
    "conv2d",
    "depthwise_conv2d",
    "count_params",
    "coupling_coefficients",
    "dynamic_routing",
    "get_routing",
    "label_mask",
    "length_mask",
    "margin_loss",
    "mask_capsules",
    "reconstruction_loss",
    "distillation_loss",
    "safe_norm",
    "spread_loss",
    "spread_margin",
    "squash",
]


def load_weights(path):
    """The trained model stored in a weights file (``capsjax export``), with float32 parameters, in
    evaluation mode: a :class:`CapsNet`, :class:`BaselineCNN`, :class:`MatrixCapsNet` or
    :class:`EfficientCapsNet`, as the file's config says.

    The file is checked whole before the model is built; a file that is missing, damaged, holds
    non-finite values or describes a model that does not match its parameters (or is too large for
    this machine) raises :class:`capsjax.errors.WeightsError` naming the file (a missing one is
    also a ``FileNotFoundError``). See :func:`capsjax.training.weights.load_weights` (imported on
    first use: ``import capsjax`` stays light).
    """
    from capsjax.training.weights import load_weights as _load_weights

    return _load_weights(path)


# Old names kept importable; each warns once used.
_DEPRECATED = {"predict": ("capsule_votes", capsule_votes)}


def __getattr__(name: str):
    if name in _DEPRECATED:
        new_name, value = _DEPRECATED[name]
        _warnings.warn(f"capsjax.{name} is deprecated; use capsjax.{new_name}", DeprecationWarning, stacklevel=2)
        return value
    raise AttributeError(f"module 'capsjax' has no attribute {name!r}")
