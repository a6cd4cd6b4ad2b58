import math

import jax
import pytest

from capsjax.analysis.step_parts import PARTS, bound_of, memory_gb_per_sec, part_bounds, part_programs
from capsjax.nn.capsnet import CapsNetConfig, RoutingConfig

SMALL = dict(conv_channels=16, primary_types=2)


def test_every_part_is_timed_and_costed():
    rows = part_bounds(4, CapsNetConfig(**SMALL), repeats=1, gemm_gflops=50.0, memory_gb_per_sec=10.0)
    assert [row["part"] for row in rows] == list(PARTS)
    for row in rows:
        assert row["seconds"] > 0 and row["gflop"] > 0 and row["gbytes"] > 0, row
        assert row == row | bound_of(row["gflop"], row["gbytes"], row["seconds"], 50.0, 10.0)


def test_the_bound_is_the_slower_of_compute_and_memory():
    # 2 GFLOP at 100 GFLOP/s = 20 ms; 1 GB at 20 GB/s = 50 ms: memory-bound, at 50% of it in 100 ms.
    assert bound_of(2.0, 1.0, 0.1, 100.0, 20.0) == pytest.approx(
        {"bound_sec": 0.05, "bound_by": "memory", "of_bound": 0.5}
    )
    assert bound_of(8.0, 1.0, 0.1, 100.0, 20.0) == pytest.approx(
        {"bound_sec": 0.08, "bound_by": "compute", "of_bound": 0.8}
    )


@pytest.mark.parametrize("chunk_size", [1, 2])
def test_routing_in_a_loop_is_costed_for_the_whole_batch_with_its_recomputed_forward(chunk_size):
    """XLA counts a loop's body once: routing in chunks must still cost the whole batch's forward and
    backward, plus the forward each chunk recomputes in the backward pass (about 4/3 of the whole
    batch's count; a cost left at one chunk's would be 1/4 or 1/2 of it)."""

    def routing_cost(chunk):
        config = CapsNetConfig(**SMALL, routing=RoutingConfig(chunk_size=chunk))
        part = part_programs(4, config)["votes_and_routing"]
        flops = jax.jit(part.cost_fn).lower(*part.cost_args).compile().cost_analysis()
        flops = (flops[0] if isinstance(flops, list) else flops)["flops"]
        return part.trips * flops, part.trips

    whole, whole_trips = routing_cost(0)
    chunked, trips = routing_cost(chunk_size)
    assert whole_trips == 1 and trips == 4 // chunk_size
    assert 1.1 < chunked / whole < 2.0, chunked / whole


def test_every_part_keeps_its_forward_pass_and_the_gradients_training_needs():
    programs = part_programs(2, CapsNetConfig(**SMALL, routing=RoutingConfig(chunk_size=1)))
    out, (params_grad,) = programs["first_conv"].fn(*programs["first_conv"].args)
    assert out.shape == (2, 20, 20, 16)  # no image gradient: the images are not trained
    assert jax.tree.structure(params_grad) == jax.tree.structure(programs["first_conv"].args[0])
    for name in ("primary_capsules", "votes_and_routing", "decoder"):
        part = programs[name]
        out, (_, input_grad) = part.fn(*part.args)
        assert out.shape == part.args[2].shape and input_grad.shape == part.args[1].shape, name
    assert programs["optimizer"].carry == 2


def test_memory_rate_is_a_rate():
    rate = memory_gb_per_sec(8, repeats=2)
    assert math.isfinite(rate) and 0.1 < rate < 10_000
