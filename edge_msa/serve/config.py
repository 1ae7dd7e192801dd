"""What `edge-msa serve` is configured with; one place for the defaults (the CLI reads them from here).

Light on purpose: every `edge-msa` call builds the serve parser from these defaults, so this module imports no
runtime (Limits lived beside the request parsing, whose import of the predictor cost every call ~25 ms).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated

from ..errors import check_range
from ..features import MAX_MEDIA_SECONDS
from ..jsonio import MayBeInfinite


@dataclass(frozen=True)
class Limits:
    """What one request may carry; defaults suit a kiosk utterance (a sentence and a clip of seconds)."""

    max_body_bytes: int = 8 * 2**20
    max_text_chars: int = 2000
    max_media_seconds: Annotated[float, MayBeInfinite()] = MAX_MEDIA_SECONDS  # inf: no limit (/v1/info: "Infinity")
    max_steps: int = 1024  # rows L of a feature array (L, d)
    max_items: int = 64  # inputs in one /v1/predict/batch request
    # seconds a body may pause (no new byte) before a 408. Per pause, not per body: a phone's slow upload is fine.
    # 30 s lets TCP recover a coverage hole (at a 1 s RTO it resends a lost segment 1, 3, 7, 15 s after) and
    # lies between Apache's 20 s (mod_reqtimeout body=) and nginx's 60 s (client_body_timeout), both per pause.
    body_timeout_s: float = 30.0
    # seconds for a whole request body, from its header: the pause limit alone let a client sending a byte per pause
    # hold its connection for ever. The default --max-body (8 MiB) takes 67 s on a slow 1 Mbit/s uplink; 120 s
    # leaves it room (nginx and Apache bound only the pauses, Apache also a minimum rate, 500 B/s by default)
    body_deadline_s: float = 120.0
    # seconds for a whole request header, from connecting or from the previous answer (serve.connections): TCP's
    # resends of a lost header segment fit in it as in body_timeout_s, and Apache takes 20-40 s, nginx 60 s
    header_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        """Each limit a number > 0 (the media one may be inf: no limit, as in predict), named as given: the keyword in
        Python, serve's flag on its command line (cli.serve.LIMIT_FLAGS). The others are counts (bytes, characters,
        rows, inputs): serve parses them with type=int, but from Python max_steps 2.5 was taken as given. The body
        and header timeouts and the body's deadline are finite numbers of seconds: a request may not stall for ever."""
        limits = asdict(self)
        media = {"max_media_seconds": limits.pop("max_media_seconds")}
        seconds = {name: limits.pop(name) for name in ("body_timeout_s", "body_deadline_s", "header_timeout_s")}
        check_range(limits, 0, strict=True, whole=True)
        check_range(media, 0, strict=True, no_limit=True)
        check_range(seconds, 0, strict=True)


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

    def __post_init__(self) -> None:
        """`remember` a whole number >= 1, named as given (serve's --remember on its command line): only the CLI
        checked it, so from Python remember=0 kept no prediction for feedback to name, and 2.5 was taken as given.
        The batching knobs are MicroBatcher's to check."""
        check_range({"remember": self.remember}, 1, strict=False, whole=True)
