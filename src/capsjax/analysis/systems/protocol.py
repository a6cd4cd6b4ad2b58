"""What every system's script measures and prints, so that capsjax and its peers are timed alike.

A script is run as ``python <script> --mode train|infer --batch B --steps N --warmup W`` in its own
process. It times ``N`` steps after ``W`` warm-up steps (compilation, allocation), each step on the
same random float32 batch, and prints one JSON line: the median step time, examples per second and
the peak resident memory of its process. This file imports only the standard library.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="time one CapsNet system (see protocol.py)")
    parser.add_argument("--mode", choices=("train", "infer"), required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bfloat16", action="store_true", help="bfloat16 compute (each framework's mixed precision)")
    return parser.parse_args(argv)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(step: Callable[[], None], *, steps: int, warmup: int) -> list[float]:
    """Wall time of each of ``steps`` calls of ``step`` (which must block until done) after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def report(system: str, framework: str, args: argparse.Namespace, times: list[float], **extra) -> dict:
    """Print (and return) the JSON line of one measurement."""
    step_sec = statistics.median(times)
    result = {
        "system": system,
        "framework": framework,
        "mode": args.mode,
        "batch": args.batch,
        "step_sec": step_sec,
        "examples_per_sec": args.batch / step_sec,
        "step_times": times,
        "peak_rss_mib": peak_rss_mib(),
        **extra,
    }
    print(json.dumps(result))
    sys.stdout.flush()
    return result
