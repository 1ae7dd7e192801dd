"""Benchmarks: bundle(s) -> latency, energy, accuracy report (numpy + onnxruntime; meters imported lazily).

Attributes are resolved lazily so the CLI can read the defaults in `.meters` for its --help without importing the
sweep (and the runtime with it) on every `edge-msa` call.
"""
from __future__ import annotations

from edge_msa.lazy import lazy_attributes

_EXPORTS = {
    "compare_reports": "compare", "comparison": "compare", "comparisons": "compare", "differing_settings": "compare",
    "load_report": "compare", "render_comparison": "compare", "run_bench": "sweep",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
