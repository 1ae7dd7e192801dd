"""MSA regression metrics exactly as MMSA's `eval_mosei_senti` computes them (numpy only).

Acc-2 "has-0": negative (<0) vs non-negative (>=0) over all samples; "non-0": negative vs positive over
samples whose label != 0 (None when every label is 0: undefined, not zero). F1 is weighted F1 for the same
two variants. Acc-7/Acc-5 round the clipped score (numpy's round-half-to-even, as MMSA does) and compare
classes.

`corr` is NaN when the labels are constant or the predictions spread less than COLLAPSE_SPREAD (MMSA's
np.corrcoef gives NaN, with a RuntimeWarning, only when they are exactly constant, and a number for a spread of
1e-7), and `collapsed` flags such predictions: a collapsed model must not pass for an uncorrelated one. MMSA
rounds each metric to 4 decimals; these are unrounded (float64), and Acc-2/F1 non-0 are None, not an error,
when every label is 0.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .errors import InputError, plural

METRIC_KEYS = ("acc2_has0", "acc2_non0", "f1_has0", "f1_non0", "acc5", "acc7", "mae", "corr")
COLLAPSE_SPREAD = 1e-6  # predictions whose max - min is below this are one constant: the model has collapsed
MIN_SCORES = 2  # the fewest scores the metrics are defined on (a correlation needs two)

NO_NON_ZERO = "every label is 0, so Acc-2 (non-0) is undefined"  # why acc2_non0 is None, for messages
SPLIT_RULE = f"at least {MIN_SCORES} in each of train, valid and test, not all labelled 0"  # what training needs


def split_shortfall(labels: np.ndarray) -> str | None:
    """'N labelled rows' (', all 0') when a split's labels are too few for training to select and score on (see
    SPLIT_RULE), else None (short_splits)."""
    labels = np.asarray(labels)
    if len(labels) >= MIN_SCORES and labels.any():
        return None
    return f"{plural(len(labels), 'labelled row')}{', all 0' * (len(labels) > 1)}"


def short_splits(splits: Mapping[str, np.ndarray], data: str) -> list[str]:
    """'split NAME of DATA holds N labelled rows' for each split of `data` ({name: labels}) that breaks SPLIT_RULE, in
    order: the one finding behind the warning (untrainable_splits) and the error (data.base.require_split_rows)."""
    return [f"split '{name}' of {data} holds {what}" for name, labels in splits.items()
            if (what := split_shortfall(labels))]


def untrainable_splits(splits: Mapping[str, np.ndarray], data: str, fix: str) -> list[str]:
    """One warning line per split of `data` ({name: labels}) that training will refuse, ending in `fix`: `featurize`
    and `feedback export` say so when they write the file, not when `edge-msa train` refuses it after the work."""
    return [f"{short}; edge-msa train and compress expect {SPLIT_RULE}: {fix}" for short in short_splits(splits, data)]


def weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """sklearn's f1_score(truth, pred, average='weighted') for boolean labels."""
    total, score = len(truth), 0.0
    for cls in (False, True):
        support = int((truth == cls).sum())
        if support == 0:
            continue
        tp = int(((pred == cls) & (truth == cls)).sum())
        fp = int(((pred == cls) & (truth != cls)).sum())
        fn = support - tp
        f1 = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
        score += f1 * support / total
    return float(score)


def _multiclass_acc(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sum(np.round(pred) == np.round(truth)) / float(len(truth)))


def polarity_non0(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Acc-2 non-0 per sample: whether the predicted polarity (> 0) is the label's, and whether the label is
    non-zero (the samples it counts). Acc-2 non-0 is the mean of the first over the second; tools that pool or
    resample it per sample (`compress.selection_gap`) use these parts, so the definition stays here."""
    return (pred > 0) == (truth > 0), truth != 0


def msa_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float | bool | None]:
    """All metric keys of `teacher.metrics.json` for predicted and true sentiment scores, plus `collapsed`
    (True when the predictions are constant; `corr` is then NaN)."""
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1)
    if pred.shape != truth.shape or len(pred) < MIN_SCORES:
        raise InputError(f"metrics need two equal-length arrays of >= {MIN_SCORES} scores; got {pred.shape} and "
                         f"{truth.shape}")
    if not (np.isfinite(pred).all() and np.isfinite(truth).all()):
        raise InputError("metrics got NaN/Inf scores; expected finite predictions and labels")
    correct, non_zero = polarity_non0(pred, truth)
    has_non_zero = bool(non_zero.any())
    collapsed = bool(np.ptp(pred) < COLLAPSE_SPREAD)
    corr = float(np.corrcoef(pred, truth)[0, 1]) if not collapsed and truth.std() > 0 else float("nan")
    return {
        "acc2_has0": float(np.mean((pred >= 0) == (truth >= 0))),
        "acc2_non0": float(np.mean(correct[non_zero])) if has_non_zero else None,
        "f1_has0": weighted_f1(truth >= 0, pred >= 0),
        "f1_non0": weighted_f1(truth[non_zero] > 0, pred[non_zero] > 0) if has_non_zero else None,
        "acc5": _multiclass_acc(np.clip(pred, -2.0, 2.0), np.clip(truth, -2.0, 2.0)),
        "acc7": _multiclass_acc(np.clip(pred, -3.0, 3.0), np.clip(truth, -3.0, 3.0)),
        "mae": float(np.mean(np.abs(pred - truth))),
        "corr": corr,
        "collapsed": collapsed,
    }


def mean_std(runs: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and (population) std of every METRIC_KEYS entry over runs, e.g. one metrics dict per seed."""
    return {k: {"mean": float(np.mean([r[k] for r in runs])), "std": float(np.std([r[k] for r in runs]))}
            for k in METRIC_KEYS}
