"""What the harness times: a loaded bundle behind a small protocol, so the sweep runs the same against
the real runtime (`edge_msa.runtime.load`) and against fakes with known latencies in tests."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol

from edge_msa.features.text import TOKENS_PREFIX
from edge_msa.runtime.evaluate import FeaturePredictor
from edge_msa.spec import FeatureSpec

from .coldstart import open_bundle
from .inputs import Batch

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def runs_on_gpu(backend: str, providers: Iterable[str]) -> bool:
    """Whether a bundle runs on the GPU: TensorRT, or ONNX Runtime with a GPU provider it actually got. One rule for
    a loaded target and for a report's rows (their `backend` and `providers`), which --compare reads."""
    return backend == "tensorrt" or any(p in GPU_PROVIDERS for p in providers)


def ok_rows_on_gpu(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a successful row of a report ran on the GPU: the one rule for "this run used the GPU", which decides
    whether the GPU's governor counts in the `system` block's clock advice (bench) and in --compare's clock warning,
    and whether report.md explains a missing NVML reading. The rows, not the loaded targets: a bundle that loaded on
    the GPU but whose every row failed measured nothing there, and report.json (which --compare and a re-render
    read) holds the rows alone, so a rule on the targets made the advice and the report's GPU lines disagree."""
    return any(r.get("status") == "ok" and runs_on_gpu(r.get("backend", ""), r.get("providers", [])) for r in rows)


class BenchPredictor(FeaturePredictor, Protocol):
    """The slice of `edge_msa.runtime.Predictor` the harness needs: evaluation's FeaturePredictor (the accuracy run
    and feature-input rows; one contract, the runtime's), the manifest, and `predict_batch` for rows timed from raw
    transcripts and for the per-stage ms (fakes in tests, timed from features, may lack it: `stages_ms` checks)."""

    manifest: Any

    def predict_batch(self, inputs: Iterable[Mapping[str, Any]]) -> list[Any]: ...


Loader = Callable[[Path, "str | None", "int | None"], BenchPredictor]


@dataclass
class Target:
    """A loaded bundle: manifest facts, and one timed call per batch."""

    bundle: Path
    backend: str | None
    predictor: BenchPredictor
    threads: int | None

    @property
    def manifest(self) -> dict:
        m = self.predictor.manifest
        return m.to_dict() if hasattr(m, "to_dict") else dict(m)

    @property
    def spec(self) -> FeatureSpec:
        spec = self.manifest["feature_spec"]
        return spec if isinstance(spec, FeatureSpec) else FeatureSpec.from_dict(spec)

    @property
    def text_vocab(self) -> int | None:
        """The vocabulary size of a token-id bundle's tokenizer (its text inputs are ids below it; synthetic
        inputs must be too), else None."""
        if not self.spec.front_end("text").startswith(TOKENS_PREFIX):
            return None
        encoder = getattr(self.predictor, "text_encoder", None)  # the runtime's; fakes in tests may lack it
        return None if encoder is None else int(encoder.vocab_size)

    @property
    def backend_name(self) -> str:
        return self.backend or str(self.manifest.get("backend", "onnxruntime"))

    @property
    def precision(self) -> str:
        return str(self.manifest.get("precision", "unknown"))

    @property
    def providers(self) -> list[str]:
        """Execution providers the graphs actually got (ORT falls back to CPU silently otherwise)."""
        backends = getattr(self.predictor, "backends", {}) or {}
        return sorted({p for b in backends.values() for p in getattr(b, "providers", [])})

    @property
    def on_gpu(self) -> bool:
        return runs_on_gpu(self.backend_name, self.providers)

    def run_once(self, batch: Batch) -> Any:
        """One timed call: from the raw transcripts when the batch has them, else from feature arrays."""
        if batch.texts is not None:
            return self.predictor.predict_batch(_items(batch))
        return self.predictor.predict_features(batch.features, batch.lengths)

    def stages_ms(self, batch: Batch) -> dict[str, float] | None:
        """Per-stage ms of one `predict_batch` call on the same samples (the runtime times each graph and the
        tokenizer), or None for predictors without it."""
        predict_batch = getattr(self.predictor, "predict_batch", None)
        if predict_batch is None:
            return None
        predictions = predict_batch(_items(batch))  # each item carries its share of the call: add them up
        totals: dict[str, float] = {}
        for p in predictions:  # run one at a time (row_by_row), items differ in the encoders their gate ran
            for stage, ms in p.ms.items():
                totals[stage] = totals.get(stage, 0.0) + ms
        return totals


def _items(batch: Batch) -> list[dict[str, Any]]:
    """predict_batch inputs: each sample's present modalities as (L, d) arrays, text as its transcript if given."""
    items: list[dict[str, Any]] = [
        {m: batch.features[m][i, :n] for m in batch.features if (n := int(batch.lengths[m][i])) > 0}
        for i in range(batch.size)]
    if batch.texts is not None:
        for item, text in zip(items, batch.texts):
            item["text"] = text
    return items


def load_target(bundle: Path, backend: str | None, threads: int | None, loader: Loader | None = None) -> Target:
    """Load a bundle with its text front end (`open_bundle`) for the accuracy run and the timing. Its cold start is
    measured apart, in fresh processes (`coldstart.measure_cold_start`): here it would depend on the bundles
    loaded before it."""
    return Target(bundle, backend, open_bundle(bundle, backend, threads, loader), threads)
