"""Format "mmsa": the MMSA dataset pickles `aligned_50.pkl` / `unaligned_50.pkl` (MOSI, MOSEI, SIMS).

Reads pickle (restricted: numpy arrays and builtin containers only, see pickle_safe). The file is a
dict {train, valid, test}, each a dict with `raw_text` (N,), `audio` (N, La, da), `vision` (N, Lv, dv),
`regression_labels` (N,), `id` (N,) and optionally `audio_lengths` / `vision_lengths` (N,) (plus BERT
`text`/`text_bert` and classification labels, unused here). Text is MiniLM of `raw_text` so every dataset
shares one text front end. Without a lengths key, a sequence's length is its last non-zero step + 1.
Non-finite audio/video values (COVAREP -inf) become 0, as MMSA does; counted in `info["nonfinite_replaced"]`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..labels import check_label_range
from ..spec import FeatureSpec
from .assemble import (TextFrontEnd, build_splits, encode_texts, featured_rows, labels_1d, replace_nonfinite,
                       zero_padding)
from .base import DatasetSplits
from .pickle_safe import load_pickle

SPLITS = ("train", "valid", "test")
KEYS = ("raw_text", "audio", "vision", "regression_labels", "id")


def split_dicts(data: object, path: Path, keys: tuple[str, ...], what: str) -> dict[str, dict]:
    """Check `data` is {train, valid, test: {key: array}} with `keys` present (shared with MultiBench)."""
    if not isinstance(data, dict) or not set(SPLITS) <= set(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise InputError(f"{path} is not {what}: expected a dict with keys train/valid/test; got {found}")
    for name in SPLITS:
        part = data[name]
        missing = [k for k in keys if not isinstance(part, dict) or k not in part]
        if missing:
            raise InputError(f"{path} is not {what}: split '{name}' lacks keys {missing}; "
                             f"found {sorted(part) if isinstance(part, dict) else type(part).__name__}")
    return {name: data[name] for name in SPLITS}


def sequence_lengths(x: np.ndarray, given: object) -> np.ndarray:
    """Given lengths (checked against L), else last non-zero step + 1 per sample."""
    if given is not None:
        lengths = np.asarray(given, dtype=np.int64).reshape(-1)
        if len(lengths) != len(x) or (lengths < 0).any() or (lengths > x.shape[1]).any():
            raise InputError(f"lengths {lengths.shape} (max {lengths.max(initial=0)}) do not fit features {x.shape}")
        return lengths
    nonzero = np.abs(np.nan_to_num(x)).sum(-1) > 0  # (N, L)
    return np.where(nonzero.any(1), x.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0).astype(np.int64)


def concat_modality(parts: dict[str, dict], key: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One modality of all splits as (N, L_max, d) float32 zero-padded after its lengths, and lengths (N,)."""
    arrays = [np.asarray(parts[s][key], dtype=np.float32) for s in SPLITS]
    if any(a.ndim != 3 for a in arrays) or len({a.shape[-1] for a in arrays}) != 1:
        raise InputError(f"{path}: '{key}' shapes {[a.shape for a in arrays]}; expected (N, L, d) with one d")
    width = max(a.shape[1] for a in arrays)
    lengths = np.concatenate([sequence_lengths(a, parts[s].get(f"{key}_lengths")) for s, a in zip(SPLITS, arrays)])
    x = np.concatenate([np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0))) for a in arrays])  # (N, L_max, d)
    return zero_padding(x, lengths), lengths


def read(path: str | os.PathLike, seed: int = 0, progress: bool = True,
         text_encoder: TextFrontEnd | None = None, featurize: Sequence[str] = SPLITS) -> DatasetSplits:
    path = Path(path)
    parts = split_dicts(load_pickle(path), path, KEYS, "an MMSA dataset pickle (aligned_50 / unaligned_50)")
    sizes = [len(parts[s]["regression_labels"]) for s in SPLITS]
    ids = [str(i) for s in SPLITS for i in np.asarray(parts[s]["id"]).reshape(-1)]
    texts = [str(t) for s in SPLITS for t in np.asarray(parts[s]["raw_text"]).reshape(-1)]
    labels = np.concatenate([labels_1d(parts[s]["regression_labels"], f"{path} [{s}]") for s in SPLITS])
    if not len(ids) == len(texts) == len(labels):
        raise InputError(f"{path}: {len(ids)} ids, {len(texts)} raw_text and {len(labels)} labels; "
                         "expected equal counts")
    check_label_range(labels, ids, str(path))
    audio, audio_len = concat_modality(parts, "audio", path)
    video, video_len = concat_modality(parts, "vision", path)
    audio, bad_a = replace_nonfinite(audio)
    video, bad_v = replace_nonfinite(video)
    bounds = np.cumsum([0] + sizes)
    index = {s: np.arange(bounds[i], bounds[i + 1]) for i, s in enumerate(SPLITS)}
    text, text_len, encoder = encode_texts(texts, ids, text_encoder, progress, featured_rows(index, featurize))
    spec = FeatureSpec(dims=(encoder.dim, audio.shape[-1], video.shape[-1]),
                       max_lens=(encoder.max_len, audio.shape[1], video.shape[1]),
                       front_ends=(encoder.name, f"external:mmsa-audio-{audio.shape[-1]}",
                                   f"external:mmsa-vision-{video.shape[-1]}"))
    info = {"format": "mmsa", "path": str(path), "split": "file's train/valid/test",
            "nonfinite_replaced": {"audio": bad_a, "video": bad_v}}
    return build_splits("mmsa", spec, {"text": text, "audio": audio, "video": video},
                        {"text": text_len, "audio": audio_len, "video": video_len}, labels, ids, texts, index, info)
