"""In-memory dataset containers shared by every reader, the trainer and the evaluators (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence, Union

import numpy as np

from ..errors import InputError
from ..metrics import SPLIT_RULE, short_splits
from ..spec import MODALITIES, FeatureSpec, check_compatible, check_finite
from ..splits import SPLITS

# The axes of a dataset's (N, L, d) features, by which a NaN or inf is placed (spec.check_finite); labels are (N,).
SAMPLE_AXES = ("sample", "step", "feature")
FINITE_LABELS = "finite sentiment scores in [-3, 3]"  # what a label that is NaN or inf should have been

# ids, transcripts and videos as the readers hold them: lists (CSV, pickles) or numpy string arrays (.npz files)
Column = Union[Sequence[str], np.ndarray]


def missing_modality(n: int, dim: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """`n` samples without a modality, as a device sends them: one zero step (n, 1, dim) and length 0."""
    return np.zeros((n, 1, dim), np.float32), np.zeros(n, np.int64)


@dataclass
class FeatureSet:
    """One split: padded per-modality arrays, true lengths (0 = modality missing), labels, ids.

    features[m]: float32 (N, L_m, d_m), zero-padded after lengths[m][i] valid steps.
    """

    features: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    labels: np.ndarray
    ids: np.ndarray
    texts: np.ndarray | None = None  # raw transcripts where the format has them
    groups: np.ndarray | None = None  # video id per row where the format names it (label.csv's video_id column)

    def __post_init__(self) -> None:
        n = len(self.labels)
        for m in MODALITIES:
            x, ln = self.features[m], self.lengths[m]
            if x.ndim != 3 or x.shape[0] != n or ln.shape != (n,):
                raise InputError(f"{m}: features {x.shape} / lengths {ln.shape} do not match {n} labels; "
                                 "expected (N, L, d) and (N,)")
            check_finite(f"{m} features", x, SAMPLE_AXES, "finite numbers (clean or drop those rows before training)")
        check_finite("labels", self.labels, SAMPLE_AXES[:1], FINITE_LABELS)

    def __len__(self) -> int:
        return len(self.labels)

    def videos(self) -> np.ndarray:
        """The video of each row, the unit a cross-validation fold is cut by: the format's own column where it has
        one, since an id's prefix is not always the video (MOSEI's clip ids hold '_': "vid_82_7645"), else the
        prefix of the MOSI segment id (splits.video_id_of: MOSI-U's ids, whose folds must not move)."""
        from ..splits import video_id_of

        return self.groups if self.groups is not None else np.array([video_id_of(i) for i in self.ids])

    def without(self, absent: tuple[str, ...], spec: FeatureSpec) -> "FeatureSet":
        """The same samples with the `absent` modalities missing (length 0) in the model's shapes (`spec`)."""
        features, lengths = dict(self.features), dict(self.lengths)
        for m in absent:
            features[m], lengths[m] = missing_modality(len(self), spec.dim(m))  # (N, 1, d_model), (N,)
        return replace(self, features=features, lengths=lengths)

    def check_spec(self, spec: FeatureSpec) -> None:
        """Raise InputError when these arrays do not have the widths `spec` describes (a reader's own spec)."""
        for m in MODALITIES:
            if self.features[m].shape[-1] != spec.dim(m):
                raise InputError(f"{m} feature dim is {self.features[m].shape[-1]} in the data but the model "
                                 f"expects {spec.dim(m)} (front end '{spec.front_end(m)}')")


def require_split_rows(labels: Mapping[str, np.ndarray], where: str, split_by: str | None) -> None:
    """InputError naming the first split in `labels` (name -> its labels) that breaks metrics.SPLIT_RULE: the one
    message of `DatasetSplits.require_rows`, also given for a cross-validation fold before any fold is built."""
    short = short_splits(labels, where)
    if short:
        how = f" (split by: {split_by})" if split_by else ""
        raise InputError(f"{short[0]}; expected {SPLIT_RULE}{how}")


@dataclass
class DatasetSplits:
    """train / valid / test FeatureSets with the FeatureSpec that describes them."""

    spec: FeatureSpec
    train: FeatureSet
    valid: FeatureSet
    test: FeatureSet
    name: str = "dataset"
    info: dict = field(default_factory=dict)

    def for_model(self, spec: FeatureSpec) -> "DatasetSplits":
        """These splits as a model built for `spec` sees them: `check_compatible`, then every modality the data
        or the model lacks becomes missing (zeros, length 0, the model's widths); info["missing"] names them."""
        absent = check_compatible(spec, self.spec, f"the data ({self.name})")
        sets = {k: getattr(self, k).without(absent, spec) for k in ("train", "valid", "test")}
        return DatasetSplits(spec, **sets, name=self.name, info={**self.info, "missing": list(absent)})

    def require_rows(self) -> None:
        """InputError naming the first split that training cannot use: it fits on train, selects on valid and scores
        test, and the metrics need MIN_SCORES rows, not all labelled 0 (Acc-2 non-0 is undefined then). An empty
        split (a label.csv without valid rows) failed only inside prediction, as numpy's "need at least one array to
        concatenate", and a one-row or all-0 test split (a small `feedback export`) only after all of training."""
        require_split_rows({name: self.split(name).labels for name in ("train", "valid", "test")},
                           self.info.get("path") or self.name, self.info.get("split"))

    def split(self, name: str) -> FeatureSet:
        """The split `name`, refused when it was read without its text (load_dataset's `featurize`): its rows would
        score with text missing, not fail."""
        if name not in ("train", "valid", "test"):
            raise InputError(f"unknown split '{name}'; expected train, valid or test")
        featurized = self.info.get("featurized", SPLITS)
        if name not in featurized:
            raise InputError(f"the {name} split of {self.info.get('path') or self.name} was read without its text "
                             f"features (featurize={list(featurized)}); expected load_dataset(featurize=) to name it")
        return getattr(self, name)
