"""capsjax.testing.check_routing passes a correct routing and names the check, with a value, that a broken
one fails; every built-in routing passes it (tests/test_routing_algorithms.py)."""

import functools

import jax
import jax.numpy as jnp
import pytest
from jax.custom_batching import custom_vmap

from capsjax.ops import EMRoutingResult, RoutingResult, em_routing
from capsjax.testing import CHECKS, CheckResult, check_routing

IN_CAPS, OUT_CAPS, DIM = 12, 4, 6


def mean_routing(votes, *, num_iters=1, bias=None, scale=1.0, output=jnp.tanh):
    """Each input capsule split evenly over the outputs (couplings times ``scale``), then ``output``."""
    c = jnp.full(votes.shape[:2], scale / votes.shape[1], votes.dtype)
    return RoutingResult(v=output(jnp.einsum("io,iod->od", c, votes)), c=c, logits=jnp.zeros_like(c))


@jax.custom_jvp
def tanh_twice_the_slope(x):
    return jnp.tanh(x)


@tanh_twice_the_slope.defjvp
def _tanh_twice_the_slope_jvp(primals, tangents):
    y = jnp.tanh(primals[0])
    return y, 2.0 * (1.0 - y**2) * tangents[0]  # the true derivative is (1 - y^2)


@jax.custom_vjp
def tanh_half_the_gradient(x):
    return jnp.tanh(x)


tanh_half_the_gradient.defvjp(lambda x: (jnp.tanh(x), jnp.tanh(x)), lambda y, g: (0.5 * (1.0 - y**2) * g,))


@custom_vmap
def _doubled_when_batched(x):
    return x


@_doubled_when_batched.def_vmap
def _doubled_when_batched_rule(axis_size, in_batched, x):
    return 2.0 * x, in_batched[0]


@jax.custom_jvp
def doubled_under_vmap(x):
    """The identity for one example, twice its input under vmap; its derivative is right (1)."""
    return _doubled_when_batched(x)


@doubled_under_vmap.defjvp
def _doubled_under_vmap_jvp(primals, tangents):
    return doubled_under_vmap(primals[0]), tangents[0]


def failed(report):
    return sorted(result.name for result in report.failures)


def test_a_correct_routing_passes_every_check_and_the_table_says_so():
    report = check_routing(mean_routing)
    assert report.passed and report.failures == ()
    names = [result.name for result in report.results]
    assert names == [c for c in CHECKS if c != "activations_in_unit_interval"] + [
        "gradients_order_1",
        "gradients_order_2",
    ]
    table = str(report).splitlines()
    assert "mean_routing" in table[0] and "all passed" in table[0]
    assert len(table) == 2 + len(names) and all(line.startswith("PASS  ") for line in table[2:])
    assert report["couplings_sum_to_one"].value < 1e-12  # float64
    report.raise_if_failed()


def test_couplings_that_do_not_sum_to_one_fail_with_their_deviation():
    report = check_routing(functools.partial(mean_routing, scale=0.5), orders=(1,))
    assert failed(report) == ["couplings_sum_to_one"]
    assert report["couplings_sum_to_one"].value == pytest.approx(0.5)
    with pytest.raises(AssertionError, match=r"1 routing check\(s\) failed(.|\n)*FAIL  couplings_sum_to_one +0\.5 "):
        report.raise_if_failed()


def test_a_derivative_wrong_by_a_factor_of_two_fails_the_gradient_checks():
    report = check_routing(functools.partial(mean_routing, output=tanh_twice_the_slope))
    assert failed(report) == ["gradients_order_1", "gradients_order_2"]
    # The directional derivative is twice the finite difference: relative error 1.
    assert report["gradients_order_1"].value == pytest.approx(1.0, rel=1e-3)
    assert report["gradients_order_2"].value > 0.1
    assert "check_grads" in report["gradients_order_1"].detail


def test_a_wrong_custom_vjp_fails_in_reverse_mode_and_cannot_run_forward():
    routing = functools.partial(mean_routing, output=tanh_half_the_gradient)
    reverse = check_routing(routing, orders=(1,), modes=("rev",))
    assert failed(reverse) == ["gradients_order_1"]
    assert reverse["gradients_order_1"].value == pytest.approx(0.5, rel=1e-3)
    forward = check_routing(routing, orders=(1,), modes=("fwd",), checks=["gradients_order_1"])
    assert failed(forward) == ["gradients_order_1"]
    assert forward["gradients_order_1"].detail.startswith("raised TypeError")


def test_a_routing_that_differs_under_vmap_fails_that_check_only():
    report = check_routing(functools.partial(mean_routing, output=doubled_under_vmap), orders=(1,))
    assert failed(report) == ["vmap_equals_loop"]
    result = report["vmap_equals_loop"]
    assert result.value > 0.1 > result.tolerance


def test_a_routing_that_raises_fails_every_check_and_the_report_says_why():
    def broken(votes, *, num_iters=3, bias=None):
        raise ValueError("votes: not today")

    report = check_routing(broken)
    assert not report.passed and len(report.failures) == len(report.results) == len(CHECKS) + 1
    assert all(result.detail == "raised ValueError: votes: not today" for result in report.results)
    assert all(result.value is None for result in report.results)


def test_em_results_with_activations_are_checked():
    em = functools.partial(
        em_routing, activations=jnp.full(IN_CAPS, 0.5), beta_u=jnp.zeros(OUT_CAPS), beta_a=jnp.zeros(OUT_CAPS)
    )
    some = ["shapes", "couplings_sum_to_one", "activations_in_unit_interval"]
    report = check_routing(em, checks=some)
    assert [result.name for result in report.results] == some and report.passed, report

    def too_active(votes, **options):
        result = em(votes, **options)
        return result._replace(activations=result.activations + 1.0)

    report = check_routing(too_active, checks=some)
    assert failed(report) == ["activations_in_unit_interval"]
    assert 0 < report["activations_in_unit_interval"].value <= 1.0
    assert isinstance(too_active(jnp.ones((IN_CAPS, OUT_CAPS, DIM))), EMRoutingResult)


def test_wrong_shapes_are_named():
    def transposed(votes, *, num_iters=1, bias=None):
        result = mean_routing(votes)
        return result._replace(c=result.c.T)

    result = check_routing(transposed, checks=["shapes"]).results[0]
    assert result == CheckResult("shapes", False, "c: expected shape [12, 4], got (4, 12)")


def test_num_iters_is_given_where_the_function_has_no_default():
    seen = []

    def strict(votes, *, num_iters, bias=None):
        seen.append(num_iters)
        return mean_routing(votes)

    check_routing(strict, checks=["shapes"])
    assert set(seen) == {3}
    seen.clear()
    check_routing(strict, num_iters=5, checks=["shapes"])
    assert set(seen) == {5}


@pytest.mark.parametrize(
    "options, match",
    [({"checks": ["nope"]}, "checks: unknown"), ({"orders": (0,)}, "orders"), ({"modes": ("lin",)}, "modes")],
)
def test_bad_arguments(options, match):
    with pytest.raises(ValueError, match=match):
        check_routing(mean_routing, **options)
