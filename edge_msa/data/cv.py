"""K-fold cross-validation over train + valid, for choosing recipes on more than one small validation split.

MOSI-U's validation split holds 240 utterances: two compress recipes' criteria differ by noise alone there (the
README's ablation tables). `cross_validation_fold` re-splits the train + valid rows by whole video into `folds`
parts; part `fold` is held out and takes the place of "test" (the real test rows are dropped, never read), and
a validation split of the original share is carved from the rest. Every command that reads a checkpoint made on
such a fold rebuilds it from the lineage record ("cv": {"fold", "folds"}), so the held-out rows are scored once,
by the run's final model, and the pooled out-of-fold scores of K runs cover all train + valid utterances.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..splits import carve_by_group, folds_by_group
from .assemble import concat_sets, feature_set
from .base import DatasetSplits, require_split_rows


def parse_fold(text: str) -> tuple[int, int]:
    """'2/4' -> (2, 4): fold 2 (counted from 0) of 4; InputError for anything else."""
    try:
        fold, folds = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise InputError(f"--cv-fold '{text}'; expected FOLD/FOLDS such as 0/4 (fold counted from 0)") from None
    if folds < 2 or not 0 <= fold < folds:
        raise InputError(f"--cv-fold '{text}'; expected 0 <= FOLD < FOLDS and FOLDS >= 2, such as 0/4")
    return fold, folds


def cross_validation_fold(splits: DatasetSplits, fold: int, folds: int, seed: int) -> DatasetSplits:
    """Fold `fold` of `folds` over train + valid: held-out part -> "test", the rest -> train + a carved valid.

    Every fold's rows are checked (`require_split_rows`, the rule training applies) before this one is built: the K
    runs of one cross-validation then stop at their first, not at the run of a fold too small after the others
    trained; and the message names the fold, where require_rows pointed at the reader's split (a mode column)."""
    pool = concat_sets([splits.train, splits.valid])
    groups = pool.videos()
    parts = folds_by_group(np.arange(len(pool)), groups, folds, seed)
    valid_share = len(splits.valid) / len(pool)
    cuts = [_fold_rows(parts, k, groups, valid_share, seed + folds) for k in range(folds)]
    for k, cut in enumerate(cuts):
        require_split_rows({name: pool.labels[i] for name, i in cut.items()}, splits.info.get("path") or splits.name,
                           f"cross-validation fold {k}/{folds} of train + valid, by video; every fold must hold "
                           "them: fewer folds make larger parts")
    sets = {k: feature_set(pool.features, pool.lengths, pool.labels, pool.ids, pool.texts, i, pool.groups)
            for k, i in cuts[fold].items()}
    info = {**splits.info, "cv": {"fold": fold, "folds": folds}, "sizes": {k: len(v) for k, v in sets.items()}}
    return DatasetSplits(splits.spec, sets["train"], sets["valid"], sets["test"], name=splits.name, info=info)


def _fold_rows(parts: list[np.ndarray], fold: int, groups: np.ndarray, valid_share: float,
               seed: int) -> dict[str, np.ndarray]:
    """Row indices of fold `fold`: its part held out as "test", a validation share carved by video from the rest
    (a rest of one video cannot be carved: the error names the fold, which carve_by_group cannot)."""
    rest = np.sort(np.concatenate([p for k, p in enumerate(parts) if k != fold]))
    try:
        train_idx, valid_idx = carve_by_group(rest, groups, valid_share, seed)
    except InputError as exc:
        raise InputError(f"cross-validation fold {fold}/{len(parts)} of train + valid: {exc}; fewer folds leave more "
                         "videos beside each held-out part (or give more videos)") from None
    return {"train": train_idx, "valid": valid_idx, "test": parts[fold]}  # carve_by_group: never an empty part
