"""Skip threshold calibration reads no labels (issue 10, item 5)."""
from __future__ import annotations

import numpy as np

from edge_msa.compress.skip import SkipCache, calibrate


def _cache(labels: np.ndarray, seed: int = 0) -> SkipCache:
    rng = np.random.default_rng(seed)
    n = len(labels)
    full = rng.normal(size=n)
    scores = np.stack([full, *(full + rng.normal(0, s, n) for s in (0.6, 0.3, 0.8))], 1)  # (N, 4) subsets
    present = np.ones((n, 2), bool)
    return SkipCache(scores, rng.uniform(size=(n, 2)), present, labels.astype(np.float32),
                     np.full((n, 2), 100.0), np.full(n, 1.0))


def test_thresholds_and_flip_rate_do_not_depend_on_the_labels():
    rng = np.random.default_rng(1)
    labels = rng.uniform(-3, 3, 200)
    other = np.where(rng.uniform(size=200) < 0.4, 0.0, -labels)  # other values, many exactly 0
    for mode, value in (("budget", 0.5), ("max_drop", 0.02)):
        a, b = calibrate(_cache(labels), mode, value), calibrate(_cache(other), mode, value)
        assert a["thresholds"] == b["thresholds"] and a["flip_rate"] == b["flip_rate"]
        assert a["saved_fraction"] == b["saved_fraction"]
