import math

import jax
import pytest

from capsjax.analysis.step_parts import PARTS, memory_gbytes_per_sec, part_bounds, part_programs
from capsjax.nn.capsnet import CapsNetConfig, RoutingConfig

SMALL = dict(conv_channels=16, primary_types=2)


def _rows(config, **rates):
    return {row["part"]: row for row in part_bounds(4, config, repeats=1, **rates)}


def test_every_part_is_timed_and_costed_and_its_bound_is_the_slower_rate():
    rows = _rows(CapsNetConfig(**SMALL), gemm_gflops=50.0, memory_gbps=10.0)
    assert list(rows) == list(PARTS)
    for row in rows.values():
        assert row["seconds"] > 0 and row["gflop"] > 0 and row["gbytes"] > 0, row
        compute, memory = row["gflop"] / 50.0, row["gbytes"] / 10.0
        assert math.isclose(row["bound_sec"], max(compute, memory))
        assert row["bound_by"] == ("compute" if compute >= memory else "memory")
        assert math.isclose(row["of_bound"], row["bound_sec"] / row["seconds"])
    # A machine with unlimited memory rate makes every part compute-bound, and the other way round.
    assert {r["bound_by"] for r in _rows(CapsNetConfig(**SMALL), gemm_gflops=1.0, memory_gbps=1e9).values()} == {
        "compute"
    }


@pytest.mark.parametrize("chunk_size", [1, 2])
def test_routing_in_a_loop_is_costed_as_one_example_times_the_batch(chunk_size):
    """XLA counts a loop's body once: the chunked routing must still cost what the whole batch does."""
    whole = _rows(CapsNetConfig(**SMALL, routing=RoutingConfig(chunk_size=0)), gemm_gflops=50.0, memory_gbps=10.0)
    chunked = _rows(
        CapsNetConfig(**SMALL, routing=RoutingConfig(chunk_size=chunk_size)), gemm_gflops=50.0, memory_gbps=10.0
    )
    ratio = chunked["votes_and_routing"]["gflop"] / whole["votes_and_routing"]["gflop"]
    assert 0.8 < ratio < 1.25, ratio


def test_the_first_conv_has_no_image_gradient_and_the_others_do():
    programs = part_programs(2, CapsNetConfig(**SMALL))
    fn, args, _ = programs["first_conv"]
    (params_grad,) = fn(*args)
    assert jax.tree.structure(params_grad) == jax.tree.structure(args[0])
    fn, args, _ = programs["primary_capsules"]
    _, input_grad = fn(*args)
    assert input_grad.shape == args[1].shape


def test_memory_rate_is_a_rate():
    assert 0.1 < memory_gbytes_per_sec(8, repeats=2) < 10_000
