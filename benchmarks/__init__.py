"""Benchmarks: bundle(s) -> latency, energy, accuracy report (numpy + onnxruntime; meters imported lazily).

Attributes are resolved lazily so the CLI can read the defaults in `.meters` for its --help without importing the
sweep (and the runtime with it) on every `edge-msa` call.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compare_reports": "compare", "comparison": "compare", "differing_settings": "compare", "load_report": "compare",
    "render_comparison": "compare", "run_bench": "sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
