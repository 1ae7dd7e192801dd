"""Benchmarks: bundle(s) -> latency, energy, accuracy report (numpy + onnxruntime; meters imported lazily)."""
from .compare import compare_reports, comparison, differing_settings, load_report, render_comparison
from .sweep import run_bench

__all__ = ["compare_reports", "comparison", "differing_settings", "load_report", "render_comparison", "run_bench"]
