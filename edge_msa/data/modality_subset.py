"""A modality subset such as text alone, simulated the way a device sees it: the left-out modalities are
missing (length 0, one zero step), so a model's missing-modality path and skip gate run for real.

Shared by teacher training (its text-only validation copy) and the benchmarks (accuracy and latency per subset).
"""
from __future__ import annotations

import numpy as np

from ..spec import MODALITIES
from .base import FeatureSet, missing_modality


def restrict_arrays(features: dict[str, np.ndarray], lengths: dict[str, np.ndarray], keep: tuple[str, ...]
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The same samples with every modality outside `keep` marked missing (length 0), each array trimmed
    to its longest valid sequence as a device would pad a batch (a missing modality keeps one zero step)."""
    feats, lens = {}, {}
    for m in MODALITIES:
        if m in keep:
            lens[m] = np.asarray(lengths[m], dtype=np.int64)  # (B,)
            feats[m] = np.ascontiguousarray(features[m][:, :max(int(lens[m].max(initial=0)), 1)])  # (B, L, d)
        else:
            feats[m], lens[m] = missing_modality(len(lengths[m]), features[m].shape[-1])  # (B, 1, d), (B,)
    return feats, lens


def restrict_set(fs: FeatureSet, keep: tuple[str, ...]) -> FeatureSet:
    """A whole split with the modalities outside `keep` missing (restrict_arrays), labels, ids and texts kept."""
    features, lengths = restrict_arrays(fs.features, fs.lengths, keep)
    return FeatureSet(features, lengths, fs.labels, fs.ids, fs.texts)
