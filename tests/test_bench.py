import importlib.util
import json

import pytest

from capsjax.analysis.bench import run_benchmarks, to_markdown
from capsjax.analysis.side_by_side import add_ratios, available_systems
from capsjax.analysis.step_parts import PARTS


def test_quick_bench_writes_json_and_markdown_with_the_installed_peers(tmp_path):
    """One quick run of everything (the peers, capsjax's rows, sweeps, memory): the suite's time."""
    results = run_benchmarks(tmp_path, quick=True)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["train"][0]["batch"] == 8
    row = saved["train"][0]
    for key in (
        "train_examples_per_sec",
        "inference_examples_per_sec",
        "first_step_sec",
        "roofline_ratio",
        "routing_share",
        "input_pipeline_share",
        "step_gflop",
    ):
        assert row[key] > 0, key
    assert set(saved["routing_sweeps_sec"]) == {"in_caps", "out_caps", "num_iters"}
    assert saved["memory_mib_by_batch"][1]["plain"] > saved["memory_mib_by_batch"][0]["plain"]
    parts = saved["step_parts"]
    assert parts["batch"] == 8 and parts["memory_gb_per_sec"] > 0 and parts["gemm_gflops"] > 0
    assert [row["part"] for row in parts["parts"]] == list(PARTS)
    assert all(row["seconds"] > 0 and row["of_bound"] > 0 for row in parts["parts"])
    markdown = (tmp_path / "bench.md").read_text()
    assert markdown == to_markdown(results)
    assert "| 8 |" in markdown
    for title in PARTS.values():
        assert f"| {title} |" in markdown

    comparison = saved["side_by_side"]
    runnable, skipped = available_systems()
    assert set(comparison["summary"]) == set(runnable) and comparison["skipped"] == skipped
    capsjax = comparison["summary"]["capsjax"]
    assert capsjax["train_examples_per_sec"] > 0 and capsjax["infer_examples_per_sec"] > 0
    assert capsjax["train_peak_rss_mib"] > 100  # a real process that held the paper's network
    assert 0 < capsjax["train_gemm_fraction"] < 1
    flops = comparison["bounds"]["gflop_per_image"]
    assert 1.0 < flops["train"] < 1.5 and 0.3 < flops["infer"] < 0.6  # the paper's network: ~1.2 GFLOP to train
    assert "| capsjax (" in markdown
    for name, why in skipped.items():
        assert f"| {name} | skipped: {why}" in markdown
    # Efficient-CapsNet and matrix capsules, each against its peer, at their own batches (2 here).
    assert list(saved["other_models"]) == ["efficient_capsnet", "matrix_capsnet"]
    for model, other in saved["other_models"].items():
        runnable, skipped = available_systems(model=model)
        assert set(other["summary"]) == set(runnable) and other["skipped"] == skipped and "capsjax" in runnable
        assert other["summary"]["capsjax"]["train_examples_per_sec"] > 0
        assert other["settings"]["model"] == model and other["settings"]["train_batch"] == 2
    assert "Side by side, Efficient-CapsNet (MNIST)" in markdown
    assert "Side by side, matrix capsules with EM routing (32x32)" in markdown
    # What --peers-only writes: the comparison's table alone.
    keys = ("machine", "quick", "matmul_gflops", "side_by_side", "other_models")
    peers_only = to_markdown({key: saved[key] for key in keys})
    assert "| capsjax (" in peers_only and "| 8 |" not in peers_only and len(peers_only) < len(markdown)


def test_peers_only_writes_the_comparison_alone(tmp_path, monkeypatch):
    """``--peers-only`` stops after the side-by-side table (stood in for here: the test above runs it)."""
    import capsjax.analysis.bench as bench

    comparison = {"summary": {}, "skipped": {"keras": "not installed"}, "bounds": {}}
    monkeypatch.setattr(bench, "compare_with_peers", lambda plan, **kwargs: comparison)
    monkeypatch.setattr(bench, "compare_other_models", lambda plan, **kwargs: {})
    monkeypatch.setattr(bench, "train_step_benchmark", lambda *a, **k: pytest.fail("ran capsjax's own rows"))
    monkeypatch.setattr(bench, "to_markdown", lambda results: f"{sorted(results)}\n")
    saved = run_benchmarks(tmp_path, quick=True, peers_only=True)
    assert saved["side_by_side"] == comparison and "train" not in saved
    assert json.loads((tmp_path / "bench.json").read_text())["side_by_side"] == comparison
    assert saved["matmul_gflops"]["start"] > 0
    assert (tmp_path / "bench.md").read_text() == f"{sorted(saved)}\n"


def test_peers_missing_are_named(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "torch" else real_find_spec(name))
    runnable, skipped = available_systems(("capsjax", "pytorch"))
    assert runnable == ["capsjax"] and "torch is not installed" in skipped["pytorch"]


def test_ratios_to_the_fastest_peer_and_to_the_gemm_ceiling():
    summary = {
        "capsjax": {"train_examples_per_sec": 150.0, "infer_examples_per_sec": 600.0},
        "keras": {"train_examples_per_sec": 100.0, "infer_examples_per_sec": 300.0},
        "pytorch": {"train_examples_per_sec": 80.0, "infer_examples_per_sec": 400.0},
    }
    bounds = add_ratios(summary, gemm_gflops=240.0, gflop_per_image={"train": 1.2, "infer": 0.4})
    assert bounds["fastest_peer"] == {"train": "keras", "infer": "pytorch"}
    assert bounds["ceiling_examples_per_sec"] == {"train": 200.0, "infer": 600.0}
    assert summary["capsjax"]["train_ratio_to_fastest_peer"] == 1.5
    assert summary["capsjax"]["infer_ratio_to_fastest_peer"] == 1.5
    assert summary["keras"]["train_gemm_fraction"] == 0.5
