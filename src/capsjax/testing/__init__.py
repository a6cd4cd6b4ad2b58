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

This package sits beside the layers of ARCHITECTURE.md: it imports ``capsjax.ops`` only, and no module
of the package imports it. Its private module ``capsjax.testing._checks`` holds the checks themselves
(one method each of ``_RoutingChecks``); the public names are those of this module.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Collection, Sequence
from typing import Any, NamedTuple

from capsjax.ops.routing_types import RoutingFn
from capsjax.testing._checks import (
    COUPLING_FIELDS,
    FD_STEP,
    FIELD_SHAPES,
    OUTPUT_FIELDS,
    VOTE_SCALE,
    _first_line,
    _Outcome,
    _RoutingChecks,
)

__all__ = [
    "CHECKS",
    "COUPLING_FIELDS",
    "FD_STEP",
    "FIELD_SHAPES",
    "OUTPUT_FIELDS",
    "VOTE_SCALE",
    "CheckResult",
    "RoutingReport",
    "check_routing",
]

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


def _name(fn: Callable) -> str:
    inner = getattr(fn, "func", fn)  # functools.partial
    return getattr(inner, "__qualname__", None) or getattr(inner, "__name__", None) or repr(fn)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
