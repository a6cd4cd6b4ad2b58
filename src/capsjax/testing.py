"""Checks of a routing algorithm's math, for capsjax's tests and its users': :func:`check_routing`.

Whoever writes a routing algorithm grad-checks it. :func:`check_routing` runs on ANY function with the
:class:`~capsjax.ops.routing_types.RoutingFn` signature the checks that capsjax's own algorithms pass
(its tests run it on every name of :data:`~capsjax.ops.routing.ROUTING_FUNCTIONS`): shapes and dtypes,
couplings that are a distribution over the outputs, activations in (0, 1), ``vmap`` = a loop,
``jit`` = no ``jit``, finite values and gradients at degenerate votes, and
:func:`jax.test_util.check_grads` in float64. Each check runs on its own, so one failure (or one
exception) hides none of the others, and the :class:`RoutingReport` says which failed and by how much.

Example:
  >>> import jax.numpy as jnp
  >>> from capsjax.ops import RoutingResult, squash
  >>> from capsjax.testing import check_routing
  >>> def mean_routing(votes, *, num_iters=1, bias=None):  # every input capsule split evenly
  ...     c = jnp.full(votes.shape[:2], 1.0 / votes.shape[1], votes.dtype)
  ...     v = squash(jnp.einsum("io,iod->od", c, votes))
  ...     return RoutingResult(v=v, c=c, logits=jnp.zeros_like(c))
  >>> report = check_routing(mean_routing, orders=(1,))
  >>> report.passed, [check.name for check in report.results][:3]
  (True, ['shapes', 'couplings_nonnegative', 'couplings_sum_to_one'])

This module sits beside the layers of ARCHITECTURE.md: it imports ``capsjax.ops`` only, and no module
of the package imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Collection, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from capsjax.ops.routing_types import RoutingFn

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

CHECKS = (
    "shapes",
    "couplings_nonnegative",
    "couplings_sum_to_one",
    "activations_in_unit_interval",
    "vmap_equals_loop",
    "jit_equals_no_jit",
    "finite_at_zero_votes",
    "finite_at_identical_votes",
)
"""The names of the checks other than the gradient checks, ``gradients_order_<k>`` for each order."""

# Finite-difference step of the float64 gradient checks (jax.test_util's default).
FD_STEP = 1e-4
VOTE_SCALE = 0.5


class CheckResult(NamedTuple):
    """The outcome of one check.

    Attributes:
      name: the check, one of :data:`CHECKS` or ``gradients_order_<k>``.
      passed: whether it held.
      detail: what was measured, or why it failed (the exception, if the check raised one).
      value: the measured number (a deviation or error; the check holds when it is at most
        ``tolerance``), or None where there is none.
      tolerance: the largest ``value`` that passes, or None.
    """

    name: str
    passed: bool
    detail: str
    value: float | None = None
    tolerance: float | None = None


@dataclasses.dataclass(frozen=True)
class RoutingReport:
    """What :func:`check_routing` found: one :class:`CheckResult` per check, in the order they ran.

    ``str(report)`` is a table, one line per check: PASS or FAIL, its name, the measured value, the
    tolerance and a detail; ``report[name]`` is the :class:`CheckResult` of one check.

    Attributes:
      routing: the function's name and the sizes it was checked at.
      results: the checks' results.
    """

    routing: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """The checks that failed."""
        return tuple(result for result in self.results if not result.passed)

    def __getitem__(self, name: str) -> CheckResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no check named {name!r}; ran {[result.name for result in self.results]}")

    def __str__(self) -> str:
        verdict = "all passed" if self.passed else f"{len(self.failures)} FAILED"
        lines = [
            f"check_routing({self.routing}): {len(self.results)} checks, {verdict}",
            f"{'':6}{'check':<28}{'value':>10}  {'tolerance':>10}  detail",
        ]
        for result in self.results:
            lines.append(
                f"{'PASS' if result.passed else 'FAIL':<6}{result.name:<28}{_number(result.value):>10}  "
                f"{_number(result.tolerance):>10}  {result.detail}"
            )
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise AssertionError with the table if any check failed.

        Raises:
          AssertionError: some check failed.
        """
        if not self.passed:
            raise AssertionError(f"{len(self.failures)} routing check(s) failed\n{self}")


def check_routing(
    fn: RoutingFn,
    *,
    in_caps: int = 12,
    out_caps: int = 4,
    dim: int = 6,
    num_iters: int | None = None,
    seed: int = 0,
    orders: Sequence[int] = (1, 2),
    modes: Sequence[str] = ("fwd", "rev"),
    atol: float = 1e-10,
    rtol: float = 1e-9,
    grad_atol: float = 1e-4,
    grad_rtol: float = 1e-4,
    batch: int = 3,
    checks: Collection[str] | None = None,
    **options: Any,
) -> RoutingReport:
    r"""Run the property checks and float64 gradient checks of a routing function; report each.

    ``fn`` is called as ``fn(votes, num_iters=num_iters, **options)`` on votes
    ``[in_caps, out_caps, dim]`` drawn from :math:`\mathcal N(0, 0.5^2)`. Its result needs output
    capsules (``v`` or ``poses``, ``[out_caps, dim]``) and couplings (``c`` or ``assignments``,
    ``[in_caps, out_caps]``); the other fields of :class:`~capsjax.ops.routing_types.RoutingResult`
    and :class:`~capsjax.ops.em_routing.EMRoutingResult` are checked where present. Inputs other than
    the votes (EM's input activations, learned priors) are keyword ``options``; the registered
    :func:`~capsjax.ops.em_routing.em_routing_fn` defaults them, as the shared signature asks.

    Every check but ``shapes`` runs in float64 (:func:`jax.enable_x64`), where a deviation is the
    algorithm's and not float32 rounding's, and op by op where it can, so that the checks reuse each
    other's compiled operations. Each runs on its own: one that raises fails, with the exception as
    its detail, and the others still run.

    - ``shapes``: every field has its shape, and the dtype of the votes for float32 and float64 votes
      (from :func:`jax.eval_shape`: nothing runs).
    - ``couplings_nonnegative``: value :math:`\max(0, -\min_{ij} c_{ij})`, at most ``atol``.
    - ``couplings_sum_to_one``: value :math:`\max_i |\sum_j c_{ij} - 1|`, at most ``atol + rtol``.
    - ``activations_in_unit_interval`` (only where the result has ``activations``): all within
      (0, 1); value: how far the farthest lies outside [0, 1].
    - ``vmap_equals_loop``: ``jit(vmap(fn))`` over ``batch`` examples against a Python loop of
      ``jit(fn)``; value: the largest absolute difference, at most ``atol + rtol * max|loop|``.
    - ``jit_equals_no_jit``: ``jit(fn)`` against ``fn``, the same measure; and ``jit`` traces ``fn``
      once for all the votes (of one shape) that the checks give it.
    - ``finite_at_zero_votes``, ``finite_at_identical_votes`` (every input capsule casting the same
      votes): value: the number of non-finite entries in the value and the gradient of the scalar
      below, which must be 0.
    - ``gradients_order_<k>`` for each ``k`` of ``orders``: :func:`jax.test_util.check_grads` with
      ``modes``, ``grad_atol`` and ``grad_rtol`` (it checks the orders up to ``k``) of a scalar
      function of the outputs (a fixed random weighting of every output field) with respect to the
      votes. Pass or fail is its verdict, and its message the detail. On a failure the value is the
      largest relative error :math:`|D_m - D_{fd}| / \max(|D_{fd}|, \text{grad_atol})` of the
      directional derivatives :math:`D_m` of orders 1 to ``k`` (each by ``jax.jvp`` for ``"fwd"``
      or ``jax.grad`` for ``"rev"`` of the one below) against a central finite difference
      :math:`D_{fd}` of the one below, along random directions; tolerance: ``grad_rtol``.

    Args:
      fn: the routing function, for ONE example.
      in_caps, out_caps, dim: the votes' shape.
      num_iters: routing iterations; None uses ``fn``'s default (3 where ``num_iters`` has none).
      seed: seeds the votes, the weighting of the outputs and the directions.
      orders: the orders of the gradient checks.
      modes: ``"fwd"`` and/or ``"rev"``, as in ``check_grads``.
      atol, rtol: tolerances of the float64 value checks.
      grad_atol, grad_rtol: tolerances of the float64 gradient checks.
      batch: examples in the ``vmap`` check.
      checks: run only these (names from :data:`CHECKS` and ``gradients_order_<k>``); None runs all.
      **options: further keyword arguments of ``fn``.

    Returns:
      :class:`RoutingReport`; ``report.raise_if_failed()`` turns it into a test.

    Raises:
      ValueError: a size, order, mode or check name that is not valid.
    """
    orders, gradient_checks = _check_arguments(
        sizes={"in_caps": in_caps, "out_caps": out_caps, "dim": dim, "batch": batch},
        orders=orders,
        modes=modes,
        checks=checks,
    )
    iterations = _default_num_iters(fn) if num_iters is None else num_iters
    kwargs = dict(options) if iterations is None else {"num_iters": iterations, **options}

    def call(votes):
        return fn(votes, **kwargs)

    routing_checks = _RoutingChecks(
        call,
        shape=(in_caps, out_caps, dim),
        batch=batch,
        seed=seed,
        tolerances=(atol, rtol, grad_atol, grad_rtol),
        modes=modes,
    )
    plan = routing_checks.plan(list(zip(gradient_checks, orders, strict=True)))
    results = _run(plan, checks)
    iterations_text = "default" if iterations is None else iterations
    routing = f"{_name(fn)}, in_caps={in_caps}, out_caps={out_caps}, dim={dim}, num_iters={iterations_text}"
    return RoutingReport(routing=routing, results=results)


def _check_arguments(
    *, sizes: dict[str, int], orders: Sequence[int], modes: Sequence[str], checks: Collection[str] | None
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Validate :func:`check_routing`'s arguments; return the orders and the names of their gradient checks.

    Raises:
      ValueError: a size, order, mode or check name that is not valid.
    """
    for name, size in sizes.items():
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {size!r}")
    orders = tuple(orders)
    if not orders or not all(isinstance(order, int) and order >= 1 for order in orders):
        raise ValueError(f"orders: expected ints >= 1, got {orders!r}")
    if not modes or not set(modes) <= {"fwd", "rev"}:
        raise ValueError(f"modes: expected 'fwd' and/or 'rev', got {tuple(modes)!r}")
    gradient_checks = tuple(f"gradients_order_{order}" for order in orders)
    if checks is not None:
        unknown = sorted(set(checks) - set(CHECKS) - set(gradient_checks))
        if unknown:
            raise ValueError(f"checks: unknown {unknown}; choose from {list(CHECKS + gradient_checks)}")
    return orders, gradient_checks


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


def _run(plan: Sequence[tuple[str, Callable[[], _Outcome]]], checks: Collection[str] | None) -> tuple[CheckResult, ...]:
    """Run the checks of ``plan`` named in ``checks`` (all where None), each on its own: one that raises fails."""
    results = []
    for name, check in plan:
        if checks is not None and name not in checks:
            continue
        try:
            passed, detail, value, tolerance = check()
        except Exception as error:  # a check that raises fails; the others still run
            passed, detail, value, tolerance = False, f"raised {type(error).__name__}: {_first_line(error)}", None, None
        results.append(CheckResult(name, bool(passed), detail, value, tolerance))
    return tuple(results)


def _default_num_iters(fn: Callable) -> int | None:
    """None (pass nothing) where ``fn`` has a default for ``num_iters`` or no such argument, else 3."""
    try:
        parameter = inspect.signature(fn).parameters.get("num_iters")
    except (TypeError, ValueError):  # no signature to read: let the function decide
        return None
    if parameter is not None and parameter.default is inspect.Parameter.empty:
        return 3
    return None


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


def _name(fn: Callable) -> str:
    inner = getattr(fn, "func", fn)  # functools.partial
    return getattr(inner, "__qualname__", None) or getattr(inner, "__name__", None) or repr(fn)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
