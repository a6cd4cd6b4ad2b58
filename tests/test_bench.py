import json

from capsjax.analysis.bench import run_benchmarks, to_markdown


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
