r"""
Checking your own routing function
==================================

A routing algorithm is a pure function of one example's votes ``[in_caps, out_caps, out_dim]``
that returns a :class:`capsjax.RoutingResult`. Anything with that signature plugs into
:class:`capsjax.CapsNet` (through :func:`capsjax.get_routing`), and
:func:`capsjax.testing.check_routing` runs on it the checks every built-in algorithm passes:
shapes, couplings that form a distribution over the outputs, ``vmap`` equal to a loop, ``jit``
equal to no ``jit``, finite values and gradients at degenerate votes, and float64 gradient
checks.

Below, a new algorithm passes every check, and two versions with classic bugs fail the check
that catches each.
"""

# %%
# A new routing algorithm
# -----------------------
# Dynamic routing with a cosine agreement: the logits grow by the cosine between each vote and
# the output capsule instead of their dot product, so long votes do not dominate the
# agreement. The norms use :func:`capsjax.safe_norm`, whose gradient is finite at zero.
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from capsjax import RoutingResult, coupling_coefficients, safe_norm, squash
from capsjax.testing import check_routing


def cosine_routing(votes, *, num_iters=3, bias=None):
    """Dynamic routing whose agreement is the cosine of vote and output, for ONE example."""
    in_caps, out_caps, _ = votes.shape
    logits = jnp.zeros((in_caps, out_caps), votes.dtype)
    for iteration in range(num_iters):
        c = coupling_coefficients(logits)
        s = jnp.einsum("io,iod->od", c, votes)
        if bias is not None:
            s = s + bias
        v = squash(s)
        if iteration < num_iters - 1:
            unit_votes = votes / safe_norm(votes)[..., None]
            unit_v = v / safe_norm(v)[..., None]
            logits = logits + jnp.einsum("iod,od->io", unit_votes, unit_v)
    return RoutingResult(v=v, c=c, logits=logits)


# orders=(1,): first-order gradient checks only; the default (1, 2) adds second-order ones,
# which take about 20 s more here.
report = check_routing(cosine_routing, orders=(1,))
print(report)

# %%
# Bug 1: the softmax over the wrong axis
# --------------------------------------
# Each input capsule must share its output among the capsules above it: the softmax runs over
# the output capsules (the last axis). Over the input capsules, every column sums to one
# instead of every row, and ``couplings_sum_to_one`` fails.


def wrong_axis_routing(votes, *, num_iters=3, bias=None):
    logits = jnp.zeros(votes.shape[:2], votes.dtype)
    for _ in range(num_iters):
        c = jax.nn.softmax(logits, axis=0)  # the bug: should be axis=-1
        v = squash(jnp.einsum("io,iod->od", c, votes))
        logits = logits + jnp.einsum("iod,od->io", votes, v)
    return RoutingResult(v=v, c=c, logits=logits)


wrong_axis = check_routing(wrong_axis_routing, orders=(1,))
print(wrong_axis)

# %%
# Bug 2: a norm whose gradient is NaN at zero
# -------------------------------------------
# ``jnp.linalg.norm`` is exact, and its gradient at the zero vector is NaN: a capsule that is
# switched off (all votes zero) poisons the whole gradient. The values still look right;
# ``finite_at_zero_votes`` measures the gradient there too and fails.


def nan_gradient_routing(votes, *, num_iters=3, bias=None):
    logits = jnp.zeros(votes.shape[:2], votes.dtype)
    for _ in range(num_iters):
        c = coupling_coefficients(logits)
        s = jnp.einsum("io,iod->od", c, votes)
        length = jnp.linalg.norm(s, axis=-1, keepdims=True)  # the bug: NaN gradient at s = 0
        v = length / (1.0 + length**2) * s
        logits = logits + jnp.einsum("iod,od->io", votes, v)
    return RoutingResult(v=v, c=c, logits=logits)


nan_gradient = check_routing(nan_gradient_routing, orders=(1,))
print(nan_gradient)
for failure in nan_gradient.failures:
    print(f"FAILED {failure.name}: {failure.detail}")

# %%
# The verdicts side by side
# -------------------------
# ``report.passed`` and ``report.failures`` make a test of it: ``check_routing(fn).raise_if_failed()``
# in a test suite fails with the table above.
reports = {"cosine_routing": report, "wrong_axis_routing": wrong_axis, "nan_gradient_routing": nan_gradient}
names = [result.name for result in report.results]
verdicts = np.array([[r[name].passed for name in names] for r in reports.values()], float)  # 1 pass, 0 fail
fig, ax = plt.subplots(figsize=(9, 2.6))
ax.imshow(verdicts, cmap=ListedColormap(["#f3a5a5", "#b5e3b5"]), vmin=0, vmax=1, aspect="auto")
ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
ax.set_yticks(range(len(reports)), list(reports), fontsize=8)
for (row, col), passed in np.ndenumerate(verdicts):
    ax.text(col, row, "pass" if passed else "FAIL", ha="center", va="center", fontsize=7)
ax.set_title("check_routing: green passes, red fails", fontsize=10)
fig.tight_layout()
plt.show()
