"""Shared steps of every reader: text through the one text front end, padding ragged sequences,
cleaning non-finite values, and building FeatureSets."""
from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from ..errors import InputError
from ..features.text import MiniLMFrontEnd, TextError, TokenIds, cached, encode_cached
from ..spec import MODALITIES, FeatureSpec
from .base import Column, DatasetSplits, FeatureSet

# What a reader's transcripts go through (load_dataset's `text_encoder`): MiniLM features, or the token ids of a
# model with its own text encoder. A bare WordPiece has no `encode`, `dim` or front-end `name`, which the readers use.
TextFrontEnd = Union[MiniLMFrontEnd, TokenIds]


def encode_texts(texts: Column, ids: Column, encoder: TextFrontEnd | None, progress: bool,
                 rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, TextFrontEnd]:
    """MiniLM features (N, L, 384) + lengths for every text (disk-cached); a text the tokenizer cannot use (empty,
    or no word it keeps) names its sample. `rows` (indices, `featured_rows`): embed only those, the others get no text
    (zeros, length 0): scoring one split of MOSEI's label.csv embedded all 22,788 transcripts for its 4,653 test rows
    (minutes on a CPU). Every text is still checked for words, and a cache holding every row is still used (its
    truncation warning counting `rows` alone)."""
    texts = [str(t) for t in texts]
    for text, sample in zip(texts, ids):
        if not text.strip():
            raise InputError(f"sample '{sample}' has an empty transcript; expected at least one word")
    encoder = encoder or MiniLMFrontEnd()
    if rows is not None and len(rows) == len(texts):
        rows = None
    whole = None if rows is None else cached(encoder, texts, rows=rows)
    if whole is not None:
        return (*whole, encoder)
    picked = np.arange(len(texts)) if rows is None else np.asarray(rows)
    try:
        feats, lengths = encode_cached(encoder, [texts[i] for i in picked], progress=progress)
    except TextError as exc:
        raise InputError(f"sample '{ids[int(picked[exc.index])]}': {exc.reason}") from None
    if rows is not None:
        feats, lengths = _scatter(feats, lengths, picked, len(texts))
    return feats, lengths, encoder


def featured_rows(parts: dict[str, np.ndarray], featurize: Sequence[str]) -> np.ndarray:
    """The rows (sorted indices) of the splits `featurize` names, for encode_texts(rows=)."""
    return np.sort(np.concatenate([parts[name] for name in featurize]))


def _scatter(feats: np.ndarray, lengths: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of `rows` placed among `n` rows; the others zero with length 0."""
    out, out_len = np.zeros((n, *feats.shape[1:]), np.float32), np.zeros(n, np.int64)
    out[rows], out_len[rows] = feats, lengths
    return out, out_len


def pad_sequences(seqs: Sequence[np.ndarray], dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """List of (L_i, d) arrays -> (N, max L_i, d) float32 zero-padded and lengths (N,) int64."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    d = dim if dim is not None else int(seqs[0].shape[-1])
    out = np.zeros((len(seqs), max(int(lengths.max(initial=0)), 1), d), dtype=np.float32)  # (N, L_max, d)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, :len(s)] = s
    return out, lengths


def zero_padding(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Zero every step at or after lengths[i] (some public files pad with non-zero values)."""
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]  # (N, L)
    return np.where(valid[:, :, None], x, 0.0).astype(np.float32)


def replace_nonfinite(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(x with NaN/±Inf replaced by 0, number of replaced values) — for COVAREP's -inf log energies."""
    bad = ~np.isfinite(x)
    n = int(bad.sum())
    if n:
        x = np.where(bad, 0.0, x)
    return x.astype(np.float32, copy=False), n


def feature_set(features: dict[str, np.ndarray], lengths: dict[str, np.ndarray], labels: np.ndarray,
                ids: Column, texts: Column | None, index: np.ndarray, groups: Column | None = None) -> FeatureSet:
    """The rows `index` of full-dataset arrays as a FeatureSet (`groups`: each row's video, see FeatureSet)."""
    return FeatureSet(
        features={m: np.ascontiguousarray(features[m][index], dtype=np.float32) for m in MODALITIES},
        lengths={m: np.asarray(lengths[m][index], dtype=np.int64) for m in MODALITIES},
        labels=np.asarray(labels, dtype=np.float32)[index],
        ids=np.asarray([str(i) for i in ids])[index],
        texts=None if texts is None else np.asarray([str(t) for t in texts])[index],
        groups=None if groups is None else np.asarray([str(g) for g in groups])[index],
    )


def concat_sets(sets: Sequence[FeatureSet]) -> FeatureSet:
    """Rows of several FeatureSets in one (each modality zero-padded to the longest sequence)."""
    features, lengths = {}, {}
    for m in MODALITIES:
        width = max(fs.features[m].shape[1] for fs in sets)
        features[m] = np.concatenate([np.pad(fs.features[m], ((0, 0), (0, width - fs.features[m].shape[1]), (0, 0)))
                                      for fs in sets])
        lengths[m] = np.concatenate([fs.lengths[m] for fs in sets])
    texts = None if any(fs.texts is None for fs in sets) else np.concatenate([fs.texts for fs in sets])
    groups = None if any(fs.groups is None for fs in sets) else np.concatenate([fs.groups for fs in sets])
    return FeatureSet(features, lengths, np.concatenate([fs.labels for fs in sets]),
                      np.concatenate([fs.ids for fs in sets]), texts, groups)


def build_splits(name: str, spec: FeatureSpec, features: dict[str, np.ndarray], lengths: dict[str, np.ndarray],
                 labels: np.ndarray, ids: Column, texts: Column | None, parts: dict[str, np.ndarray], info: dict,
                 groups: Column | None = None) -> DatasetSplits:
    """DatasetSplits from full-dataset arrays and train/valid/test row indices (sizes recorded in info; `groups`:
    each row's video where the format names it, see FeatureSet)."""
    sets = {k: feature_set(features, lengths, labels, ids, texts, parts[k], groups) for k in ("train", "valid", "test")}
    info = {**info, "sizes": {k: len(v) for k, v in sets.items()}}
    return DatasetSplits(spec, sets["train"], sets["valid"], sets["test"], name=name, info=info)


def labels_1d(raw: np.ndarray, where: str) -> np.ndarray:
    """(N,), (N, 1) or (N, 1, 1) sentiment scores -> (N,) float32."""
    y = np.asarray(raw, dtype=np.float32)
    if y.ndim == 0 or int(np.prod(y.shape[1:])) != 1:
        raise InputError(f"{where}: labels have shape {y.shape}; expected (N,), (N, 1) or (N, 1, 1)")
    return y.reshape(len(y))
