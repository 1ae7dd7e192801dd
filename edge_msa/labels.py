"""The sentiment label scale every dataset is held to: CMU-MOSI/MOSEI scores in [-3, 3].

It sits below both the dataset readers (edge_msa.data), which refuse other scales when they load, and featurize
(edge_msa.features), which writes labels the readers load later and must refuse them before it reads any clip,
so neither imports the other's package. Imports nothing from edge_msa but its errors.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InputError

SCORE_LIMIT = 3.0  # |label| the teachers' scores are bound to (score_clip) and metrics clip to


def polarity(score: float) -> str:
    """'positive' / 'negative' / 'neutral' by the score's sign: the words a Prediction carries beside the number, and
    (capitalised, as MMSA writes them) the annotation column of the feedback export."""
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def check_label_range(labels: Sequence[float] | np.ndarray, ids: Sequence[str] | np.ndarray, where: str,
                      fix: str = "") -> None:
    """CMU-MOSI/MOSEI sentiment is scored in [-3, 3] and the teachers bound their scores to that range (score_clip),
    so labels on another scale (e.g. x40) trained without a word to a model that cannot reach them (MAE 24).
    `fix`: how the caller's user can rescale them, appended to the message."""
    scores = np.asarray(labels, dtype=np.float64)
    bad = np.flatnonzero(np.abs(scores) > SCORE_LIMIT)  # NaN compares False: the readers drop unlabelled rows
    if len(bad):
        raise InputError(f"{where}: {len(bad)} of {len(scores)} labels lie outside [-3, 3] (first: {scores[bad[0]]:g} "
                         f"of '{ids[bad[0]]}'); expected CMU-MOSI/MOSEI sentiment scores in [-3, 3], the range the "
                         f"models' scores are bound to{f'; {fix}' if fix else ''}")
