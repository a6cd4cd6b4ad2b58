"""How close each part of CapsNet's training step runs to its own bound (``capsjax bench``).

The step is cut where the model's submodules meet: the first conv, the primary capsules' conv, the
votes and routing, the decoder, and the optimizer's update. Each part is jitted alone (forward and
backward, with a random cotangent for its output) and timed; XLA's cost analysis of the same program
gives its floating-point operations and the bytes its operations read and write. A part cannot run
faster than either count allows at the rates measured in the same run::

    bound = max(GFLOP / GEMM rate, GB accessed / memory rate)

``of bound`` is that bound over the measured time: 100% means the part runs at the machine's rate for
whatever limits it. XLA's byte count assumes nothing stays in cache between operations, so a part
that reuses its data from cache (the routing, one example at a time) can pass 100%. A loop's body is
counted once by XLA, so a part that loops over examples is costed as one example times the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from capsjax.analysis.bench_measurements import median_seconds
from capsjax.nn.capsnet import CapsNet, CapsNetConfig
from capsjax.nn.routed_capsules import resolve_chunk_size
from capsjax.training.config import OptimConfig
from capsjax.training.state import make_optimizer

PARTS = ("first_conv", "primary_capsules", "votes_and_routing", "decoder", "optimizer")


def memory_gbytes_per_sec(mib: int = 256, repeats: int = 5) -> float:
    """GB/s of a streaming ``x + 1`` over ``mib`` MiB of float32 (read once, written in place): the
    practical memory rate, as :func:`capsjax.analysis.bench.matmul_gflops` is the practical GEMM rate.
    The buffer is donated, so the rate is not the page faults of a fresh output every call."""
    add = jax.jit(lambda x: x + 1.0, donate_argnums=0)
    holder = [add(jnp.zeros(mib * 2**18, jnp.float32))]

    def one_pass():
        holder[0] = add(holder[0])
        holder[0].block_until_ready()

    one_pass()
    return 2 * holder[0].nbytes / median_seconds(one_pass, repeats=repeats) / 1e9


def _forward_backward(apply: Callable, *, input_gradient: bool = True) -> Callable:
    """``(params, x, cotangent) -> gradients``: ``apply``'s forward pass and its backward pass from
    ``cotangent``, to the parameters and (``input_gradient``) to ``x``, as the training step needs them."""

    def forward_backward(params, x, cotangent):
        if input_gradient:
            _, pullback = jax.vjp(apply, params, x)
        else:
            _, pullback = jax.vjp(lambda params: apply(params, x), params)
        return pullback(cotangent)

    return forward_backward


def _module_part(module: nnx.Module, call: Callable, x: jax.Array, *, input_gradient: bool = True) -> tuple:
    """``(forward_and_backward, (params, x, cotangent))`` for ``call(module, x)`` with ``module``
    merged from ``params``; the cotangent is random, of the output's shape."""
    graphdef, params = nnx.split(module)

    def apply(params, x):
        return call(nnx.merge(graphdef, params), x)

    out = jax.eval_shape(apply, params, x)
    cotangent = jax.random.normal(jax.random.key(1), out.shape, out.dtype)
    return _forward_backward(apply, input_gradient=input_gradient), (params, x, cotangent)


def part_programs(batch: int, config: CapsNetConfig) -> dict[str, tuple[Callable, tuple, tuple]]:
    """``{part: (program, args, cost_args)}`` for :data:`PARTS` at ``batch``.

    ``program(*args)`` is what is timed. ``cost_args`` are ``(args, trips)`` whose compiled cost
    times ``trips`` is the part's: the routing that runs one example at a time in a loop (CPU) is
    costed as one example's program times the batch, every other part as ``(args, 1)``.
    """
    model = CapsNet(config, rngs=nnx.Rngs(0))
    key = jax.random.key(0)
    images = jax.random.uniform(key, (batch, *config.image_shape))
    features = jax.nn.relu(model.conv(images))
    primary = model.primary(features)
    labels = jax.random.randint(key, (batch,), 0, config.num_classes)
    capsules = 0.1 * jax.random.normal(key, (batch, config.num_classes, config.class_dim))

    def route(layer, u):
        return layer(u).v

    parts = {
        "first_conv": _module_part(model.conv, lambda m, x: jax.nn.relu(m(x)), images, input_gradient=False),
        "primary_capsules": _module_part(model.primary, lambda m, x: m(x), features),
        "votes_and_routing": _module_part(model.classes, route, primary),
        "decoder": _module_part(model.decoder, lambda m, c: m.by_labels(c, labels), capsules),
        "optimizer": _optimizer_program(model),
    }
    programs = {name: (fn, args, (args, 1)) for name, (fn, args) in parts.items()}
    if 0 < resolve_chunk_size(model.classes.chunk_size) < batch:
        _, one = _module_part(model.classes, route, primary[:1])
        fn, args, _ = programs["votes_and_routing"]
        programs["votes_and_routing"] = (fn, args, (one, batch))
    return programs


def _optimizer_program(model: CapsNet) -> tuple[Callable, tuple]:
    """The training loop's optimizer (:func:`capsjax.training.state.make_optimizer`): its update
    and its application to every parameter."""
    params = nnx.state(model, nnx.Param)
    tx = make_optimizer(OptimConfig())
    grads = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), params)

    def update(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    return update, (params, tx.init(params), grads)


def _cost(compiled) -> tuple[float, float]:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0))


def _timed_and_costed(fn: Callable, args: tuple, cost_args: tuple, *, repeats: int) -> tuple[float, float, float]:
    """``(seconds, flops, bytes)``: ``fn(*args)`` compiled and timed (median of ``repeats``), and XLA's
    counts of ``fn(*cost_args)``."""
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    seconds = median_seconds(lambda: jax.block_until_ready(compiled(*args)), repeats=repeats)
    costed = compiled if cost_args is args else jax.jit(fn).lower(*cost_args).compile()
    return (seconds, *_cost(costed))


def part_bounds(
    batch: int, config: CapsNetConfig, *, repeats: int, gemm_gflops: float, memory_gbps: float
) -> list[dict]:
    """One row per part of the training step at ``batch``: seconds (median of ``repeats``), GFLOP and
    GB accessed (XLA's counts), the bound those give at the same-run rates, which rate bounds it
    (``"compute"`` or ``"memory"``) and ``of_bound`` (bound / seconds)."""
    rows = []
    for name, (fn, args, (cost_args, trips)) in part_programs(batch, config).items():
        seconds, flops, nbytes = _timed_and_costed(fn, args, cost_args, repeats=repeats)
        gflop, gbytes = trips * flops / 1e9, trips * nbytes / 1e9
        compute, memory = gflop / gemm_gflops, gbytes / memory_gbps
        bound = max(compute, memory)
        by = "compute" if compute >= memory else "memory"
        row = {"part": name, "seconds": seconds, "gflop": gflop, "gbytes": gbytes, "bound_sec": bound, "bound_by": by}
        rows.append(row | {"of_bound": bound / seconds})
    return rows
