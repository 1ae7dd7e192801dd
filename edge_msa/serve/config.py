"""What `edge-msa serve` is configured with; one place for the defaults (the CLI reads them from here)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .inputs import Limits


@dataclass
class ServeConfig:
    """Everything `edge-msa serve` takes besides host and port."""

    bundle: str
    threads: int | None = 1  # ONNX Runtime intra-op threads per session (None = its default); see the README
    max_batch: int = 16
    max_wait_ms: float = 0.0  # 0: take what queued during the previous call (README: chosen on the load test)
    max_queue: int = 256
    feedback: str | None = None  # SQLite path; None = /v1/feedback is off
    remember: int = 10000  # recent predictions kept for feedback by request id
    limits: Limits = field(default_factory=Limits)
