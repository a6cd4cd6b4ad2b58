"""Speed and memory benchmarks (``capsjax bench`` / ``make bench``).

Everything is measured in one process, side by side, so ratios are meaningful on a busy machine:
the matmul rate (the practical ceiling) is measured at the start and end and averaged. Writes
``bench.json`` and ``bench.md`` into the work directory.

Here: what runs (:class:`BenchPlan`), in what order (:func:`run_benchmarks`) and the report
(:func:`to_markdown`). The measurements themselves live in :mod:`capsjax.analysis.bench_measurements`
and :mod:`capsjax.analysis.step_parts` (each part of a training step beside its bound); this module
re-exports them.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import platform
import resource
from collections.abc import Sequence

import jax

from capsjax.analysis import side_by_side as peers
from capsjax.analysis.bench_measurements import (
    conv_lowering_benchmark,
    gflop_per_image,
    input_pipeline_seconds,
    matmul_gflops,
    memory_scaling,
    per_example,
    primary_shapes,
    routing_benchmark,
    train_step_benchmark,
)
from capsjax.analysis.step_parts import PARTS, memory_gb_per_sec, part_bounds
from capsjax.nn.capsnet import CapsNetConfig
from capsjax.ops.convolution import resolve_lowering

# Every public name, the re-exported measurements included (the API reference documents them here), in
# the order of the reference.
__all__ = [
    "matmul_gflops",
    "train_step_benchmark",
    "gflop_per_image",
    "per_example",
    "routing_benchmark",
    "conv_lowering_benchmark",
    "memory_gb_per_sec",
    "part_bounds",
    "input_pipeline_seconds",
    "memory_scaling",
    "BenchPlan",
    "QUICK",
    "compare_with_peers",
    "run_benchmarks",
    "to_markdown",
]


@dataclasses.dataclass(frozen=True)
class BenchPlan:
    batches: tuple[int, ...] = (32, 128, 256)
    steps: int = 5
    routing_batch: int = 32
    in_caps: tuple[int, ...] = (288, 576, 1152, 2304, 4608)
    out_caps: tuple[int, ...] = (10, 20, 50, 100)
    iters: tuple[int, ...] = (1, 2, 3, 4, 5)
    memory_batches: tuple[int, ...] = (32, 64, 128, 256, 512)
    conv_batch: int = 32
    parts_batch: int = 128
    small_model: bool = False
    peer_rounds: int = 2
    peer_train_batch: int = 128
    peer_infer_batch: int = 256
    peer_steps: int = 5
    # The other models' comparisons, at each model's own batches (side_by_side.BATCHES; None) or these.
    other_models: tuple[str, ...] = ("efficient_capsnet", "matrix_capsnet")
    other_batches: tuple[int, int] | None = None


QUICK = BenchPlan(
    batches=(8,),
    steps=2,
    routing_batch=4,
    in_caps=(72, 144),
    out_caps=(10,),
    iters=(1,),
    memory_batches=(8, 16),
    conv_batch=2,
    parts_batch=8,
    small_model=True,
    peer_rounds=1,
    peer_train_batch=4,
    peer_infer_batch=4,
    peer_steps=1,
    other_batches=(2, 2),
)


def compare_with_peers(plan: BenchPlan, *, gemm: float, bfloat16: bool = False, quick: bool = False) -> dict:
    """:func:`capsjax.analysis.side_by_side.side_by_side` of the paper's network, with ratios and the bound."""
    paper = CapsNetConfig(compute_dtype="bfloat16" if bfloat16 else "float32")
    flops = gflop_per_image(paper)
    result = peers.side_by_side(
        rounds=plan.peer_rounds,
        train_batch=plan.peer_train_batch,
        infer_batch=plan.peer_infer_batch,
        steps=plan.peer_steps,
        warmup=1 if quick else 2,
        bfloat16=bfloat16,
    )
    bounds = peers.add_ratios(result["summary"], gemm_gflops=gemm, gflop_per_image=flops)
    result["bounds"] = {"gemm_gflops": gemm, "gflop_per_image": flops, **bounds}
    return result


def compare_other_models(plan: BenchPlan, *, bfloat16: bool = False, quick: bool = False) -> dict:
    """``{model: side_by_side(...)}`` for Efficient-CapsNet and matrix capsules against their peers, with
    ratios (no GEMM ceiling: the FLOP count is measured for the paper's CapsNet only)."""
    results = {}
    for model in plan.other_models:
        train_batch, infer_batch = plan.other_batches or peers.BATCHES[model]
        result = peers.side_by_side(
            rounds=plan.peer_rounds,
            train_batch=train_batch,
            infer_batch=infer_batch,
            steps=plan.peer_steps,
            warmup=1 if quick else 2,
            bfloat16=bfloat16,
            model=model,
        )
        result["bounds"] = peers.add_ratios(result["summary"], gemm_gflops=0.0, gflop_per_image=None)
        results[model] = result
    return results


def _primary_lowering(config: CapsNetConfig, batch: int = 128) -> str:
    """What ``conv_lowering="auto"`` picks for the primary conv of ``config`` at ``batch`` here."""
    shapes = primary_shapes(config)
    kernel = (config.primary_kernel, config.primary_kernel, config.conv_channels, shapes["out_channels"])
    return resolve_lowering(
        "auto", x_shape=(batch, *shapes["features"]), kernel_shape=kernel, stride=config.primary_stride
    )


def _machine() -> dict:
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "processor": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "conv_lowering_auto": _primary_lowering(CapsNetConfig()),
    }


def _write(workdir: pathlib.Path, results: dict) -> dict:
    (workdir / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    (workdir / "bench.md").write_text(to_markdown(results))
    print(to_markdown(results))
    return results


def run_benchmarks(
    workdir, *, quick: bool = False, bfloat16: bool = False, peers_only: bool = False, extra: Sequence[str] = ()
) -> dict:
    """Run every benchmark and write ``bench.json`` and ``bench.md``; returns the results.

    The peers come first (each in its own process, while this one holds little), then capsjax's
    own rows, sweeps and step parts (left out with ``peers_only``). ``bfloat16`` runs the side-by-side
    comparison with every system's bfloat16 compute.
    """
    if extra:
        raise ValueError(f"capsjax bench: unexpected arguments {list(extra)}")
    plan = QUICK if quick else BenchPlan()
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    small = dict(conv_channels=32, primary_types=4) if plan.small_model else {}
    model = CapsNetConfig(**small)
    in_caps = primary_shapes(model)["in_caps"]
    print(f"benchmarking on {jax.default_backend()} ({jax.device_count()} device(s)); quick={quick}")
    matmul_before = matmul_gflops(512 if quick else 2048)
    print("side by side with the peers (each run in its own process):")
    side_by_side = compare_with_peers(plan, gemm=matmul_before, bfloat16=bfloat16, quick=quick)
    other_models = compare_other_models(plan, bfloat16=bfloat16, quick=quick)
    if peers_only:
        matmul = {"start": matmul_before, "end": matmul_before, "mean": matmul_before}
        results = {"machine": _machine(), "quick": quick, "matmul_gflops": matmul, "side_by_side": side_by_side}
        return _write(workdir, results | {"other_models": other_models})
    train = []
    for batch in plan.batches:
        row = train_step_benchmark(batch, steps=plan.steps, **small)
        row["input_pipeline_sec"] = input_pipeline_seconds(batch, model, steps=plan.steps)
        train.append(row)
        print(
            f"  batch {batch}: {row['train_examples_per_sec']:.1f} train ex/s, "
            f"{row['inference_examples_per_sec']:.1f} inference ex/s"
        )
    classes, iters = model.num_classes, model.routing.num_iters
    routing_in_step = [routing_benchmark(row["batch"], in_caps, classes, iters, repeats=plan.steps) for row in train]
    sweeps = {
        "in_caps": [
            (n, routing_benchmark(plan.routing_batch, n, classes, iters, repeats=plan.steps)) for n in plan.in_caps
        ],
        "out_caps": [
            (n, routing_benchmark(plan.routing_batch, in_caps, n, iters, repeats=plan.steps)) for n in plan.out_caps
        ],
        "num_iters": [
            (n, routing_benchmark(plan.routing_batch, in_caps, classes, n, repeats=plan.steps)) for n in plan.iters
        ],
    }
    memory_rate = memory_gb_per_sec(16 if quick else 256)
    parts = part_bounds(
        plan.parts_batch, model, repeats=plan.steps, gemm_gflops=matmul_before, memory_gb_per_sec=memory_rate
    )
    step_parts = {"batch": plan.parts_batch, "gemm_gflops": matmul_before, "memory_gb_per_sec": memory_rate}
    conv = conv_lowering_benchmark(plan.conv_batch, model, repeats=2)
    memory = memory_scaling(plan.memory_batches, **small)
    matmul_after = matmul_gflops(512 if quick else 2048)
    matmul = (matmul_before + matmul_after) / 2
    for row, routing_sec in zip(train, routing_in_step, strict=True):
        row["roofline_ratio"] = row["achieved_gflops"] / matmul
        row["routing_share"] = routing_sec / row["step_sec"]
        row["input_pipeline_share"] = row["input_pipeline_sec"] / row["step_sec"]
    results = {
        "machine": _machine(),
        "quick": quick,
        "matmul_gflops": {"start": matmul_before, "end": matmul_after, "mean": matmul},
        "side_by_side": side_by_side,
        "other_models": other_models,
        "train": train,
        "routing_sweeps_sec": sweeps,
        "primary_conv_fwd_bwd_sec": {
            **conv,
            "batch": plan.conv_batch,
            "channels": model.conv_channels,
            "native_over_patches": conv["native"] / conv["patches"],
            "patches_over_fourier": conv["patches"] / conv["fourier"],
        },
        "memory_mib_by_batch": memory,
        "step_parts": step_parts | {"parts": parts},
        "peak_host_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    return _write(workdir, results)


def to_markdown(results: dict) -> str:
    """The results as Markdown tables (what the README quotes)."""
    m = results["matmul_gflops"]
    lines = [
        f"Backend: {results['machine']['backend']} ({len(results['machine']['devices'])} device(s)), "
        f"jax {results['machine']['jax']}, conv lowering auto = {results['machine']['conv_lowering_auto']}. "
        f"Matmul ceiling (f32 GEMM, same run): {m['mean']:.0f} GFLOP/s (start {m['start']:.0f}, end {m['end']:.0f}).",
        "",
        *peers.to_markdown(results["side_by_side"]),
    ]
    for comparison in results.get("other_models", {}).values():
        lines += peers.to_markdown(comparison)
    if "train" not in results:  # peers_only
        return "\n".join(lines)
    lines += [
        "capsjax alone, float32:",
        "",
        "| batch | train ex/s | inference ex/s | first step incl. compile, s | step s | GFLOP/step | GFLOP/s "
        "| roofline ratio | routing share | input pipeline share | XLA temp MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["train"]:
        lines.append(
            f"| {r['batch']} | {r['train_examples_per_sec']:.1f} | {r['inference_examples_per_sec']:.1f} "
            f"| {r['first_step_sec']:.1f} | {r['step_sec']:.3f} | {r['step_gflop']:.1f} | {r['achieved_gflops']:.0f} "
            f"| {100 * r['roofline_ratio']:.0f}% | {100 * r['routing_share']:.1f}% "
            f"| {100 * r['input_pipeline_share']:.2f}% | {r['xla_temp_mib']:.0f} |"
        )
    conv = results["primary_conv_fwd_bwd_sec"]
    channels = conv["channels"]
    lines += [
        "",
        f"Primary conv (9x9 stride 2, {channels}->{channels}) forward+backward at batch {conv['batch']}: "
        f"native {conv['native']:.3f} s, patches {conv['patches']:.3f} s, fourier {conv['fourier']:.3f} s "
        f"(native / patches = {conv['native_over_patches']:.1f}x, "
        f"patches / fourier = {conv['patches_over_fourier']:.1f}x).",
        "",
    ]
    lines += _step_parts_markdown(results["step_parts"], results["train"])
    lines += ["Routing forward+backward (3 iterations unless varied), seconds:", ""]
    for name, rows in results["routing_sweeps_sec"].items():
        lines.append(f"- {name}: " + ", ".join(f"{n}: {sec * 1e3:.1f} ms" for n, sec in rows))
    lines += [
        "",
        "Train-step memory (XLA temporaries, MiB) by batch, plain vs rematerialised routing:",
        "",
        "| batch | plain | remat |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {r['batch']} | {r['plain']:.0f} | {r['remat']:.0f} |" for r in results["memory_mib_by_batch"]]
    lines += ["", f"Peak host RSS of the benchmark process: {results['peak_host_rss_mib']:.0f} MiB.", ""]
    return "\n".join(lines)


def _step_parts_markdown(step_parts: dict, train_rows: list[dict]) -> list[str]:
    """The table of :func:`capsjax.analysis.step_parts.part_bounds`: each part's time and its bound."""
    step = next((r["step_sec"] for r in train_rows if r["batch"] == step_parts["batch"]), None)
    parts = step_parts["parts"]
    total = sum(row["seconds"] for row in parts)
    of_step = f" of the step's {step:.3f} s" if step else ""
    lines = [
        f"Where a training step's time goes at batch {step_parts['batch']}, and how close each part runs to "
        f"its own bound: each part jitted alone, forward + backward; bound = the larger of its GFLOP at the "
        f"same-run GEMM rate ({step_parts['gemm_gflops']:.0f} GFLOP/s) and its GB accessed at the same-run memory "
        f"rate ({step_parts['memory_gb_per_sec']:.0f} GB/s), both XLA's counts; the parts sum to "
        f"{total:.3f} s{of_step}.",
        "",
        "| part | seconds | share of step | GFLOP | GB accessed | bound, s | bound by | of bound |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in parts:
        share = f"{100 * row['seconds'] / step:.0f}%" if step else "-"
        lines.append(
            f"| {PARTS[row['part']]} | {row['seconds']:.3f} | {share} | {row['gflop']:.2f} | {row['gbytes']:.2f} "
            f"| {row['bound_sec']:.3f} | {row['bound_by']} | {100 * row['of_bound']:.0f}% |"
        )
    return [*lines, ""]
