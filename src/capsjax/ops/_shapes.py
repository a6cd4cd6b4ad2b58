"""Input validation shared by the public functions: clear errors instead of deep XLA shape errors."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp


def check_shape(name: str, x, expected: Sequence[int | str | None]) -> None:
    """Raise ValueError unless `x` has rank len(expected) and matches every int entry.

    Entries that are strings or None are free dimensions; their text is only used in the message,
    e.g. ``check_shape("u", u, ("in_caps", 8))``.
    """
    shape = jnp.shape(x)
    pretty = "[" + ", ".join(str(e) if e is not None else "?" for e in expected) + "]"
    if len(shape) != len(expected):
        raise ValueError(f"{name}: expected rank {len(expected)} {pretty}, got shape {tuple(shape)}")
    for got, want in zip(shape, expected, strict=True):
        if isinstance(want, int) and got != want:
            raise ValueError(f"{name}: expected shape {pretty}, got shape {tuple(shape)}")
