"""Validation as a pipeline step: the exported bundle, run by the on-device Predictor, against the torch
model, on real-shaped inputs with every modality subset. fp32 is judged by max|Δ| per graph; fp16/int8
(and engines) by the metric drop on the validation split, where how closely their scores follow torch's is measured.

Like is compared with like: a gate output within TIE_BAND of its threshold may land on either side in torch
and in ONNX Runtime (float rounding, thread count), so such a decision is a tie, not a mismatch, and the
end-to-end score is compared with torch run under the bundle's own decisions."""
from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np
import torch

from edge_msa.data.base import FeatureSet
from edge_msa.errors import ParityError, plural
from edge_msa.features.text import TOKENS_PREFIX
from edge_msa.metrics import NO_NON_ZERO, msa_metrics
from edge_msa.models.student import run_with_skipping
from edge_msa.training import modality_tensors
from edge_msa.runtime.backend import Backend
from edge_msa.runtime.evaluate import FeaturePredictor, predict_featureset, scored_metrics
from edge_msa.runtime.torch_backend import TorchBackend
from edge_msa.spec import GRAPH_IO, MODALITIES, SKIPPABLE, FeatureSpec, modality_runs

if TYPE_CHECKING:
    from edge_msa.runtime.predictor import Predictor

SUBSETS = [s for n in range(1, 4) for s in itertools.combinations(MODALITIES, n)]  # the 7 non-empty subsets
TIE_BAND = 1e-4  # |keep - threshold| at or below this is a tie (the gate graph itself is held to atol)
RANDOM_INPUTS = 8  # samples of random parity inputs when no validation data is given


class Recorder(Backend):
    """Passes runs through to another backend and keeps every (feed, outputs) pair."""

    def __init__(self, inner: Backend) -> None:
        super().__init__()
        self.inner, self.inputs, self.outputs, self.label = inner, inner.inputs, inner.outputs, inner.label
        self.records: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.inner._run(feed)
        self.records.append((feed, out))
        return out


@dataclass
class ParityBatch:
    subset: tuple[str, ...]
    features: dict[str, np.ndarray]  # (B, L, d); zeros for modalities outside the subset
    lengths: dict[str, np.ndarray]  # (B,); 0 outside the subset


@dataclass
class ParityResult:
    max_abs_diff: dict[str, float]
    atol: float | None
    ok: bool
    ran_mismatches: int
    inputs: str
    ran_ties: int = 0  # samples whose decision differed only within TIE_BAND of a threshold
    subsets: list[str] = field(default_factory=lambda: ["+".join(s) for s in SUBSETS])

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parity_batches(spec: FeatureSpec, valid: FeatureSet | None, seed: int = 0,
                   max_batch: int | None = None) -> list[ParityBatch]:
    """Every modality subset of ALL validation samples (or of RANDOM_INPUTS random inputs of the spec's
    shapes, lengths 1..max_len), so skipped, missing and present paths are all exercised; in chunks of at
    most `max_batch` samples (an engine's profile), the full-modality batches last."""
    rng = np.random.default_rng(seed)
    if valid is not None:
        lengths = {m: valid.lengths[m].astype(np.int64) for m in MODALITIES}
        feats = {m: valid.features[m] for m in MODALITIES}
    else:
        b = RANDOM_INPUTS
        lengths = {m: rng.integers(1, spec.max_len(m) + 1, size=b) for m in MODALITIES}
        for m in MODALITIES:
            lengths[m][0] = spec.max_len(m)
        feats = {}
        for m in MODALITIES:
            x = rng.normal(size=(b, spec.max_len(m), spec.dim(m))).astype(np.float32)  # (B, L, d)
            if m == "text" and spec.front_end(m).startswith(TOKENS_PREFIX):  # token ids; every BERT vocab has 999
                x = rng.integers(1, 1000, size=x.shape).astype(np.float32)
            x[np.arange(spec.max_len(m))[None, :] >= lengths[m][:, None]] = 0.0
            feats[m] = x
    n = len(lengths["text"])
    step = max_batch or n
    batches = []
    for subset in SUBSETS:
        for start in range(0, n, step):
            rows = slice(start, start + step)
            ln = {m: lengths[m][rows] if m in subset else np.zeros_like(lengths[m][rows]) for m in MODALITIES}
            f = {m: feats[m][rows, :max(int(ln[m].max()), 1)] if m in subset else
                 np.zeros((len(ln[m]), 1, spec.dim(m)), np.float32) for m in MODALITIES}
            batches.append(ParityBatch(subset, f, ln))
    return batches


def to_torch_batch(features: Mapping[str, np.ndarray], lengths: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    batch = {}
    for m in MODALITIES:
        batch[m], batch[f"{m}_mask"] = modality_tensors(features[m], lengths[m])  # (B, L, d), (B, L)
    return batch


@torch.no_grad()
def reference(model: Any, layout: str, features: Mapping[str, np.ndarray],
              lengths: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The torch answer the bundle must match: the skip rule for parts, plain forward for one graph."""
    model.eval()
    batch = to_torch_batch(features, lengths)
    if layout == "parts":
        score, ran = run_with_skipping(model, batch)
        return score.numpy(), ran.numpy()
    present = np.stack([lengths[m] > 0 for m in MODALITIES], axis=1)  # (B, 3)
    return model(batch)["score"].numpy(), present


@torch.no_grad()
def reference_under(model: Any, features: Mapping[str, np.ndarray], lengths: Mapping[str, np.ndarray],
                    ran: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The parts reference judged like with like: torch's score under the bundle's decisions `ran` (B, 3),
    torch's own decisions (B, 3), and where a decision is a tie (B, 3): |keep - threshold| <= TIE_BAND."""
    model.eval()
    batch = to_torch_batch(features, lengths)
    h_text = model.encode("text", batch["text"], batch["text_mask"])  # (B, D)
    keep = model.keep(h_text, batch).numpy()  # (B, 2)
    thresholds = model.config_params["skip_thresholds"]  # (2,) in SKIPPABLE order
    present = np.stack([lengths[m] > 0 for m in MODALITIES], axis=1)  # (B, 3)
    own = np.stack([present[:, 0], *(modality_runs(lengths[m] > 0, keep[:, i], thresholds[i])
                                     for i, m in enumerate(SKIPPABLE))], axis=1)  # (B, 3)
    near = np.abs(keep - np.asarray(thresholds, np.float32)) <= TIE_BAND  # (B, 2)
    tie = np.concatenate([np.zeros((len(keep), 1), bool), near], axis=1)
    hs = [h_text]
    for j, m in enumerate(MODALITIES[1:], start=1):
        h = torch.zeros_like(h_text)  # (B, D); encoders only see rows that run (no all-masked rows)
        rows = torch.from_numpy(np.flatnonzero(ran[:, j]))
        if len(rows):
            h[rows] = model.encode(m, batch[m][rows], batch[f"{m}_mask"][rows])
        hs.append(h)
    score = model.head(model.fuse_present(*hs, torch.from_numpy(ran.astype(np.float32))))  # (B,)
    return score.numpy(), own, tie & present


def _worst(so_far: float, got: np.ndarray, want: np.ndarray) -> float:
    """The larger of `so_far` and max|got - want|, a NaN difference counted as inf: max() keeps its first argument
    against a NaN, so a graph answering NaN where torch does not passed parity with max|Δ| 0."""
    diff = float(np.abs(got - want).max())
    return max(so_far, math.inf if math.isnan(diff) else diff)


def _check_finite(torch_scores: np.ndarray, bundle_scores: np.ndarray) -> None:
    """Refuse a model that scores no number (NaN or inf) on the parity inputs: a broken checkpoint (a NaN weight)
    exported and loaded, and its bundle answered `score: null` with polarity "neutral" (a 200 from the service)."""
    for side, scores in (("the checkpoint's model", torch_scores), ("the exported graphs", bundle_scores)):
        bad = int((~np.isfinite(scores)).sum())
        if bad:
            raise ParityError(f"{side} scored NaN or inf on {bad} of {scores.size} parity inputs (NaN or infinite "
                              "weights); expected finite scores: export a checkpoint that trained soundly")


@contextmanager
def _recording(predictor: Predictor) -> Iterator[dict[str, Recorder]]:
    """`predictor`'s graphs wrapped in Recorders (graph name -> Recorder) for the duration, unwrapped after."""
    recorders = {p: Recorder(b) for p, b in predictor.backends.items()}
    predictor.backends = dict(recorders)
    try:
        yield recorders
    finally:
        predictor.backends = {p: r.inner for p, r in recorders.items()}


def _run_skipped_encoders(recorders: dict[str, Recorder], full: ParityBatch) -> None:
    """Run each encoder the gate skipped on every row directly on `full` (every modality present), so every graph
    has recorded feeds: ones to replay on torch, and ones to calibrate TensorRT INT8 on."""
    for part, rec in recorders.items():
        if not rec.records and part.startswith("encode_"):
            m = part.split("_", 1)[1]
            x = full.features[m]  # (B, L, d)
            rec.run(dict(zip(GRAPH_IO[part][0], (x, np.arange(x.shape[1])[None, :] < full.lengths[m][:, None]))))


def record_feeds(predictor: Predictor, batches: list[ParityBatch]) -> dict[str, list[dict[str, np.ndarray]]]:
    """Each graph's feeds when `predictor` answers `batches` (the last one with every modality present), per graph
    name: what the TensorRT INT8 calibrator is fed, real-shaped and in every modality subset of `batches`."""
    with _recording(predictor) as recorders:
        for b in batches:
            predictor.predict_features(b.features, b.lengths)
        _run_skipped_encoders(recorders, batches[-1])
    return {p: [feed for feed, _ in r.records] for p, r in recorders.items()}


def check_graphs(model: Any, layout: str, predictor: Predictor, batches: list[ParityBatch], atol: float | None,
                 inputs: str) -> ParityResult:
    """Run every batch through `predictor` (recording each graph's feeds), replay the feeds on the torch
    module of that graph, and compare end-to-end scores with torch under the same skip decisions
    (`reference_under`; decisions that differ off the tie band are mismatches). Raises ParityError when a
    graph (or the end-to-end score) exceeds `atol`; atol None only measures."""
    diffs = {p: 0.0 for p in predictor.backends}
    diffs["score"] = 0.0
    mismatches = ties = 0
    with _recording(predictor) as recorders:
        for b in batches:
            scores, ran = predictor.predict_features(b.features, b.lengths)
            if layout == "parts":
                ref_scores, ref_ran, tie = reference_under(model, b.features, b.lengths, ran)
            else:
                (ref_scores, ref_ran), tie = reference(model, layout, b.features, b.lengths), np.zeros_like(ran)
            _check_finite(ref_scores, scores)
            diffs["score"] = _worst(diffs["score"], scores, ref_scores)
            differ = ran != ref_ran  # (B, 3)
            mismatches += int((differ & ~tie).any(axis=1).sum())
            ties += int((differ & tie).any(axis=1).sum())
        _run_skipped_encoders(recorders, batches[-1])  # every modality present (the last chunk)
    config = model.export_config(single_graph=layout == "single")
    for part, rec in recorders.items():
        torch_graph = TorchBackend(config.module(part), rec.inputs, rec.outputs, part)
        for feed, out in rec.records:
            ref = torch_graph.run(feed)
            for name in rec.outputs:
                diffs[part] = _worst(diffs[part], out[name].astype(np.float32), ref[name])
    ok = atol is None or (all(d <= atol for d in diffs.values()) and mismatches == 0)
    result = ParityResult({k: float(f"{v:.3g}") for k, v in diffs.items()}, atol, ok, mismatches, inputs, ties)
    if atol is not None and not ok:  # only a bound (atol) fails
        bad = [f"{p} {d:.2e}" for p, d in diffs.items() if d > atol]
        if mismatches:
            bad.append(f"skip decisions differ on {mismatches} samples")
        raise ParityError(f"ONNX parity failed: max|Δ| > {atol:.0e} for {', '.join(bad)}")
    return result


@dataclass
class TorchReference:
    """The torch model behind the Predictor's `predict_features`, so the runtime's batching drives both."""

    model: Any
    layout: str

    def predict_features(self, features: Mapping[str, np.ndarray],
                         lengths: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return reference(self.model, self.layout, features, lengths)


def score_agreement(scores: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """How closely the bundle's scores (N,) follow torch's (N,) on the same inputs, without labels: mean |Δ| and
    Pearson r (NaN when either side is constant)."""
    constant = float(np.ptp(scores)) == 0.0 or float(np.ptp(ref)) == 0.0
    r = float("nan") if constant else float(np.corrcoef(scores, ref)[0, 1])
    return {"mean_abs_diff": round(float(np.abs(scores - ref).mean()), 6), "pearson_r": round(r, 6)}


def check_metrics(model: Any, layout: str, predictor: FeaturePredictor, valid: FeatureSet,
                  max_drop: float | None) -> dict[str, Any]:
    """Metrics of torch and of the bundle on the validation split, the Acc-2 (non-0) drop in points, and the
    scores' agreement with torch's (measured, not judged). Raises ParityError when the drop exceeds `max_drop`
    (None: only measure). Where every label is 0 the drop is undefined (None): measured, it is recorded so; judged,
    it is a ParityError, as no drop can be shown within the bound. Agreement is not judged: no bound passed every
    healthy INT8 bundle and rejected the broken ones (the rule fixed before measuring, c6a9636, failed; the README
    gives the figures), so a bound would print a check mark on a broken bundle; the figures are shown for a person
    to read."""
    ref_scores, _ = predict_featureset(TorchReference(model, layout), valid)
    scores, ran = predict_featureset(predictor, valid)
    ref, got = msa_metrics(ref_scores, valid.labels), scored_metrics(valid, scores, ran)
    undefined = ref["acc2_non0"] is None  # both sides score the same labels: None for both, or for neither
    drop = None if undefined else 100.0 * (ref["acc2_non0"] - got["acc2_non0"])
    if undefined and max_drop is not None:
        raise ParityError(f"accuracy check impossible: {NO_NON_ZERO} on the validation split of "
                          f"{plural(len(valid), 'sample')}; expected --data whose validation split has non-zero "
                          "labels, or an fp32 bundle (not judged)")
    ok = max_drop is None or (drop is not None and drop <= max_drop)  # undefined and judged: refused above
    result = {"split": "valid", "n": len(valid), "torch": ref, "bundle": got,
              "acc2_non0_drop_points": None if drop is None else round(drop, 3), "max_drop_points": max_drop,
              "agreement": score_agreement(scores, ref_scores), "ok": ok}
    if not ok:
        step = 100.0 / max(int(np.count_nonzero(valid.labels)), 1)  # one utterance's polarity, in points
        raise ParityError(f"accuracy check failed: Acc-2 (non-0) {ref['acc2_non0']:.4f} -> {got['acc2_non0']:.4f} "
                          f"on the validation split, a drop of {drop:.2f} > {max_drop} points (one utterance is "
                          f"{step:.2f} points of this split); keep a float bundle, or accept the drop with a larger "
                          "`edge-msa export --max-drop`")
    return result
