"""Deterministic splits by group (video id), so no speaker/video leaks between train, valid and test.

Shared by the dataset readers (edge_msa.data) and featurize (edge_msa.features), so it lives below both."""
from __future__ import annotations

import numpy as np

from .errors import InputError, plural

SPLITS = ("train", "valid", "test")  # every dataset's three splits, by these names (eval / bench --split too)


def carve_by_group(index: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split `index` into (kept, carved): whole groups move to `carved` until it holds >= `fraction` of rows.

    Groups are taken in a seeded random order (np.random.default_rng(seed)); the result is sorted and
    identical for the same (index, groups, fraction, seed).
    """
    if not 0.0 < fraction < 1.0:
        raise InputError(f"split fraction must be in (0, 1); got {fraction}")
    names = np.unique(groups[index])
    if len(names) < 2:
        raise InputError(f"cannot carve a {fraction:.0%} split from {plural(len(names), 'video')}; expected at least 2")
    order = np.random.default_rng(seed).permutation(names)
    counts = {g: int(c) for g, c in zip(*np.unique(groups[index], return_counts=True))}
    chosen, total, target = [], 0, fraction * len(index)
    for g in order[:-1]:  # always leave at least one group behind
        if total >= target:
            break
        chosen.append(g)
        total += counts[g]
    carved_mask = np.isin(groups[index], chosen)
    return np.sort(index[~carved_mask]), np.sort(index[carved_mask])


def video_id_of(segment_id: str) -> str:
    """'03bSnISJMiM_1' / '03bSnISJMiM[1]' -> '03bSnISJMiM' (public MOSI/MOSEI segment id conventions)."""
    s = str(segment_id)
    if "[" in s:
        return s.split("[", 1)[0]
    return s.rsplit("_", 1)[0] if "_" in s else s


def split_three_by_group(groups: np.ndarray, seed: int, valid: float = 0.15,
                         test: float = 0.15) -> dict[str, np.ndarray]:
    """train / valid / test row indices of all rows, whole groups per split (seeded)."""
    rest, test_idx = carve_by_group(np.arange(len(groups)), groups, test, seed)
    train_idx, valid_idx = carve_by_group(rest, groups, valid / (1.0 - test), seed + 1)
    return {"train": train_idx, "valid": valid_idx, "test": test_idx}


def folds_by_group(index: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """`index` cut into `folds` parts of whole groups, each about 1/folds of the rows (seeded carves, sorted)."""
    if folds < 2:
        raise InputError(f"cannot make {plural(folds, 'cross-validation fold')}; expected at least 2")
    videos = len(np.unique(groups[index]))
    parts, rest = [], index
    for k in range(folds - 1):
        if len(np.unique(groups[rest])) < 2:  # fewer videos than folds, or large videos used them up early
            raise InputError(f"cannot cut {plural(videos, 'video')} into {folds} cross-validation folds of whole "
                             f"videos (they ran out after {k}): K = {folds} is too large for the number of videos; "
                             f"expected fewer folds{f' (at most {videos})' if folds > videos else ''}")
        rest, carved = carve_by_group(rest, groups, 1.0 / (folds - k), seed + k)
        parts.append(carved)
    return [*parts, rest]
