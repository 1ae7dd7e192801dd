"""The harness on a real exported bundle through `edge_msa.runtime.load` (ONNX Runtime, CPU)."""
from __future__ import annotations

import json

import pytest

from edge_msa.benchmarks import run_bench
from edge_msa.metrics import METRIC_KEYS


@pytest.mark.slow
def test_bench_real_student_bundle(tmp_path, tiny_splits):
    pytest.importorskip("torch", reason="exporting the test bundle needs torch (the benchmark itself does not)")
    import edge_msa.models.zoo  # noqa: F401  (registers the student)
    from edge_msa.checkpoint import save_checkpoint
    from edge_msa.models import create_model
    from edge_msa.export.exporter import export

    save_checkpoint(tmp_path / "s.pt", create_model("student_tiny", tiny_splits.spec), {})
    bundle = export(tmp_path / "s.pt", "onnx", tmp_path / "bundle", log=None)
    out = run_bench([bundle], data=tiny_splits, out=tmp_path / "report", batches=(1, 4),
                    modalities=("all", "text"), threads=1, meter="none", min_time=0.1, min_runs=10, warmup=3,
                    progress=False)
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok"] * 4
    for r in rows:
        assert r["backend"] == "onnxruntime" and r["precision"] == "fp32" and r["model"] == "student_tiny"
        assert r["providers"] == ["CPUExecutionProvider"] and r["threads"] == 1 and r["load_ms"] > 0
        assert set(r["metrics"]) == set(METRIC_KEYS) and 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
        assert r["energy"].startswith("unavailable: ")
    stages = {(r["batch"], r["modalities"]): set(r["stages_ms"]) for r in rows}
    assert {"encode_text", "fuse", "total"} <= stages[(1, "text")] and "gate" not in stages[(1, "text")]
    assert {"encode_text", "gate", "fuse"} <= stages[(1, "all")]
    for r in rows:  # per call, skipped stages counted as 0: the stages add up to the runtime's total
        ms = r["stages_ms"]
        assert sum(v for k, v in ms.items() if k != "total") == pytest.approx(ms["total"], abs=1e-6)
        assert set(r["stages_ran"]) == set(ms) and all(0 < f <= 1 for f in r["stages_ran"].values())
