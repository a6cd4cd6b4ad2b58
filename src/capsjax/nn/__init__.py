"""Flax NNX layers and models. Thin: they own parameters and call the pure functions of :mod:`capsjax.ops`.

Imports :mod:`capsjax.ops` only. Modules: ``layers`` (Conv2D, DepthwiseConv2D, PrimaryCapsules,
RoutedCapsules, Decoder), ``capsnet`` and ``cnn`` (the paper's models and their configs), ``matrix_capsules``
(PrimaryMatrixCapsules, ConvCapsules, ClassCapsules: matrix capsules with EM routing) and
``matrix_capsnet`` (Hinton et al. 2018's network and its config), ``efficient_capsnet``
(Efficient-CapsNet, Mazzia et al. 2021: batch norm, self-attention routing, and its config),
``interface`` (what every model takes and returns, and :func:`~capsjax.nn.interface.with_mode`:
training or evaluation mode for batch norm) and ``registry`` (models by name).
"""

from capsjax.nn.capsnet import CapsNet, CapsNetConfig, RoutingConfig
from capsjax.nn.cnn import BaselineCNN, CNNConfig
from capsjax.nn.efficient_capsnet import EfficientCapsNet, EfficientCapsNetConfig
from capsjax.nn.interface import ModelOutput, with_mode
from capsjax.nn.layers import (
    ClassReadout,
    Conv2D,
    Decoder,
    DepthwiseConv2D,
    InvertedAttentionCapsules,
    PrimaryCapsules,
    RoutedCapsules,
)
from capsjax.nn.matrix_capsnet import MatrixCapsNet, MatrixCapsNetConfig
from capsjax.nn.matrix_capsules import ClassCapsules, ConvCapsules, MatrixCapsules, PrimaryMatrixCapsules
from capsjax.nn.registry import MODELS, build_model, count_params

__all__ = [
    "ClassReadout",
    "InvertedAttentionCapsules",
    "MODELS",
    "BaselineCNN",
    "CNNConfig",
    "CapsNet",
    "CapsNetConfig",
    "ClassCapsules",
    "Conv2D",
    "ConvCapsules",
    "Decoder",
    "DepthwiseConv2D",
    "EfficientCapsNet",
    "EfficientCapsNetConfig",
    "MatrixCapsNet",
    "MatrixCapsNetConfig",
    "MatrixCapsules",
    "ModelOutput",
    "PrimaryCapsules",
    "PrimaryMatrixCapsules",
    "RoutedCapsules",
    "RoutingConfig",
    "build_model",
    "count_params",
    "with_mode",
]
