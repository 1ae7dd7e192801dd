"""Format "mmsa-label-csv": MMSA's `label.csv` as a text-only dataset (audio and video missing).

Columns `video_id,clip_id,text,label,...,mode` (MMSA) or `id,text,label,mode` (the CMU-SDK / mmcpanda
export); `mode` is train / valid (or dev, val, validation) / test. Text is MiniLM of `text`; audio and video are
(N, 1, 1) zeros with length 0 and front end ABSENT: missing for every sample, and
`spec.check_compatible` lets any model score the text (audio/video run as missing). Rows without a label (a blank
cell or NaN) are dropped.
"""
from __future__ import annotations

import csv
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError, not_found, plural, warn
from ..labels import check_label_range
from ..spec import ABSENT, FeatureSpec
from ..splits import SPLITS
from .assemble import TextFrontEnd, build_splits, encode_texts, featured_rows
from .base import missing_modality
from .base import DatasetSplits

COLUMNS = "video_id,clip_id,text,label,mode or id,text,label,mode"  # the two headers read() accepts
MODES = {"train": "train", "valid": "valid", "dev": "valid", "val": "valid", "validation": "valid", "test": "test"}


def read(path: str | os.PathLike, seed: int = 0, progress: bool = True,
         text_encoder: TextFrontEnd | None = None, featurize: Sequence[str] = SPLITS) -> DatasetSplits:
    path = Path(path)
    rows, header = _rows(path)
    ids, videos, texts, labels, modes, dropped = [], [], [], [], [], 0
    for line, row in rows:
        if None in row.values():  # csv.DictReader fills a short row's missing columns with None
            raise InputError(f"{path} line {line}: {sum(v is not None for v in row.values())} fields; expected "
                             f"{len(header)} ({','.join(header)})")
        mode = MODES.get(row["mode"].strip().lower())
        if mode is None:
            raise InputError(f"{path} line {line}: mode '{row['mode']}'; expected one of {', '.join(MODES)}")
        label = _label(row["label"], path, line)
        if not np.isfinite(label):
            dropped += 1
            continue
        ids.append(row["id"] if "id" in row else f"{row['video_id']}_{row['clip_id']}")
        videos.append(row.get("video_id", ""))  # MOSEI's clip ids hold '_', so the id's prefix is not the video
        texts.append(row["text"])
        labels.append(label)
        modes.append(mode)
    check_label_range(labels, ids, str(path))
    _warn_repeated_ids(ids, modes, path)
    modes_arr = np.array(modes)
    parts = {s: np.flatnonzero(modes_arr == s) for s in SPLITS}
    text, text_len, encoder = encode_texts(texts, ids, text_encoder, progress, featured_rows(parts, featurize))
    audio, audio_len = missing_modality(len(ids))
    video, video_len = missing_modality(len(ids))
    spec = FeatureSpec(dims=(encoder.dim, 1, 1), max_lens=(encoder.max_len, 1, 1),
                       front_ends=(encoder.name, ABSENT, ABSENT))
    info = {"format": "mmsa-label-csv", "path": str(path), "split": "mode column",
            "dropped_missing_labels": dropped, "missing": ["audio", "video"]}
    return build_splits("mmsa-label-csv", spec, {"text": text, "audio": audio, "video": video},
                        {"text": text_len, "audio": audio_len, "video": video_len},
                        np.array(labels, np.float32), ids, texts, parts, info,
                        groups=None if "video_id" not in header else videos)


def _rows(path: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """(first line of the record, row) of every record, and the header; one line on what keeps the file from
    being a label CSV. Lines are counted by the csv module, so a quoted transcript over several lines does not
    shift the line numbers that later messages name."""
    if not path.is_file():
        raise not_found("label CSV", path, f"an MMSA label CSV with columns {COLUMNS}")
    rows, end = [], 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            reader = csv.DictReader(f)
            for row in reader:
                rows.append((end + 1, row))
                end = reader.line_num
            # while the file is open: with no row read (an empty file) DictReader reads the header line on first use;
            # a row's own keys add None for extra values
            header = list(reader.fieldnames or ())
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path} is not a readable label CSV ({exc}); expected UTF-8 text, comma-separated") from None
    has_id = "id" in header or {"video_id", "clip_id"} <= set(header)
    if not has_id or not {"text", "label", "mode"} <= set(header):
        raise InputError(f"{path} is not an MMSA label CSV: columns {sorted(header)}; expected {COLUMNS}")
    if not rows:
        raise InputError(f"{path} has a header but no rows; expected one row per labelled transcript")
    return rows, header


def _warn_repeated_ids(ids: list[str], modes: list[str], path: Path) -> None:
    """MMSA has one row per clip, so an id on several rows is most likely a file appended twice or a clip labelled
    twice: read silently, its rows were trained on twice, and a clip in two splits put test rows into training."""
    rows_of, splits_of = Counter(ids), defaultdict(set)
    for sample, mode in zip(ids, modes):
        splits_of[sample].add(mode)
    repeated = [sample for sample, n in rows_of.items() if n > 1]
    if repeated:
        across = sum(len(splits_of[sample]) > 1 for sample in repeated)
        warn(f"{path}: {plural(len(repeated), 'id')} on more than one row (first: '{repeated[0]}'), {across} of them "
             "in more than one split; expected one row per clip (a repeat is trained on twice, and one in two "
             "splits scores the model on rows it trained on)")


def _label(raw: str, path: Path, line: int) -> float:
    """A row's sentiment score; NaN where it has none (a blank cell as well as 'nan': such rows are dropped)."""
    try:
        return float(raw) if raw.strip() else float("nan")
    except ValueError:
        raise InputError(f"{path} line {line}: label '{raw}' is not a number; expected a sentiment score in [-3, 3] "
                         "(a blank or NaN label drops the row)") from None
