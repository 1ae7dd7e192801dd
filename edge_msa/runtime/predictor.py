"""Predictor: run a bundle on device (numpy + onnxruntime; torch is never imported here).

Parts layout: encode_text -> gate -> only the audio/video encoders the gate keeps -> fuse, with the
skip rule of `edge_msa.models.student.run_with_skipping`: modality m runs iff present and
keep[:, i] >= skip_thresholds[i]; a skipped or missing modality feeds zeros and present=0 to fuse.
Single layout: one graph, every present modality runs.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..spec import MODALITIES
from .backend import Backend, backend_class
from .manifest import SINGLE, Manifest, read_manifest

SKIPPABLE = ("audio", "video")  # gate keep columns, in skip_thresholds order
MEDIA_FRONT_ENDS = ("logmel-v1", "face-v1")


@dataclass
class Prediction:
    """One input's result. `ran` lists the modalities whose encoder ran; `skipped[m]` says why not."""

    score: float
    polarity: str
    ran: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def polarity(score: float) -> str:
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


class Predictor:
    """Runs the graphs of one bundle. Build it with `edge_msa.runtime.load(bundle_dir)`."""

    def __init__(self, manifest: Manifest, backends: Mapping[str, Backend], bundle: str | os.PathLike | None = None,
                 threads: int | None = None) -> None:
        self.manifest = manifest
        self.spec = manifest.feature_spec
        self.backends = dict(backends)
        self.bundle = Path(bundle) if bundle else None
        self.threads = threads
        self.thresholds = list(manifest.skip_thresholds or [0.0, 0.0])
        self._text_encoder = None
        self._front_ends: dict[str, Any] = {}

    # --- public API -----------------------------------------------------------------------------
    def predict(self, text: Any = None, audio: Any = None, video: Any = None) -> Prediction:
        """One input: text is a str (run through the bundled text encoder) or an (L, d) array; audio/video
        are (L, d) arrays or media file paths (if the bundle's front end for them is a built-in one)."""
        return self.predict_batch([{"text": text, "audio": audio, "video": video}])[0]

    def predict_batch(self, inputs: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        """Many inputs in one batched pass per graph (throughput); each item is {modality: value}."""
        if not inputs:
            raise InputError("predict_batch got no inputs; expected a list of {text, audio, video} dicts")
        for item in inputs:
            unknown = set(item) - set(MODALITIES)
            if unknown:
                raise InputError(f"unknown input keys {sorted(unknown)}; expected {', '.join(MODALITIES)}")
        ms: dict[str, float] = {}
        rows, skipped = self._prepare(inputs, ms)
        for i, (row, reasons) in enumerate(zip(rows, skipped)):
            if not row:
                why = "; ".join(f"{m}: {r}" for m, r in reasons.items()) or "nothing given"
                where = "" if len(rows) == 1 else f" #{i}"
                raise InputError(f"input{where} has no usable modality ({why}); expected text, audio or video")
        feats, lengths = _pad(rows, self.spec)
        scores, ran, keep, stage_ms = self._forward(feats, lengths)
        ms.update(stage_ms)
        ms["total"] = sum(ms.values())
        out = []
        for i in range(len(inputs)):
            reasons = dict(skipped[i])
            for j, m in enumerate(SKIPPABLE):
                if lengths[m][i] > 0 and not ran[i, j + 1]:
                    reasons[m] = f"gate: keep {keep[i, j]:.3f} < threshold {self.thresholds[j]:.3f}"
            for m in MODALITIES:
                if lengths[m][i] == 0 and m not in reasons:
                    reasons[m] = "missing"
            ran_names = [m for j, m in enumerate(MODALITIES) if ran[i, j]]
            out.append(Prediction(float(scores[i]), polarity(float(scores[i])), ran_names, reasons,
                                  {k: round(v, 3) for k, v in ms.items()}))
        return out

    def predict_features(self, features: Mapping[str, np.ndarray],
                         lengths: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batched scores for padded arrays features[m] (B, L, d) with lengths[m] (B,) (0 = missing; a
        modality absent from `features` is missing for every row). Returns (scores (B,), ran (B, 3) bool)."""
        feats, lens = self._check_features(features, lengths or {})
        scores, ran, _, _ = self._forward(feats, lens)
        return scores, ran

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- graph execution ------------------------------------------------------------------------
    def _forward(self, feats: dict[str, np.ndarray], lengths: dict[str, np.ndarray]):
        """(scores (B,), ran (B, 3) bool, keep (B, 2), ms per stage) for padded, checked arrays."""
        masks = {m: np.arange(feats[m].shape[1])[None, :] < lengths[m][:, None] for m in MODALITIES}  # (B, L)
        present = {m: lengths[m] > 0 for m in MODALITIES}  # (B,)
        ms: dict[str, float] = {}
        if self.manifest.layout == "single":
            feed = {}
            for m in MODALITIES:
                feed[m], feed[f"{m}_mask"] = feats[m], masks[m]
            score = self._call(SINGLE, feed, ms)["score"]
            ran = np.stack([present[m] for m in MODALITIES], axis=1)  # (B, 3)
            return score, ran, np.ones((len(score), 2), np.float32), ms
        h_text = self._call("encode_text", {"x": feats["text"], "mask": masks["text"]}, ms)["h"]  # (B, D)
        batch = len(h_text)
        keep = np.zeros((batch, len(SKIPPABLE)), np.float32)  # (B, 2); unused when nothing is present
        if any(present[m].any() for m in SKIPPABLE):
            keep = self._call("gate", {"h_text": h_text, "audio": feats["audio"], "audio_mask": masks["audio"],
                                       "video": feats["video"], "video_mask": masks["video"]}, ms)["keep"]
        hs, ran = [h_text], [present["text"]]
        for i, m in enumerate(SKIPPABLE):
            run = present[m] & (keep[:, i] >= self.thresholds[i])  # (B,)
            h = np.zeros_like(h_text)  # (B, D)
            if run.any():
                rows = np.flatnonzero(run)
                h[rows] = self._call(f"encode_{m}", {"x": feats[m][rows], "mask": masks[m][rows]}, ms)["h"]
            hs.append(h)
            ran.append(run)
        ran_arr = np.stack(ran, axis=1)  # (B, 3)
        score = self._call("fuse", {"h_text": hs[0], "h_audio": hs[1], "h_video": hs[2],
                                    "present": ran_arr.astype(np.float32)}, ms)["score"]  # (B,)
        return score, ran_arr, keep, ms

    def _call(self, part: str, feed: dict[str, np.ndarray], ms: dict[str, float]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        out = self.backends[part].run(feed)
        ms[part] = ms.get(part, 0.0) + (time.perf_counter() - start) * 1e3
        return out

    # --- inputs -----------------------------------------------------------------------------------
    def _check_features(self, features: Mapping[str, np.ndarray], lengths: Mapping[str, np.ndarray]):
        unknown = (set(features) | set(lengths)) - set(MODALITIES)
        if unknown:
            raise InputError(f"unknown modalities {sorted(unknown)}; expected {', '.join(MODALITIES)}")
        if not features:
            raise InputError("no features given; expected at least one of text, audio, video")
        batch = {np.asarray(x).shape[0] if np.ndim(x) == 3 else -1 for x in features.values()}
        if len(batch) != 1 or -1 in batch:
            raise InputError(f"features must all be (B, L, d) arrays with the same B; got shapes "
                             f"{ {m: np.shape(x) for m, x in features.items()} }")
        b = batch.pop()
        feats, lens = {}, {}
        for m in MODALITIES:
            if m not in features:
                feats[m] = np.zeros((b, 1, self.spec.dim(m)), np.float32)
                lens[m] = np.zeros(b, np.int64)
                continue
            x = np.asarray(features[m])
            self.spec.check(m, x)
            if x.shape[1] == 0:  # (B, 0, d): missing everywhere; graphs need L >= 1
                x = np.zeros((b, 1, x.shape[2]), np.float32)
            feats[m] = np.ascontiguousarray(x, dtype=np.float32)
            ln = np.asarray(lengths.get(m, np.full(b, x.shape[1])))
            if ln.shape != (b,) or not np.issubdtype(ln.dtype, np.integer) or (ln < 0).any() or (ln > x.shape[1]).any():
                raise InputError(f"{m} lengths must be {b} integers in [0, {x.shape[1]}]; got shape {ln.shape}")
            lens[m] = ln.astype(np.int64)
        return feats, lens

    def _prepare(self, inputs: Sequence[Mapping[str, Any]], ms: dict[str, float]):
        """Per row: {m: (L, d) float32 array} for present modalities, and {m: reason} for skipped ones."""
        rows: list[dict[str, np.ndarray]] = [{} for _ in inputs]
        skipped: list[dict[str, str]] = [{} for _ in inputs]
        texts = [(i, item["text"]) for i, item in enumerate(inputs) if isinstance(item.get("text"), str)]
        if texts:
            start = time.perf_counter()
            encoded, lens = self.text_encoder.encode([t for _, t in texts])
            ms["text_encoder"] = (time.perf_counter() - start) * 1e3
            for (i, _), x, n in zip(texts, encoded, lens):
                rows[i]["text"] = x[:n]
        for i, item in enumerate(inputs):
            for m in MODALITIES:
                value = item.get(m)
                if value is None or (m == "text" and isinstance(value, str)):
                    continue
                if isinstance(value, (str, os.PathLike)):
                    array = self._media(m, Path(value), ms)
                    if array is None:
                        skipped[i][m] = f"expects {self.spec.front_end(m)} features, got a media file"
                        continue
                else:
                    array = np.asarray(value)
                    if array.ndim == 3 and array.shape[0] == 1:
                        array = array[0]
                    if array.ndim != 2:
                        raise InputError(f"{m} features have shape {array.shape}; expected (L, {self.spec.dim(m)})")
                self.spec.check(m, array)
                if array.shape[0] == 0:
                    raise InputError(f"{m} features have no steps (shape {array.shape}); expected L >= 1")
                rows[i][m] = array.astype(np.float32)
        return rows, skipped

    def _media(self, modality: str, path: Path, ms: dict[str, float]) -> np.ndarray | None:
        """Features of a media file via the bundle's front end, or None (with a warning) when the model
        was trained on external features that edge-msa cannot compute."""
        name = self.spec.front_end(modality)
        if name.startswith("external"):
            warnings.warn(f"{modality}: skipped {path.name}; this model expects {name} features (an array of "
                          f"shape (L, {self.spec.dim(modality)})), not a media file", stacklevel=3)
            return None
        if not path.is_file():
            raise InputError(f"{modality} file '{path}' does not exist")
        if name not in self._front_ends:
            from ..features import front_end
            self._front_ends[name] = front_end(name)
        start = time.perf_counter()
        array = np.asarray(self._front_ends[name](str(path)), dtype=np.float32)
        ms[f"front_end_{modality}"] = ms.get(f"front_end_{modality}", 0.0) + (time.perf_counter() - start) * 1e3
        return array

    @property
    def text_encoder(self):
        """The bundled text encoder (text_encoder.onnx + tokenizer.json), built on first use."""
        if self._text_encoder is None:
            name = self.spec.front_end("text")
            files = self.manifest.text_encoder
            if not files or self.bundle is None:
                raise InputError(f"this bundle has no text encoder (its text front end is '{name}'); pass text as "
                                 f"an (L, {self.spec.dim('text')}) feature array")
            from ..features.text import TextEncoder
            self._text_encoder = TextEncoder(tokenizer_path=self.bundle / files["tokenizer"],
                                             onnx_path=self.bundle / files["onnx"],
                                             max_len=self.spec.max_len("text"), threads=self.threads)
        return self._text_encoder


def _pad(rows: list[dict[str, np.ndarray]], spec) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Zero-pad per-row (L, d) arrays into (B, L_max, d) plus lengths (B,) (0 where a row lacks m)."""
    feats, lengths = {}, {}
    for m in MODALITIES:
        lens = np.array([len(r[m]) if m in r else 0 for r in rows], dtype=np.int64)  # (B,)
        x = np.zeros((len(rows), max(int(lens.max()), 1), spec.dim(m)), np.float32)  # (B, L, d)
        for i, r in enumerate(rows):
            if m in r:
                x[i, :lens[i]] = r[m]
        feats[m], lengths[m] = x, lens
    return feats, lengths


def load(bundle_dir: str | os.PathLike, backend: str | None = None, providers: Sequence[str] | None = None,
         threads: int | None = None) -> Predictor:
    """Open a bundle: read its manifest and load every graph with `backend` (default: the one the bundle
    was exported for, "onnxruntime" for .onnx graphs, "tensorrt" for engines)."""
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle)
    name = backend or manifest.backend
    if name == "torch":
        raise InputError("the torch backend wraps a model in memory (export's parity check), not a bundle; "
                         "use backend='onnxruntime' or 'tensorrt'")
    if name == "onnxruntime" and manifest.backend == "tensorrt":
        raise InputError(f"bundle '{bundle}' holds TensorRT engines; use backend='tensorrt'")
    cls = backend_class(name)
    options = {"providers": providers, "threads": threads} if name == "onnxruntime" else {}
    backends = {}
    try:
        for part, filename in manifest.graphs.items():
            backends[part] = cls(bundle / filename, label=part, **options)
    except BaseException:
        for b in backends.values():
            b.close()
        raise
    return Predictor(manifest, backends, bundle, threads)
