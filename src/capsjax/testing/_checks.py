"""The checks behind :func:`capsjax.testing.check_routing`, one method each of :class:`_RoutingChecks`, and
their helpers: the shapes a routing result's fields must have, the float64 scalar the gradient checks
differentiate, the directional-derivative error reported when ``check_grads`` fails, and comparisons.

Private to :mod:`capsjax.testing` (nothing else imports it); like the rest of that package it imports
``capsjax.ops`` only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

# The fields a routing result may have, by name, and their shapes in terms of the votes'
# [in_caps (i), out_caps (o), dim (d)]: those of RoutingResult and of EMRoutingResult (so that
# `functools.partial(em_routing, activations=..., beta_u=..., beta_a=...)` is checked as well).
FIELD_SHAPES = {
    "v": "od",
    "c": "io",
    "logits": "io",
    "poses": "od",
    "activations": "o",
    "assignments": "io",
    "variances": "od",
    "log_assignments": "io",
}
OUTPUT_FIELDS = ("v", "poses")
COUPLING_FIELDS = ("c", "assignments")

# Finite-difference step of the float64 gradient checks (jax.test_util's default).
FD_STEP = 1e-4
VOTE_SCALE = 0.5


# What one check returns: passed, detail, value, tolerance (the fields of CheckResult after its name).
_Outcome = tuple[bool, str, float | None, float | None]


class _RoutingChecks:
    """The checks of :func:`check_routing` on one routing call and one draw of votes, one method each.

    Each check returns (passed, detail, value, tolerance). The checks of values run in float64 (where any
    deviation is the algorithm's, not rounding's), op by op where they can: the gradient checks then reuse
    what those compiled, and the reverse. :attr:`eager` and :attr:`scalar` are computed once and shared,
    and :attr:`jitted` (``jax.jit`` of the call) is one function for all the checks, so that it traces once.

    Args:
      call: the routing function with its keyword arguments bound; takes votes ``[in_caps, out_caps, dim]``.
      shape: ``(in_caps, out_caps, dim)``.
      batch: examples in the ``vmap`` check.
      seed: seeds the votes, the weighting of the outputs and the directions of the gradient checks.
      tolerances: ``(atol, rtol, grad_atol, grad_rtol)``.
      modes: ``"fwd"`` and/or ``"rev"``, as in ``check_grads``.
    """

    def __init__(
        self,
        call: Callable,
        *,
        shape: tuple[int, int, int],
        batch: int,
        seed: int,
        tolerances: tuple[float, float, float, float],
        modes: Sequence[str],
    ):
        self.call, self.shape, self.batch, self.seed, self.modes = call, shape, batch, seed, modes
        self.atol, self.rtol, self.grad_atol, self.grad_rtol = tolerances
        rng = np.random.default_rng(seed)
        self.votes = VOTE_SCALE * rng.standard_normal(shape)  # float64, as the checks of values use
        self.batch_votes = VOTE_SCALE * rng.standard_normal((batch, *shape))
        self.traces: list[tuple[int, ...]] = []  # one entry each time jax.jit traces the call
        self.jitted = jax.jit(self.traced)

    def traced(self, votes: jax.Array) -> Any:
        self.traces.append(votes.shape)
        return self.call(votes)

    @functools.cached_property
    def scalar(self) -> Callable:
        """The float64 scalar function of the outputs that the gradient checks differentiate."""
        with jax.enable_x64(True):
            return _scalar_of_outputs(self.call, jnp.asarray(self.votes), np.random.default_rng(self.seed))

    @functools.cached_property
    def eager(self) -> Any:
        """The call's result at the votes, in float64, op by op."""
        with jax.enable_x64(True):
            return self.call(jnp.asarray(self.votes))

    def plan(self, gradient_orders: Sequence[tuple[str, int]]) -> list[tuple[str, Callable[[], _Outcome]]]:
        """Every check, named, in the order they run; ``gradient_orders``: each gradient check and its order."""
        plan: list[tuple[str, Callable[[], _Outcome]]] = [
            ("shapes", self.check_shapes),
            ("couplings_nonnegative", self.check_nonnegative),
            ("couplings_sum_to_one", self.check_sum_to_one),
        ]
        if self._has_activations():
            plan.append(("activations_in_unit_interval", self.check_activations))
        plan += [
            ("vmap_equals_loop", self.check_vmap),
            ("jit_equals_no_jit", self.check_jit),
            ("finite_at_zero_votes", lambda: self.check_finite(np.zeros(self.shape))),
            ("finite_at_identical_votes", lambda: self.check_finite(np.broadcast_to(self.votes[:1], self.shape))),
        ]
        plan += [(name, functools.partial(self.check_gradients, order)) for name, order in gradient_orders]
        return plan

    def _has_activations(self) -> bool:
        try:
            result = jax.eval_shape(self.call, jax.ShapeDtypeStruct(self.shape, jnp.float32))
        except Exception:  # reported by the checks that need the result
            return False
        return getattr(result, "activations", None) is not None

    def _couplings(self) -> np.ndarray:
        return np.asarray(_field(self.eager, COUPLING_FIELDS))

    def check_shapes(self) -> _Outcome:
        found, problems = [], []
        for dtype in (jnp.float32, jnp.float64):
            with jax.enable_x64(dtype == jnp.float64):
                result = jax.eval_shape(self.call, jax.ShapeDtypeStruct(self.shape, dtype))
            fields, wrong = _shape_problems(result, self.shape, dtype)
            found, problems = found or fields, problems + [w for w in wrong if w not in problems]
        detail = "; ".join(problems) if problems else f"{', '.join(found)} (float32 and float64 votes)"
        return not problems, detail, None, None

    def check_nonnegative(self) -> _Outcome:
        c = self._couplings()
        value = float(np.max(np.maximum(-c, 0.0)))  # NaN stays NaN, and fails
        return value <= self.atol, f"smallest coupling {np.min(c):.3g}", value, self.atol

    def check_sum_to_one(self) -> _Outcome:
        sums = self._couplings().sum(axis=-1)
        value = float(np.max(np.abs(sums - 1.0)))
        detail = f"sums over the outputs from {np.min(sums):.6g} to {np.max(sums):.6g}"
        return value <= self.atol + self.rtol, detail, value, self.atol + self.rtol

    def check_activations(self) -> _Outcome:
        a = np.asarray(self.eager.activations)
        value = float(np.max(np.maximum(np.maximum(-a, a - 1.0), 0.0)))
        inside = bool(np.all((a > 0) & (a < 1)))
        return inside, f"activations from {np.min(a):.3g} to {np.max(a):.3g}", value, 0.0

    def check_vmap(self) -> _Outcome:
        with jax.enable_x64(True):
            batched = jax.jit(jax.vmap(self.call))(jnp.asarray(self.batch_votes))
            looped = jax.tree.map(lambda *xs: jnp.stack(xs), *[self.jitted(jnp.asarray(u)) for u in self.batch_votes])
        what = f"{self.batch} examples: jit(vmap(fn)) vs a loop of jit(fn)"
        return _compare(batched, looped, self.atol, self.rtol, what)

    def check_jit(self) -> _Outcome:
        with jax.enable_x64(True):
            passed, _, value, tolerance = _compare(
                self.jitted(jnp.asarray(self.votes)), self.eager, self.atol, self.rtol, ""
            )
            self.jitted(jnp.asarray(self.batch_votes[0]))  # other votes of the same shape: no second trace
        detail = f"jit(fn) vs fn; jit traced fn {len(self.traces)} time(s) for votes of one shape"
        return passed and len(self.traces) == 1, detail, value, tolerance

    def check_finite(self, degenerate: np.ndarray) -> _Outcome:
        with jax.enable_x64(True):
            value, grad = jax.value_and_grad(self.scalar)(jnp.asarray(degenerate))
        bad = int(np.sum(~np.isfinite(np.asarray(value)))) + int(np.sum(~np.isfinite(np.asarray(grad))))
        return bad == 0, f"{bad} non-finite entries in the value and gradient", float(bad), 0.0

    def check_gradients(self, order: int) -> _Outcome:
        modes, grad_atol, grad_rtol = self.modes, self.grad_atol, self.grad_rtol
        with jax.enable_x64(True):
            votes = jnp.asarray(self.votes)
            try:
                check_grads(self.scalar, (votes,), order=order, modes=tuple(modes), atol=grad_atol, rtol=grad_rtol)
            except AssertionError as failure:
                rng = np.random.default_rng(self.seed + order)
                error = _directional_error(self.scalar, votes, order, modes, rng, grad_atol)
                return False, f"check_grads: {_summary(failure)}", error, grad_rtol
        return True, f"check_grads passed, modes {'+'.join(modes)}", None, grad_rtol


def _shape_problems(result: Any, shape: tuple[int, int, int], dtype: Any) -> tuple[list[str], list[str]]:
    """What fields ``result`` (of votes ``shape``, ``dtype``) has, and what is wrong with them."""
    found, problems = [], []
    for fields in (OUTPUT_FIELDS, COUPLING_FIELDS):
        if all(getattr(result, field, None) is None for field in fields):
            problems.append(f"the result has none of {', '.join(fields)}")
    sizes = dict(zip("iod", shape, strict=True))
    for field, dims in FIELD_SHAPES.items():
        array = getattr(result, field, None)
        if array is None:
            continue
        expected = tuple(sizes[d] for d in dims)
        found.append(f"{field} {list(array.shape)}")
        if tuple(array.shape) != expected:
            problems.append(f"{field}: expected shape {list(expected)}, got {tuple(array.shape)}")
        if array.dtype != dtype:
            problems.append(f"{field}: expected dtype {jnp.dtype(dtype)} (that of the votes), got {array.dtype}")
    return found, problems


def _field(result: Any, names: Sequence[str]) -> Any:
    for name in names:
        value = getattr(result, name, None)
        if value is not None:
            return value
    raise AttributeError(f"the result has none of {', '.join(names)}")


def _scalar_of_outputs(call: Callable, votes: jax.Array, rng: np.random.Generator) -> Callable:
    """A fixed random weighting of every floating-point output, summed: one number that every output moves."""
    leaves = jax.tree.leaves(jax.eval_shape(call, votes))
    weights = [
        jnp.asarray(rng.standard_normal(leaf.shape).astype(leaf.dtype))
        if jnp.issubdtype(leaf.dtype, jnp.floating)
        else None
        for leaf in leaves
    ]

    def scalar(votes):
        outputs = jax.tree.leaves(call(votes))
        terms = [jnp.sum(w * x) for w, x in zip(weights, outputs, strict=True) if w is not None]
        return sum(terms[1:], terms[0])

    return scalar


def _directional_error(
    scalar: Callable, votes: jax.Array, order: int, modes: Sequence[str], rng: np.random.Generator, floor: float
) -> float:
    """The largest relative error of the directional derivatives of orders 1 to ``order`` (each by ``jax.jvp``
    or ``jax.grad`` applied to the one below it) against central finite differences of the one below."""
    directions = [jnp.asarray(rng.standard_normal(votes.shape) / math.sqrt(votes.size)) for _ in range(order)]
    errors = []
    for mode in modes:
        lower = scalar
        for direction in directions:
            derivative = _directional_derivative(lower, direction, mode)
            exact = float(derivative(votes))
            numeric = float((lower(votes + FD_STEP * direction) - lower(votes - FD_STEP * direction)) / (2 * FD_STEP))
            errors.append(abs(exact - numeric) / max(abs(numeric), floor))
            lower = derivative
    return float(np.max(errors))


def _directional_derivative(scalar: Callable, direction: jax.Array, mode: str) -> Callable:
    if mode == "fwd":
        return lambda votes: jax.jvp(scalar, (votes,), (direction,))[1]
    return lambda votes: jnp.vdot(jax.grad(scalar)(votes), direction)


def _compare(got: Any, expected: Any, atol: float, rtol: float, what: str) -> tuple[bool, str, float, float]:
    differences = jax.tree.leaves(jax.tree.map(lambda a, b: np.max(np.abs(np.subtract(a, b))), got, expected))
    scale = max(float(np.max(np.abs(leaf))) for leaf in jax.tree.leaves(expected))
    value, tolerance = float(np.max(differences)), atol + rtol * scale
    return value <= tolerance, what, value, tolerance


def _summary(failure: AssertionError) -> str:
    """check_grads's message in one line: what it compared and the mismatch numpy measured."""
    lines = [line.strip() for line in str(failure).splitlines() if line.strip()]
    skip = ("Not equal to tolerance", "Mismatched elements", "Max absolute difference", "ACTUAL", "DESIRED", "x:", "y:")
    return "; ".join(line for line in lines[:6] if not line.startswith(skip)) or "differs from finite differences"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""
