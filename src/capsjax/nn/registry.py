"""Models by name: what a config's ``model`` field chooses."""

from __future__ import annotations

import jax
from flax import nnx

from capsjax.nn.capsnet import CapsNet
from capsjax.nn.cnn import BaselineCNN
from capsjax.nn.efficient_capsnet import EfficientCapsNet
from capsjax.nn.matrix_capsnet import MatrixCapsNet

MODELS = {
    "capsnet": CapsNet,
    "cnn": BaselineCNN,
    "matrix_capsnet": MatrixCapsNet,
    "efficient_capsnet": EfficientCapsNet,
}
"""Model classes by name; each is built as ``cls(config, rngs=...)``."""


def build_model(name: str, config, *, rngs: nnx.Rngs) -> nnx.Module:
    """Build a model by name (a key of :data:`MODELS`: ``"capsnet"``, ``"cnn"``, ``"matrix_capsnet"``,
    ``"efficient_capsnet"``) from its config dataclass."""
    if name not in MODELS:
        raise ValueError(f"model: unknown name {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](config, rngs=rngs)


def count_params(model: nnx.Module) -> int:
    """Number of scalar parameters of a model."""
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
