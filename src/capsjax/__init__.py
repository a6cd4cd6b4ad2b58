"""capsjax: Capsule Networks (Sabour, Frosst & Hinton 2017) in JAX and Flax NNX."""

from capsjax.conv import conv2d
from capsjax.layers import Conv2D, Decoder, PrimaryCapsules, RoutedCapsules
from capsjax.losses import margin_loss, reconstruction_loss
from capsjax.masking import label_mask, length_mask, mask_capsules
from capsjax.models import (
    BaselineCNN,
    CapsNet,
    CapsNetConfig,
    CNNConfig,
    ModelOutput,
    RoutingConfig,
    build_model,
    count_params,
)
from capsjax.prediction import predict
from capsjax.routing import (
    ROUTING_FUNCTIONS,
    RoutingResult,
    coupling_coefficients,
    dynamic_routing,
    get_routing,
)
from capsjax.squash import safe_norm, squash

__version__ = "0.1.0"

__all__ = [
    "BaselineCNN",
    "CNNConfig",
    "CapsNet",
    "CapsNetConfig",
    "Conv2D",
    "Decoder",
    "ModelOutput",
    "PrimaryCapsules",
    "ROUTING_FUNCTIONS",
    "RoutedCapsules",
    "RoutingConfig",
    "RoutingResult",
    "build_model",
    "conv2d",
    "count_params",
    "coupling_coefficients",
    "dynamic_routing",
    "get_routing",
    "label_mask",
    "length_mask",
    "margin_loss",
    "mask_capsules",
    "predict",
    "reconstruction_loss",
    "safe_norm",
    "squash",
]
