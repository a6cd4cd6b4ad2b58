import importlib.util
import json

from capsjax.analysis.bench import run_benchmarks, to_markdown
from capsjax.analysis.side_by_side import add_ratios, available_systems


def test_quick_bench_writes_json_and_markdown(tmp_path):
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
    assert (tmp_path / "bench.md").read_text() == to_markdown(results)
    assert "| 8 |" in (tmp_path / "bench.md").read_text()


def test_quick_bench_compares_capsjax_with_the_installed_peers(tmp_path):
    saved = run_benchmarks(tmp_path, quick=True, peers_only=True)
    comparison = saved["side_by_side"]
    runnable, skipped = available_systems()
    assert set(comparison["summary"]) == set(runnable) and comparison["skipped"] == skipped
    capsjax = comparison["summary"]["capsjax"]
    assert capsjax["train_examples_per_sec"] > 0 and capsjax["infer_examples_per_sec"] > 0
    assert capsjax["train_peak_rss_mib"] > 100  # a real process that held the paper's network
    assert 0 < capsjax["train_gemm_fraction"] < 1
    flops = comparison["bounds"]["gflop_per_image"]
    assert 1.0 < flops["train"] < 1.5 and 0.3 < flops["infer"] < 0.6  # the paper's network: ~1.2 GFLOP to train
    markdown = (tmp_path / "bench.md").read_text()
    assert "| capsjax (" in markdown
    for name, why in skipped.items():
        assert f"| {name} | skipped: {why}" in markdown


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
