"""Flax NNX layers and models. Thin: they own parameters and call the pure functions of :mod:`capsjax.ops`.

Imports :mod:`capsjax.ops` only. Modules: ``layers`` (Conv2D, PrimaryCapsules, RoutedCapsules,
Decoder), ``capsnet`` and ``cnn`` (the paper's models and their configs), ``interface`` (what every
model takes and returns) and ``registry`` (models by name).
"""

from capsjax.nn.capsnet import CapsNet, CapsNetConfig, RoutingConfig
from capsjax.nn.cnn import BaselineCNN, CNNConfig
from capsjax.nn.interface import ModelOutput
from capsjax.nn.layers import Conv2D, Decoder, PrimaryCapsules, RoutedCapsules
from capsjax.nn.registry import MODELS, build_model, count_params

__all__ = [
    "MODELS",
    "BaselineCNN",
    "CNNConfig",
    "CapsNet",
    "CapsNetConfig",
    "Conv2D",
    "Decoder",
    "ModelOutput",
    "PrimaryCapsules",
    "RoutedCapsules",
    "RoutingConfig",
    "build_model",
    "count_params",
]
