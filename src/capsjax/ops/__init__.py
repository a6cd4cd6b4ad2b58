"""Pure capsule math, written for ONE example and batched with ``jax.vmap`` where it is used.

The lowest layer of capsjax: it imports JAX and nothing else of the package. Modules:
``squashing`` (eq. 1), ``voting`` (eq. 2), ``routing`` (Procedure 1 and the registry of routing
algorithms), ``attention_routing`` (Efficient-CapsNet's self-attention routing, inverted dot-product
attention routing), ``em_routing`` (EM routing between matrix capsules), ``matrix_votes`` (votes of
matrix capsules, coordinate addition), ``routing_types``, ``masking`` (class masks),
``losses`` (eq. 4 and the reconstruction loss), ``convolution`` (conv lowerings),
``preprocess`` (uint8 to float, random shifts and crops) and ``augmentation`` (rotations, squishes,
erased patches and shifts within the margins, by resampling).

Values are not checked here (these functions run under ``jit``, where they cannot be): NaN or
infinite inputs propagate to NaN outputs and gradients, never to an error or a silent finite value.
The layers above check shapes; :class:`capsjax.CapsNet` also refuses non-finite images outside
``jit``, and the training loop stops on the first non-finite loss or gradient.
"""

from capsjax.ops.attention_routing import (
    efficient_squash,
    inverted_dot_product_routing,
    inverted_dot_product_routing_layers,
    self_attention_routing,
)
from capsjax.ops.augmentation import augment, augment_batch
from capsjax.ops.convolution import conv2d, depthwise_conv2d
from capsjax.ops.em_routing import EMRoutingResult, em_routing, em_routing_fn
from capsjax.ops.losses import distillation_loss, margin_loss, reconstruction_loss, spread_loss, spread_margin
from capsjax.ops.masking import label_mask, length_mask, mask_capsules, multi_hot
from capsjax.ops.matrix_votes import class_votes, matrix_votes, receptive_field_centres
from capsjax.ops.preprocess import random_shift, shift_batch, to_float
from capsjax.ops.routing import (
    ROUTING_FUNCTIONS,
    RoutingFn,
    RoutingResult,
    coupling_coefficients,
    dynamic_routing,
    get_routing,
)
from capsjax.ops.routing_types import LEARNED_ROUTING_PARAMETERS, learned_parameters
from capsjax.ops.squashing import safe_norm, squash
from capsjax.ops.voting import capsule_votes

__all__ = [
    "EMRoutingResult",
    "LEARNED_ROUTING_PARAMETERS",
    "learned_parameters",
    "augment",
    "augment_batch",
    "efficient_squash",
    "em_routing",
    "em_routing_fn",
    "inverted_dot_product_routing",
    "inverted_dot_product_routing_layers",
    "self_attention_routing",
    "ROUTING_FUNCTIONS",
    "RoutingFn",
    "RoutingResult",
    "capsule_votes",
    "class_votes",
    "conv2d",
    "coupling_coefficients",
    "distillation_loss",
    "depthwise_conv2d",
    "dynamic_routing",
    "get_routing",
    "label_mask",
    "length_mask",
    "margin_loss",
    "mask_capsules",
    "matrix_votes",
    "multi_hot",
    "random_shift",
    "receptive_field_centres",
    "reconstruction_loss",
    "safe_norm",
    "shift_batch",
    "spread_loss",
    "spread_margin",
    "squash",
    "to_float",
]
