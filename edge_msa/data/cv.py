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
from .base import DatasetSplits


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
    """Fold `fold` of `folds` over train + valid: held-out part -> "test", the rest -> train + a carved valid."""
    pool = concat_sets([splits.train, splits.valid])
    groups = pool.videos()
    parts = folds_by_group(np.arange(len(pool)), groups, folds, seed)
    rest = np.sort(np.concatenate([p for k, p in enumerate(parts) if k != fold]))
    valid_share = len(splits.valid) / len(pool)
    train_idx, valid_idx = carve_by_group(rest, groups, valid_share, seed + folds)
    index = {"train": train_idx, "valid": valid_idx, "test": parts[fold]}  # carve_by_group: never an empty part
    sets = {k: feature_set(pool.features, pool.lengths, pool.labels, pool.ids, pool.texts, i, pool.groups)
            for k, i in index.items()}
    info = {**splits.info, "cv": {"fold": fold, "folds": folds}, "sizes": {k: len(v) for k, v in sets.items()}}
    return DatasetSplits(splits.spec, sets["train"], sets["valid"], sets["test"], name=splits.name, info=info)
