"""The measurements of ``capsjax bench``, each on its own: the matmul ceiling, the train step (time,
XLA's FLOP count and memory), routing, the primary conv's lowerings, the input
pipeline and memory by batch.

Each function builds what it measures from a :class:`~capsjax.nn.capsnet.CapsNetConfig`, compiles it
before timing, and returns seconds (the median of ``repeats`` runs) or a dict of numbers.
:mod:`capsjax.analysis.bench` runs them side by side and writes the report; it re-exports every
public name, so they are imported from there.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from capsjax.data.dataset import ArrayDataset
from capsjax.data.pipeline import train_batches
from capsjax.nn.capsnet import CapsNetConfig, RoutingConfig
from capsjax.nn.routed_capsules import map_in_chunks, resolve_chunk_size
from capsjax.ops.convolution import conv2d, conv_output_size
from capsjax.ops.routing import dynamic_routing
from capsjax.training.config import TrainConfig
from capsjax.training.sharding import Sharding
from capsjax.training.state import init_state
from capsjax.training.steps import make_classify_step, make_eval_step, make_train_step


def median_seconds(fn: Callable, *, repeats: int) -> float:
    """Median wall time of ``fn()`` (which must block) over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def xla_cost(compiled) -> dict[str, float]:
    """``{"flops", "bytes"}``: XLA's counts of a compiled program's floating-point operations and of
    the bytes its operations read and write (a loop's body counted once)."""
    cost = compiled.cost_analysis()
    cost = (cost[0] if isinstance(cost, list) else cost) or {}
    return {"flops": float(cost.get("flops", 0.0)), "bytes": float(cost.get("bytes accessed", 0.0))}


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """float32 ``size x size`` matmul rate: the machine's practical GEMM ceiling."""
    a = jax.random.normal(jax.random.key(0), (size, size))
    mm = jax.jit(lambda a: a @ a)
    mm(a).block_until_ready()
    return 2 * size**3 / median_seconds(lambda: mm(a).block_until_ready(), repeats=repeats) / 1e9


def _fake_batch(batch: int, config: CapsNetConfig):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, *config.image_shape), dtype=np.uint8)
    return images, rng.integers(0, config.num_classes, batch).astype(np.int32)


def _capsnet_config(batch: int, **capsnet) -> TrainConfig:
    return TrainConfig(batch_size=batch, eval_batch_size=batch, capsnet=CapsNetConfig(**capsnet))


def primary_shapes(config: CapsNetConfig) -> dict:
    """Sizes of the primary-capsule stage of a CapsNet: its conv's input and the capsule counts."""
    height, width, _ = config.image_shape
    conv_h, conv_w = height - config.conv_kernel + 1, width - config.conv_kernel + 1
    grid_h = conv_output_size(conv_h, config.primary_kernel, config.primary_stride)
    grid_w = conv_output_size(conv_w, config.primary_kernel, config.primary_stride)
    return {
        "features": (conv_h, conv_w, config.conv_channels),
        "grid": grid_h * grid_w,
        "out_channels": config.primary_types * config.primary_dim,
        "in_caps": grid_h * grid_w * config.primary_types,
    }


def train_step_benchmark(batch: int, *, steps: int, **capsnet) -> dict:
    """Compile time, step time, FLOPs (XLA's count) and memory of the train step at ``batch``."""
    config = _capsnet_config(batch, **capsnet)
    graphdef, state = init_state(config)
    step_fn = make_train_step(graphdef, config)
    images, labels = _fake_batch(batch, config.capsnet)
    start = time.perf_counter()
    compiled = step_fn.lower(state, images, labels).compile()
    compile_seconds = time.perf_counter() - start
    flops = xla_cost(compiled)["flops"]
    memory = compiled.memory_analysis()
    start = time.perf_counter()
    state, metrics = compiled(state, images, labels)
    jax.block_until_ready(metrics)
    first_step = compile_seconds + time.perf_counter() - start
    holder = [state]

    def one_step():
        holder[0], m = compiled(holder[0], images, labels)
        jax.block_until_ready(m)

    seconds = median_seconds(one_step, repeats=steps)
    eval_fn = make_eval_step(graphdef, config)
    valid = np.ones(batch, bool)
    jax.block_until_ready(eval_fn(holder[0].params, images, labels, valid))
    eval_seconds = median_seconds(
        lambda: jax.block_until_ready(eval_fn(holder[0].params, images, labels, valid)), repeats=steps
    )
    return {
        "batch": batch,
        "compile_sec": compile_seconds,
        "first_step_sec": first_step,
        "step_sec": seconds,
        "train_examples_per_sec": batch / seconds,
        "inference_examples_per_sec": batch / eval_seconds,
        "step_gflop": flops / 1e9,
        "achieved_gflops": flops / 1e9 / seconds,
        "xla_temp_mib": memory.temp_size_in_bytes / 2**20 if memory else None,
        "xla_total_mib": (memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes)
        / 2**20
        if memory
        else None,
    }


def gflop_per_image(config: CapsNetConfig, *, batch: int = 8, train: bool = True) -> dict[str, float]:
    """XLA's FLOP count per image of the train step and of the classify step (inference) of ``config``;
    ``train=False`` counts (and compiles) only the classify step.

    Counted with the direct (``"patches"``) convolution: the network's FLOPs as every peer computes
    them, so that "fraction of the GEMM ceiling" means the same for all systems (the Fourier lowering
    does fewer FLOPs and can pass 100%). Routing is vmapped over the batch (``chunk_size=0``): XLA
    counts a loop's body once, so the chunked routing of a CPU run (``lax.map``) would count the
    routing of one image per batch.
    """
    routing = dataclasses.replace(config.routing, chunk_size=0)
    counted = dataclasses.replace(config, conv_lowering="patches", routing=routing)
    train_config = TrainConfig(batch_size=batch, capsnet=counted)
    graphdef, state = init_state(train_config)
    images, labels = _fake_batch(batch, config)

    def flops(compiled) -> float:
        return xla_cost(compiled)["flops"] / batch / 1e9

    out = {}
    if train:
        out["train"] = flops(make_train_step(graphdef, train_config).lower(state, images, labels).compile())
    out["infer"] = flops(make_classify_step(graphdef).lower(state.params, images).compile())
    return out


def per_example(fn: Callable, batch: jax.Array) -> jax.Array:
    """``fn`` over the leading axis as :class:`capsjax.nn.RoutedCapsules` runs routing here: in chunks
    (``lax.map`` + ``checkpoint``, :func:`capsjax.nn.layers.resolve_chunk_size`) or ``vmap``."""
    chunk = resolve_chunk_size(None)
    return map_in_chunks(fn, batch, chunk) if chunk else jax.vmap(fn)(batch)


def routing_benchmark(
    batch: int, in_caps: int, out_caps: int, num_iters: int, *, repeats: int, out_dim: int = 16
) -> float:
    """Seconds for forward + backward of batched dynamic routing on ``[batch, in, out, 16]`` votes,
    batched as the model batches it (:func:`per_example`)."""
    u_hat = 0.05 * jax.random.normal(jax.random.key(0), (batch, in_caps, out_caps, out_dim))

    def loss(u_hat):
        return jnp.sum(per_example(lambda u: dynamic_routing(u, num_iters=num_iters).v, u_hat) ** 2)

    grad = jax.jit(jax.grad(loss))
    grad(u_hat).block_until_ready()
    return median_seconds(lambda: grad(u_hat).block_until_ready(), repeats=repeats)


def conv_lowering_benchmark(batch: int, config: CapsNetConfig, *, repeats: int) -> dict:
    """Forward + backward seconds of the primary conv (9x9 stride 2, 256 -> 256 in the paper) per lowering."""
    shapes = primary_shapes(config)
    x = jax.random.normal(jax.random.key(0), (batch, *shapes["features"]))
    kernel_shape = (config.primary_kernel, config.primary_kernel, config.conv_channels, shapes["out_channels"])
    k = 0.01 * jax.random.normal(jax.random.key(1), kernel_shape)
    stride = config.primary_stride
    out = {}
    for lowering in ("native", "patches", "fourier"):
        grad = jax.jit(
            jax.grad(
                lambda x, k, lowering=lowering: jnp.sum(conv2d(x, k, stride=stride, lowering=lowering) ** 2),
                argnums=(0, 1),
            )
        )
        jax.block_until_ready(grad(x, k))
        out[lowering] = median_seconds(lambda grad=grad: jax.block_until_ready(grad(x, k)), repeats=repeats)
    return out


def input_pipeline_seconds(batch: int, config: CapsNetConfig, *, steps: int, examples: int = 60000) -> float:
    """Host time per batch: shuffle, gather and transfer of uint8 images (what prefetch overlaps)."""
    images, labels = _fake_batch(examples, config)
    data = ArrayDataset(images, labels, "random")
    sharding = Sharding.over_local_devices()
    batches = train_batches(data, batch_size=batch, seed=0, epoch=0)
    start = time.perf_counter()
    for _ in range(steps):
        jax.block_until_ready(sharding.batch(next(batches)))
    return (time.perf_counter() - start) / steps


def memory_scaling(batches: Sequence[int], **capsnet) -> list[dict]:
    """XLA's compiled temporary memory (MiB) of the train step by batch, with and without remat."""
    rows = []
    for batch in batches:
        row = {"batch": batch}
        for remat in (False, True):
            config = _capsnet_config(batch, routing=RoutingConfig(remat=remat), **capsnet)
            graphdef, state = init_state(config)
            images, labels = _fake_batch(batch, config.capsnet)
            memory = make_train_step(graphdef, config).lower(state, images, labels).compile().memory_analysis()
            row["remat" if remat else "plain"] = memory.temp_size_in_bytes / 2**20
        rows.append(row)
    return rows
