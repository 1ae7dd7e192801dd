"""Format "multibench": MultiBench / MulT `mosi_data.pkl`, `mosei_senti_data.pkl` (word-aligned, 50 steps).

Reads pickle (restricted: numpy arrays and builtin containers only, see pickle_safe). The file is a dict
{train, valid, test}, each a dict with `vision` (N, L, 35|713|47), `audio` (N, L, 74), `text` (N, L, 300)
GloVe, `labels` (N, 1, 1) and `id` (N, ...). There is no raw text, so text is the file's GloVe vectors
(front end "external:glove-300"), not MiniLM: models trained on it need GloVe at inference too.
The three modalities share one word-aligned time axis, padded with zero steps (usually in front):
a step is valid when any modality is non-zero there, and valid steps are moved to the front so the
arrays follow the project's "zero-padded after lengths" layout. Non-finite values (COVAREP -inf)
become 0, as MultiBench does; counted in `info["nonfinite_replaced"]`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..labels import check_label_range
from ..spec import FeatureSpec
from .assemble import TextFrontEnd, build_splits, labels_1d, replace_nonfinite
from .base import DatasetSplits
from .mmsa import SPLITS, split_dicts
from .pickle_safe import load_pickle

KEYS = ("vision", "audio", "text", "labels", "id")
MODALITY_KEYS = {"text": "text", "audio": "audio", "video": "vision"}


def sample_ids(raw: object) -> list[str]:
    """(N,) or (N, k) ids (str or bytes) -> 'video_clip' strings."""
    arr = np.asarray(raw)
    def text(v: object) -> str:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    if arr.ndim == 1:
        return [text(v) for v in arr]
    return ["_".join(text(v) for v in row) for row in arr.reshape(len(arr), -1)]


def pack_front(x: dict[str, np.ndarray], valid: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Move the valid steps of every modality to the front (order kept); returns arrays and lengths (N,)."""
    order = np.argsort(~valid, axis=1, kind="stable")  # (N, L): valid steps first
    lengths = valid.sum(1).astype(np.int64)
    keep = np.arange(valid.shape[1])[None, :] < lengths[:, None]  # (N, L)
    packed = {m: np.take_along_axis(a, order[:, :, None], axis=1) * keep[:, :, None] for m, a in x.items()}
    return packed, lengths


def read(path: str | os.PathLike, seed: int = 0, progress: bool = True,
         text_encoder: TextFrontEnd | None = None, featurize: Sequence[str] = SPLITS) -> DatasetSplits:
    """`text_encoder` and `featurize` as every reader takes them: unused, the file's text is GloVe vectors already."""
    path = Path(path)
    parts = split_dicts(load_pickle(path), path, KEYS, "a MultiBench pickle (mosi_data / mosei_senti_data)")
    features, bad = {}, {}
    for m, key in MODALITY_KEYS.items():
        arrays = [np.asarray(parts[s][key], dtype=np.float32) for s in SPLITS]
        if any(a.ndim != 3 for a in arrays) or len({a.shape[1:] for a in arrays}) != 1:
            raise InputError(f"{path}: '{key}' shapes {[a.shape for a in arrays]}; expected (N, L, d), same L and d")
        features[m], bad[m] = replace_nonfinite(np.concatenate(arrays))  # (N, L, d)
    if len({a.shape[:2] for a in features.values()}) != 1:
        raise InputError(f"{path}: text/audio/vision shapes {[a.shape for a in features.values()]}; "
                         "expected one word-aligned (N, L) for all three")
    valid = np.any([np.abs(a).sum(-1) > 0 for a in features.values()], axis=0)  # (N, L)
    features, lengths = pack_front(features, valid)
    labels = np.concatenate([labels_1d(parts[s]["labels"], f"{path} [{s}]") for s in SPLITS])
    ids = [i for s in SPLITS for i in sample_ids(parts[s]["id"])]
    sizes = [len(parts[s]["labels"]) for s in SPLITS]
    if len(ids) != len(labels) or len(labels) != len(features["text"]):
        raise InputError(f"{path}: {len(ids)} ids, {len(labels)} labels, {len(features['text'])} samples; "
                         "expected equal counts")
    check_label_range(labels, ids, str(path))
    bounds = np.cumsum([0] + sizes)
    index = {s: np.arange(bounds[i], bounds[i + 1]) for i, s in enumerate(SPLITS)}
    d = {m: features[m].shape[-1] for m in features}
    steps = features["text"].shape[1]
    spec = FeatureSpec(dims=(d["text"], d["audio"], d["video"]), max_lens=(steps, steps, steps),
                       front_ends=(f"external:glove-{d['text']}", f"external:covarep-{d['audio']}",
                                   f"external:facet-{d['video']}"))
    info = {"format": "multibench", "path": str(path), "split": "file's train/valid/test",
            "nonfinite_replaced": bad, "text": "GloVe vectors from the file (no raw text in this format)"}
    return build_splits("multibench", spec, features, {m: lengths for m in features}, labels, ids, None, index, info)
