"""Rules for config fields: each config dataclass lists a rule per field beside its fields and checks itself.

A rule is a pair ``(test, allowed)``: ``test(value)`` says whether a value is allowed and ``allowed``
says in words what is (``"a positive integer"``). A config class mixes in :class:`Checked`, lists its
leaf fields' rules in the class table ``RULES`` and puts the rules that tie several fields together in
``check_together``. A broken rule is one :class:`~capsjax.errors.ConfigError` line naming the dotted
field, its value and what is allowed: ``config.batch_size = -8: expected a positive integer``.

Caps bound what a hostile or mistyped value could ask for before anything is allocated or traced; no
recipe in ``experiments/configs`` comes near them.

Example:
  >>> import dataclasses
  >>> from typing import ClassVar
  >>> @dataclasses.dataclass(frozen=True)
  ... class Sizes(Checked):
  ...     width: int = 8
  ...     RULES: ClassVar = {"width": POSITIVE}
  >>> Sizes(width=0).check()
  Traceback (most recent call last):
  ...
  capsjax.errors.ConfigError: config.width = 0: expected a positive integer
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar

from capsjax.errors import ConfigError

Rule = tuple[Callable[[Any], bool], str]
"""``(test, allowed)``: whether a value is allowed, and what is allowed in words."""

MAX_SIZE = 65_536
"""Channels, hidden units, capsule types and dimensions of a layer."""
MAX_BATCH = 65_536
"""Examples in a training or evaluation batch (one batch of 10^8 asked for 73 GiB)."""
MAX_CLASSES = 10_000
MAX_IMAGE_SIDE = 4_096
"""Pixels along an image side, and channels of an image."""
MAX_ITERS = 50
"""Routing iterations: each one is unrolled when the step is traced, so 1000 never finish compiling."""


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def positive(value) -> bool:
    return is_int(value) and value > 0


def non_negative(value) -> bool:
    return is_int(value) and value >= 0


def positive_number(value) -> bool:
    return is_number(value) and value > 0


def non_negative_number(value) -> bool:
    return is_number(value) and value >= 0


def probability(value) -> bool:
    return non_negative_number(value) and value <= 1


def is_bool(value) -> bool:
    return isinstance(value, bool)


def one_of(names: Collection[str]) -> Rule:
    """A name among ``names``."""
    return (lambda value: isinstance(value, str) and value in names), f"one of {sorted(names)}"


def or_none(rule: Rule, allowed: str | None = None) -> Rule:
    """``rule``, or None."""
    test, what = rule
    return (lambda value: value is None or test(value)), allowed or f"{what} or None"


def at_most(rule: Rule, cap: int, why: str = "") -> Rule:
    """``rule`` and at most ``cap``; ``why`` says what the cap protects."""
    test, what = rule
    return (lambda value: test(value) and value <= cap), f"{what}, at most {cap}" + (f" ({why})" if why else "")


def sizes(cap: int = MAX_SIZE, *, non_empty: bool = False) -> Rule:
    """A tuple of positive integers, each at most ``cap`` (and at least one entry if ``non_empty``)."""

    def test(value) -> bool:
        if not isinstance(value, tuple) or (non_empty and not value):
            return False
        return all(positive(v) and v <= cap for v in value)

    what = "a non-empty tuple of positive integers" if non_empty else "a tuple of positive integers"
    return test, f"{what}, each at most {cap}"


POSITIVE: Rule = (positive, "a positive integer")
NON_NEGATIVE: Rule = (non_negative, "an integer >= 0")
POSITIVE_NUMBER: Rule = (positive_number, "a finite number > 0")
NON_NEGATIVE_NUMBER: Rule = (non_negative_number, "a finite number >= 0")
PROBABILITY: Rule = (probability, "a number in [0, 1]")
BELOW_ONE: Rule = (lambda value: probability(value) and value < 1, "a number in [0, 1)")
BOOL: Rule = (is_bool, "true or false")
SIZE: Rule = at_most(POSITIVE, MAX_SIZE)
KERNEL: Rule = at_most(POSITIVE, MAX_IMAGE_SIDE)
NUM_CLASSES: Rule = (lambda value: is_int(value) and 2 <= value <= MAX_CLASSES, f"an integer in [2, {MAX_CLASSES}]")
NUM_ITERS: Rule = at_most(POSITIVE, MAX_ITERS, "each iteration is unrolled when the step is traced")
IMAGE_SHAPE: Rule = (
    lambda value: isinstance(value, tuple) and len(value) == 3 and sizes(MAX_IMAGE_SIDE)[0](value),
    f"(height, width, channels), positive, each at most {MAX_IMAGE_SIDE}",
)
COMPUTE_DTYPE: Rule = one_of(("float32", "bfloat16"))


def refuse(path: str, value, expected: str) -> ConfigError:
    """The error of a field ``path`` (dotted, from ``config.``) holding ``value``, where ``expected`` was."""
    return ConfigError(f"{path} = {value!r}: expected {expected}")


class Checked:
    """Mixin of a frozen config dataclass that checks itself.

    ``RULES`` maps each leaf field's name to its :data:`Rule`; a field that is itself a :class:`Checked`
    group checks its own fields. ``check_together`` holds the rules that tie fields together.
    """

    RULES: ClassVar[Mapping[str, Rule]] = {}

    def check(self, prefix: str = "config.") -> None:
        """Check every field, then the fields together.

        Args:
          prefix: what goes before a field's name in a message: ``"config."`` for a run's config,
            ``"config.capsnet."`` for its CapsNet group.

        Raises:
          ConfigError: one line naming the first bad field, its value and what is allowed.
        """
        self.check_fields(prefix)
        self.check_together(prefix)

    def check_fields(self, prefix: str = "config.") -> None:
        """Check each field alone by its rule in ``RULES``, in the order the fields are declared."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if dataclasses.is_dataclass(value):
                value.check_fields(f"{prefix}{field.name}.")
                continue
            test, allowed = self.RULES[field.name]
            if not test(value):
                raise refuse(prefix + field.name, value, allowed)

    def check_together(self, prefix: str = "config.") -> None:
        """Check the rules that tie fields together (none unless a class adds some)."""


def field_rules(config: Checked, prefix: str = "") -> dict[str, Rule]:
    """Every leaf field's dotted path and rule; a field without one is missing from the result."""
    rules = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            rules |= field_rules(value, f"{prefix}{field.name}.")
        elif field.name in config.RULES:
            rules[prefix + field.name] = config.RULES[field.name]
    return rules
