"""Format "mmsa-label-csv": MMSA's `label.csv` as a text-only dataset (audio and video missing).

Columns `video_id,clip_id,text,label,...,mode` (MMSA) or `id,text,label,mode` (the CMU-SDK / mmcpanda
export); `mode` is train / valid (or dev) / test. Text is MiniLM of `text`; audio and video are
(N, 1, 1) zeros with length 0 and front end ABSENT: missing for every sample, and
`spec.check_compatible` lets any model score the text (audio/video run as missing). Rows without a label are dropped.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..features.text import MiniLMFrontEnd
from ..labels import check_label_range
from ..spec import ABSENT, FeatureSpec
from .assemble import build_splits, encode_texts
from .base import missing_modality
from .base import DatasetSplits

MODES = {"train": "train", "valid": "valid", "dev": "valid", "val": "valid", "test": "test"}


def read(path: str | os.PathLike, seed: int = 0, progress: bool = True,
         text_encoder: MiniLMFrontEnd | None = None) -> DatasetSplits:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            reader = csv.DictReader(f)
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} is not a readable label CSV ({exc})") from None
    header = set(reader.fieldnames or ())  # a row's own keys add None for extra values
    has_id = "id" in header or {"video_id", "clip_id"} <= header
    if not rows or not has_id or not {"text", "label", "mode"} <= header:
        raise InputError(f"{path} is not an MMSA label CSV: columns {sorted(header)}; expected "
                         "video_id,clip_id,text,label,mode or id,text,label,mode")
    ids, videos, texts, labels, modes, dropped = [], [], [], [], [], 0
    for line, row in enumerate(rows, start=2):
        if None in row.values():  # csv.DictReader fills a short row's missing columns with None
            raise InputError(f"{path} line {line}: {sum(v is not None for v in row.values())} fields; expected "
                             f"{len(reader.fieldnames)} ({','.join(reader.fieldnames)})")
        mode = MODES.get(row["mode"].strip().lower())
        if mode is None:
            raise InputError(f"{path} line {line}: mode '{row['mode']}'; expected train, valid (dev) or test")
        try:
            label = float(row["label"])
        except ValueError:
            raise InputError(f"{path} line {line}: label '{row['label']}' is not a number") from None
        if not np.isfinite(label):
            dropped += 1
            continue
        ids.append(row["id"] if "id" in row else f"{row['video_id']}_{row['clip_id']}")
        videos.append(row.get("video_id"))  # MOSEI's clip ids hold '_', so the id's prefix is not the video
        texts.append(row["text"])
        labels.append(label)
        modes.append(mode)
    check_label_range(labels, ids, str(path))
    text, text_len, encoder = encode_texts(texts, ids, text_encoder, progress)
    audio, audio_len = missing_modality(len(ids))
    video, video_len = missing_modality(len(ids))
    modes_arr = np.array(modes)
    parts = {s: np.flatnonzero(modes_arr == s) for s in ("train", "valid", "test")}
    spec = FeatureSpec(dims=(encoder.dim, 1, 1), max_lens=(encoder.max_len, 1, 1),
                       front_ends=(encoder.name, ABSENT, ABSENT))
    info = {"format": "mmsa-label-csv", "path": str(path), "split": "mode column",
            "dropped_missing_labels": dropped, "missing": ["audio", "video"]}
    return build_splits("mmsa-label-csv", spec, {"text": text, "audio": audio, "video": video},
                        {"text": text_len, "audio": audio_len, "video": video_len},
                        np.array(labels, np.float32), ids, texts, parts, info,
                        groups=None if "video_id" not in header else videos)
