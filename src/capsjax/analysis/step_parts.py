"""How close each part of CapsNet's training step runs to its own bound (``capsjax bench``).

The step is cut where the model's submodules meet: the first conv, the primary capsules' conv, the
votes and routing, the decoder, and the optimizer's update. Each part is jitted alone (forward and
backward, with a random cotangent for its output; the optimizer's update on donated state, as in
training) and timed; XLA's cost analysis gives its floating-point operations and the bytes its
operations read and write. A part cannot run faster than either count allows at the rates measured
in the same run::

    bound = max(GFLOP / GEMM rate, GB accessed / memory rate)

``of bound`` is that bound over the measured time: 100% means the part runs at the machine's rate for
whatever limits it. XLA's byte count assumes nothing stays in cache between operations, so a part
that reuses its data from cache (the routing, one example at a time) can pass 100%. XLA counts a
loop's body once, so routing that loops over chunks of examples (CPU) is costed as its program times
the number of chunks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from capsjax.analysis.bench_measurements import median_seconds, xla_cost
from capsjax.nn.capsnet import CapsNet, CapsNetConfig
from capsjax.nn.routed_capsules import resolve_chunk_size
from capsjax.training.config import OptimConfig
from capsjax.training.state import make_optimizer

PARTS = {  # name: title in the bench's table
    "first_conv": "first conv + ReLU (weight gradient only)",
    "primary_capsules": "primary capsules' conv (auto lowering)",
    "votes_and_routing": "votes + routing",
    "decoder": "decoder",
    "optimizer": "optimizer update",
}


@dataclasses.dataclass(frozen=True)
class PartProgram:
    """One part of the step: ``fn(*args)`` is what is timed; XLA's counts of ``cost_fn(*cost_args)``
    times ``trips`` are its cost. ``carry``: how many leading arguments ``fn`` returns updated (the
    optimizer's parameters and state); they are donated and fed back, as the training step does."""

    fn: Callable
    args: tuple
    cost_fn: Callable
    cost_args: tuple
    trips: int = 1
    carry: int = 0


def memory_gb_per_sec(mib: int = 256, repeats: int = 5) -> float:
    """GB/s of a streaming ``x + 1`` over ``mib`` MiB of float32 (read once, written in place): the
    practical memory rate, as :func:`capsjax.analysis.bench_measurements.matmul_gflops` is the practical
    GEMM rate. The buffer is donated, so the rate is not the page faults of a fresh output every call."""
    add = jax.jit(lambda x: x + 1.0, donate_argnums=0)
    holder = [add(jnp.zeros(mib * 2**18, jnp.float32))]

    def one_pass():
        holder[0] = add(holder[0])
        holder[0].block_until_ready()

    one_pass()
    return 2 * holder[0].nbytes / median_seconds(one_pass, repeats=repeats) / 1e9


def _forward_backward(apply: Callable, *, input_gradient: bool = True) -> Callable:
    """``(params, x, cotangent) -> (output, gradients)``: ``apply``'s forward pass and its backward pass
    from ``cotangent``, to the parameters and (``input_gradient``) to ``x``, as the training step needs
    them. The output is returned so that no part of the forward pass is dropped as unused."""

    def forward_backward(params, x, cotangent):
        if input_gradient:
            out, pullback = jax.vjp(apply, params, x)
        else:
            out, pullback = jax.vjp(lambda params: apply(params, x), params)
        return out, pullback(cotangent)

    return forward_backward


def _module_part(module: nnx.Module, call: Callable, x: jax.Array, **options) -> PartProgram:
    """The forward and backward pass of ``call(module, x)``, ``module`` merged from its parameters; the
    cotangent is random, of the output's shape. ``options``: :func:`_forward_backward`'s."""
    graphdef, params = nnx.split(module)

    def apply(params, x):
        return call(nnx.merge(graphdef, params), x)

    out = jax.eval_shape(apply, params, x)
    args = (params, x, jax.random.normal(jax.random.key(1), out.shape, out.dtype))
    fn = _forward_backward(apply, **options)
    return PartProgram(fn, args, fn, args)


def _routing_part(layer: nnx.Module, primary: jax.Array) -> PartProgram:
    """Votes and routing of ``primary`` ``[batch, in_caps, in_dim]`` as ``layer`` runs them. Routed in
    chunks, the program is a loop over the chunks whose body XLA counts once: its cost is multiplied
    by the number of chunks (the forward loop's and the backward loop's bodies, which recompute the
    forward pass, are both in the program)."""
    part = _module_part(layer, lambda layer, u: layer(u).v, primary)
    batch = primary.shape[0]
    if not layer.routes_in_chunks(batch):
        return part
    return dataclasses.replace(part, trips=-(-batch // resolve_chunk_size(layer.chunk_size)))


def _optimizer_part(model: CapsNet) -> PartProgram:
    """The training loop's optimizer (:func:`capsjax.training.state.make_optimizer`): its update and
    its application to every parameter, parameters and state donated."""
    params = nnx.state(model, nnx.Param)
    tx = make_optimizer(OptimConfig())
    grads = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), params)

    def update(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    args = (params, tx.init(params), grads)
    return PartProgram(update, args, update, args, carry=2)


def part_programs(batch: int, config: CapsNetConfig) -> dict[str, PartProgram]:
    """``{part: PartProgram}`` for every part in :data:`PARTS`, at ``batch`` images of ``config``'s network."""
    model = CapsNet(config, rngs=nnx.Rngs(0))
    key = jax.random.key(0)
    images = jax.random.uniform(key, (batch, *config.image_shape))
    features = jax.nn.relu(model.conv(images))
    labels = jax.random.randint(key, (batch,), 0, config.num_classes)
    capsules = 0.1 * jax.random.normal(key, (batch, config.num_classes, config.class_dim))
    return {
        "first_conv": _module_part(model.conv, lambda m, x: jax.nn.relu(m(x)), images, input_gradient=False),
        "primary_capsules": _module_part(model.primary, lambda m, x: m(x), features),
        "votes_and_routing": _routing_part(model.classes, model.primary(features)),
        "decoder": _module_part(model.decoder, lambda m, c: m.by_labels(c, labels), capsules),
        "optimizer": _optimizer_part(model),
    }


def _seconds(part: PartProgram, repeats: int) -> float:
    """Median seconds of ``part.fn`` (compiled first), its carried arguments fed back call after call."""
    compiled = jax.jit(part.fn, donate_argnums=tuple(range(part.carry))).lower(*part.args).compile()
    holder = [jax.tree.map(jnp.copy, part.args[: part.carry]) if part.carry else ()]

    def call():
        out = compiled(*holder[0], *part.args[part.carry :])
        if part.carry:
            holder[0] = tuple(out[: part.carry])
        jax.block_until_ready(out)

    call()
    return median_seconds(call, repeats=repeats)


def part_bounds(
    batch: int, config: CapsNetConfig, *, repeats: int, gemm_gflops: float, memory_gb_per_sec: float
) -> list[dict]:
    """Each part of the training step timed beside its bound.

    Args:
      batch: images per step.
      config: the network.
      repeats: timed calls per part (the median is kept).
      gemm_gflops: the float32 GEMM rate measured in the same run.
      memory_gb_per_sec: the memory rate measured in the same run (:func:`memory_gb_per_sec`).

    Returns:
      One dict per part, in the order of :data:`PARTS`: ``part``, ``seconds``, ``gflop`` and ``gbytes``
      (XLA's counts), ``bound_sec`` (the larger of the two counts at their rates), ``bound_by``
      (``"compute"`` or ``"memory"``) and ``of_bound`` (``bound_sec / seconds``).
    """
    rows = []
    for name, part in part_programs(batch, config).items():
        seconds = _seconds(part, repeats)
        cost = xla_cost(jax.jit(part.cost_fn).lower(*part.cost_args).compile())
        gflop, gbytes = part.trips * cost["flops"] / 1e9, part.trips * cost["bytes"] / 1e9
        row = {"part": name, "seconds": seconds, "gflop": gflop, "gbytes": gbytes}
        rows.append(row | bound_of(gflop, gbytes, seconds, gemm_gflops, memory_gb_per_sec))
    return rows


def bound_of(gflop: float, gbytes: float, seconds: float, gemm_gflops: float, memory_gb_per_sec: float) -> dict:
    """``{"bound_sec", "bound_by", "of_bound"}`` of a part that does ``gflop`` and moves ``gbytes`` in
    ``seconds``, at the given rates."""
    compute, memory = gflop / gemm_gflops, gbytes / memory_gb_per_sec
    bound_sec = max(compute, memory)
    return {
        "bound_sec": bound_sec,
        "bound_by": "compute" if compute >= memory else "memory",
        "of_bound": bound_sec / seconds,
    }
