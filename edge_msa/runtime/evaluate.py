"""Score a FeatureSet with a Predictor: the METRIC_KEYS plus how often each modality was skipped."""
from __future__ import annotations

from typing import Any, Mapping, Protocol

import numpy as np

from ..data.base import FeatureSet
from ..metrics import msa_metrics
from ..spec import MODALITIES
from .predictor import Predictor


class FeaturePredictor(Protocol):
    """What evaluation needs of a model: a Predictor, or export's torch reference (export/parity.py), which is
    scored through the very same batching so that the two are compared on identical inputs."""

    def predict_features(self, features: Mapping[str, np.ndarray],
                         lengths: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(scores (B,), ran (B, 3) bool) for padded features[m] (B, L, d) with lengths[m] (B,)."""


def predict_featureset(predictor: FeaturePredictor, fs: FeatureSet,
                       batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N,), ran (N, 3) bool) in batches, each trimmed to its longest valid sequence."""
    scores, ran = [], []
    for start in range(0, len(fs), batch_size):
        idx = np.arange(start, min(start + batch_size, len(fs)))
        lengths = {m: fs.lengths[m][idx] for m in MODALITIES}
        feats = {m: fs.features[m][idx, :max(int(lengths[m].max()), 1)] for m in MODALITIES}  # (b, L, d)
        s, r = predictor.predict_features(feats, lengths)
        scores.append(s)
        ran.append(r)
    return np.concatenate(scores), np.concatenate(ran)


def evaluate(predictor: FeaturePredictor, fs: FeatureSet, batch_size: int = 256) -> dict[str, Any]:
    """METRIC_KEYS + `skip_rate_<m>` (share of samples having m whose encoder did not run; "missing" when no
    sample has m, e.g. audio of a text-only dataset) + `n`. A bundle whose model scores NaN or inf is refused with
    the runtime's own BrokenModel line: the metrics refused such scores as if the data were wrong, naming no bundle."""
    scores, ran = predict_featureset(predictor, fs, batch_size)
    if isinstance(predictor, Predictor):  # export's torch reference and the bench's fakes have no bundle to blame
        predictor.check_finite(scores)
    return scored_metrics(fs, scores, ran)


def scored_metrics(fs: FeatureSet, scores: np.ndarray, ran: np.ndarray) -> dict[str, Any]:
    """`evaluate`'s result from scores (N,) and decisions (N, 3) already predicted on `fs` (export keeps the
    scores, to compare them with torch's)."""
    out: dict[str, Any] = msa_metrics(scores, fs.labels)
    for j, m in enumerate(MODALITIES):
        present = fs.lengths[m] > 0
        out[f"skip_rate_{m}"] = float((present & ~ran[:, j]).sum() / present.sum()) if present.any() else "missing"
    out["n"] = len(fs)
    return out
