"""Prometheus metrics of the service (prometheus-client), on a registry of its own so two services in one
process (tests) never clash."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable

from ..spec import MODALITIES

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
OUTCOMES = ("ran", "skipped", "missing", "unusable")  # per modality of each served input
# the label of a connection closed past --header-timeout-s, by whether a request had begun (answered 408 first)
HEADER_TIMEOUTS = {True: "408", False: "closed"}


def outcome(prediction: dict[str, Any], modality: str) -> str:
    """ran | skipped (the gate judged it not worth running) | missing (not given) | unusable (given, not usable)."""
    if modality in prediction["ran"]:
        return "ran"
    reason = prediction["skipped"].get(modality, "missing")
    return "missing" if reason == "missing" else "skipped" if reason.startswith("gate") else "unusable"


class ServiceMetrics:
    """Requests by path and code, latency, batch sizes, queue depth, modality outcomes and skip ratio, and the
    connections the header deadline closed."""

    def __init__(self, queue_depth: Callable[[], float]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("edge_msa_http_requests", "HTTP requests by path and status code",
                                ["path", "code"], registry=self.registry)
        self.latency = Histogram("edge_msa_http_request_seconds", "HTTP request latency by path", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("edge_msa_batch_size", "inputs per predict_batch call", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.batch_seconds = Histogram("edge_msa_batch_seconds", "time of one predict_batch call",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.modality = Counter("edge_msa_modality_inputs", "served inputs per modality by outcome "
                                "(ran, skipped by the gate, missing, unusable)", ["modality", "outcome"],
                                registry=self.registry)
        skip_ratio = Gauge("edge_msa_skip_ratio", "share of inputs with this modality present whose encoder "
                           "the gate skipped, since start", ["modality"], registry=self.registry)
        self._counts = {(m, o): 0 for m in MODALITIES for o in OUTCOMES}  # for the ratio; read by the gauge
        for m in MODALITIES:
            for o in OUTCOMES:
                self.modality.labels(m, o)  # export zeros from the start
            skip_ratio.labels(m).set_function(partial(self._skip_ratio, m))
        Gauge("edge_msa_queue_depth", "inputs waiting for the batch worker",
              registry=self.registry).set_function(queue_depth)
        # closed by the protocol (serve.connections), not answered by the app: edge_msa_http_requests never sees them
        self.header_timeouts = Counter("edge_msa_header_timeouts", "connections closed by --header-timeout-s: "
                                       "answered 408 where a request had begun, closed where nothing came",
                                       ["outcome"], registry=self.registry)
        for o in HEADER_TIMEOUTS.values():
            self.header_timeouts.labels(o)  # export zeros from the start: a rate of none is 0, not absent

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def observe_prediction(self, prediction: dict[str, Any]) -> None:
        for m in MODALITIES:
            o = outcome(prediction, m)
            self.modality.labels(m, o).inc()
            self._counts[m, o] += 1

    def observe_request(self, path: str, code: int, seconds: float) -> None:
        self.requests.labels(path, str(code)).inc()
        self.latency.labels(path).observe(seconds)

    def observe_header_timeout(self, begun: bool) -> None:
        self.header_timeouts.labels(HEADER_TIMEOUTS[begun]).inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _skip_ratio(self, modality: str) -> float:
        skipped, ran = self._counts[modality, "skipped"], self._counts[modality, "ran"]
        return skipped / (skipped + ran) if skipped + ran else 0.0
