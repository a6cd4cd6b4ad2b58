"""capsjax and its peers (Keras 3 on TensorFlow, PyTorch) timed in one run, alternating A B A B.

Three models, each against the peers that implement it (``MODEL_SYSTEMS``): the paper's MNIST
CapsNet (8,215,568 parameters; Keras and PyTorch transcriptions), Efficient-CapsNet (Mazzia et al.
2021; a Keras transcription of the published MNIST network) and matrix capsules with EM routing
(Hinton et al. 2018; a PyTorch transcription of the most used public PyTorch implementation, 32x32
input). Every system runs on random float32 data in a process of its own (``systems/``), one
measurement per process: a training step and inference at each model's batches (``BATCHES``), each
round going through every system before the next round starts, so that a machine that slows down
or speeds up in the middle treats all systems alike. Peers whose framework is not installed are
skipped and named (``pip install 'capsjax[bench]'``).
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import statistics
import subprocess
import sys
from collections.abc import Sequence

SYSTEMS_DIR = pathlib.Path(__file__).parent / "systems"
# model -> system name -> (script in systems/, the module that must be importable)
MODEL_SYSTEMS = {
    "capsnet": {
        "capsjax": ("capsjax_capsnet.py", "jax"),
        "keras": ("keras_capsnet.py", "tensorflow"),
        "pytorch": ("torch_capsnet.py", "torch"),
    },
    "efficient_capsnet": {
        "capsjax": ("capsjax_efficient_capsnet.py", "jax"),
        "keras": ("keras_efficient_capsnet.py", "tensorflow"),
    },
    "matrix_capsnet": {
        "capsjax": ("capsjax_matrix_capsnet.py", "jax"),
        "pytorch": ("torch_matrix_capsnet.py", "torch"),
    },
}
SYSTEMS = MODEL_SYSTEMS["capsnet"]
PEERS = ("keras", "pytorch")
# model -> (training batch, inference batch): the paper's CapsNet at 128 / 256; Efficient-CapsNet at
# the official MNIST config's batch 16; matrix capsules at the batches of that implementation's
# README command (--batch-size 32 --test-batch-size 256).
BATCHES = {"capsnet": (128, 256), "efficient_capsnet": (16, 256), "matrix_capsnet": (32, 256)}
MODEL_TITLES = {
    "capsnet": "the paper's CapsNet (MNIST)",
    "efficient_capsnet": "Efficient-CapsNet (MNIST)",
    "matrix_capsnet": "matrix capsules with EM routing (32x32)",
}


def available_systems(
    names: Sequence[str] | None = None, *, model: str = "capsnet"
) -> tuple[list[str], dict[str, str]]:
    """``(runnable systems, {skipped system: why})`` of ``model``'s systems (all of them if ``names`` is None)."""
    systems = MODEL_SYSTEMS[model]
    runnable, skipped = [], {}
    for name in systems if names is None else names:
        module = systems[name][1]
        if importlib.util.find_spec(module) is None:
            skipped[name] = f"{module} is not installed (pip install 'capsjax[bench]')"
        else:
            runnable.append(name)
    return runnable, skipped


def run_system(
    name: str,
    mode: str,
    batch: int,
    *,
    steps: int,
    warmup: int,
    bfloat16: bool = False,
    timeout: float = 1200,
    model: str = "capsnet",
) -> dict:
    """One measurement of one system of ``model`` in a fresh process (see ``systems/protocol.py``)."""
    command = [
        sys.executable,
        str(SYSTEMS_DIR / MODEL_SYSTEMS[model][name][0]),
        "--mode",
        mode,
        "--batch",
        str(batch),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
    ] + (["--bfloat16"] if bfloat16 else [])
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{name} {mode} (batch {batch}) failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def side_by_side(
    *,
    rounds: int = 2,
    train_batch: int = 128,
    infer_batch: int = 256,
    steps: int = 5,
    warmup: int = 2,
    bfloat16: bool = False,
    systems: Sequence[str] | None = None,
    progress: bool = True,
    model: str = "capsnet",
) -> dict:
    """Measure every runnable system ``rounds`` times, alternating; returns the raw runs and a summary.

    Returns:
      ``{"runs": {system: {"train": [...], "infer": [...]}}, "skipped": {system: why}, "summary": {...}}``
      where each summary row holds the median over rounds of examples/s, their range, and the peak
      resident memory of the training process.
    """
    runnable, skipped = available_systems(systems, model=model)
    runs = {name: {"train": [], "infer": []} for name in runnable}
    for round_index in range(rounds):
        for mode, batch in (("train", train_batch), ("infer", infer_batch)):
            for name in runnable:
                run = run_system(name, mode, batch, steps=steps, warmup=warmup, bfloat16=bfloat16, model=model)
                runs[name][mode].append(run)
                if progress:
                    print(
                        f"  round {round_index + 1}/{rounds} {name:8s} {mode:5s} batch {batch}: "
                        f"{run['examples_per_sec']:.1f} img/s, peak RSS {run['peak_rss_mib']:.0f} MiB",
                        flush=True,
                    )
    return {
        "runs": runs,
        "skipped": skipped,
        "summary": summarise(runs),
        "settings": {
            "model": model,
            "rounds": rounds,
            "train_batch": train_batch,
            "infer_batch": infer_batch,
            "steps": steps,
            "warmup": warmup,
            "bfloat16": bfloat16,
        },
    }


def summarise(runs: dict) -> dict:
    """Per system: median and range over rounds of train and inference examples/s, and memory."""
    summary = {}
    for name, modes in runs.items():
        row = {"framework": modes["train"][0]["framework"] if modes["train"] else None}
        for mode in ("train", "infer"):
            rates = [r["examples_per_sec"] for r in modes[mode]]
            row[f"{mode}_examples_per_sec"] = statistics.median(rates) if rates else None
            row[f"{mode}_range"] = [min(rates), max(rates)] if rates else None
            row[f"{mode}_peak_rss_mib"] = max((r["peak_rss_mib"] for r in modes[mode]), default=None)
        summary[name] = row
    return summary


def add_ratios(summary: dict, *, gemm_gflops: float, gflop_per_image: dict[str, float] | None) -> dict:
    """Add each system's ratio to the fastest peer and its fraction of the same-run GEMM ceiling.

    Args:
      summary: :func:`summarise`'s output.
      gemm_gflops: the float32 GEMM rate measured in the same run.
      gflop_per_image: ``{"train": ..., "infer": ...}``, the network's FLOPs per image (XLA's count);
        None: no ceiling (``<mode>_gemm_fraction`` is None).

    Returns:
      ``{"fastest_peer": {mode: name}, "ceiling_examples_per_sec": {mode: ...}}``; the rows of
      ``summary`` gain ``<mode>_ratio_to_fastest_peer`` and ``<mode>_gemm_fraction``.
    """
    fastest, ceiling = {}, {}
    for mode in ("train", "infer"):
        ceiling[mode] = gemm_gflops / gflop_per_image[mode] if gflop_per_image else None
        peers = {n: summary[n][f"{mode}_examples_per_sec"] for n in PEERS if n in summary}
        fastest[mode] = max(peers, key=peers.get) if peers else None
        for row in summary.values():
            rate = row[f"{mode}_examples_per_sec"]
            row[f"{mode}_gemm_fraction"] = rate / ceiling[mode] if rate and ceiling[mode] else None
            row[f"{mode}_ratio_to_fastest_peer"] = rate / peers[fastest[mode]] if rate and fastest[mode] else None
    return {"fastest_peer": fastest, "ceiling_examples_per_sec": ceiling}


def to_markdown(result: dict) -> list[str]:
    """The side-by-side table (Markdown lines) of :func:`side_by_side` after :func:`add_ratios`."""
    settings, bounds = result["settings"], result["bounds"]
    precision = "bfloat16 compute" if settings["bfloat16"] else "float32"
    title = MODEL_TITLES[settings.get("model", "capsnet")]
    ceiling = ""
    if bounds.get("gflop_per_image"):
        ceiling = (
            f" Same-run GEMM ceiling: {bounds['gemm_gflops']:.0f} GFLOP/s, i.e. at most "
            f"{bounds['ceiling_examples_per_sec']['train']:.0f} train and "
            f"{bounds['ceiling_examples_per_sec']['infer']:.0f} inference img/s at XLA's FLOP count "
            f"({bounds['gflop_per_image']['train']:.2f} / {bounds['gflop_per_image']['infer']:.2f} GFLOP per image)."
        )
    lines = [
        f"Side by side, {title} ({precision}, {settings['rounds']} alternating rounds, median of "
        f"{settings['steps']} steps per run; range over rounds in brackets).{ceiling}",
        "",
        f"| system | train img/s, batch {settings['train_batch']} | x fastest peer | of GEMM ceiling "
        f"| inference img/s, batch {settings['infer_batch']} | x fastest peer | of GEMM ceiling "
        "| peak RSS train, MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(value, fmt):
        return "-" if value is None else format(value, fmt)

    for name, row in result["summary"].items():
        train_range = row["train_range"] or [0, 0]
        infer_range = row["infer_range"] or [0, 0]
        lines.append(
            f"| {name} ({row['framework']}) | {cell(row['train_examples_per_sec'], '.1f')} "
            f"[{train_range[0]:.1f}-{train_range[1]:.1f}] | {cell(row['train_ratio_to_fastest_peer'], '.2f')} "
            f"| {cell(row['train_gemm_fraction'], '.0%')} | {cell(row['infer_examples_per_sec'], '.1f')} "
            f"[{infer_range[0]:.1f}-{infer_range[1]:.1f}] | {cell(row['infer_ratio_to_fastest_peer'], '.2f')} "
            f"| {cell(row['infer_gemm_fraction'], '.0%')} | {cell(row['train_peak_rss_mib'], '.0f')} |"
        )
    for name, why in result["skipped"].items():
        lines.append(f"| {name} | skipped: {why} | | | | | | |")
    return lines + [""]
