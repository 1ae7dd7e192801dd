"""Format "mosi-u": the utterance-level CMU-MOSI file `mosi_utterance_std.npz` (numpy, no pickle).

Splits follow `split_declare` (speaker independent; the declare-lab audio/video extractors were
trained on its train part, so the standard folds would leak). Validation is carved from the
declare-train part by whole video id (~15% of its utterances, seeded). Rows with a NaN label
(4 in MOSI) are dropped. Text is MiniLM token features of `transcript_lower_mmcpanda` (falling back
to the lower-cased `transcript` where that is empty); audio/video are the declare-lab utterance
vectors as length-1 sequences.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..labels import check_label_range
from ..spec import FeatureSpec
from ..splits import SPLITS, carve_by_group
from .assemble import TextFrontEnd, build_splits, encode_texts, featured_rows
from .base import DatasetSplits
from .npz import load_npz

KEYS = ("id", "video_id", "transcript", "transcript_lower_mmcpanda", "audio_feat", "video_feat",
        "label_reg", "split_declare")
VALID_FRACTION = 0.15
AV_FRONT_ENDS = ("external:declare-opensmile-73", "external:declare-3dcnn-100")


def read(path: str | os.PathLike, seed: int = 0, progress: bool = True,
         text_encoder: TextFrontEnd | None = None, featurize: Sequence[str] = SPLITS) -> DatasetSplits:
    z = load_npz(path, KEYS, "MOSI-U (mosi_utterance_std)")
    n = len(z["id"])
    for key in ("audio_feat", "video_feat"):
        if z[key].ndim != 2 or len(z[key]) != n:
            raise InputError(f"{path}: {key} has shape {z[key].shape}; expected ({n}, d)")
    keep = np.flatnonzero(np.isfinite(z["label_reg"]))  # drops the 4 unscored utterances
    lower = z["transcript_lower_mmcpanda"][keep]
    texts = np.where(np.char.str_len(np.char.strip(lower)) > 0, lower, np.char.lower(z["transcript"][keep]))
    ids, videos, split = z["id"][keep], z["video_id"][keep], z["split_declare"][keep]
    unknown = sorted(set(split.tolist()) - {"train", "test"})
    if unknown:
        raise InputError(f"{path}: split_declare has values {unknown}; expected train or test")
    check_label_range(z["label_reg"][keep], ids, str(path))
    train_idx, valid_idx = carve_by_group(np.flatnonzero(split == "train"), videos, VALID_FRACTION, seed)
    parts = {"train": train_idx, "valid": valid_idx, "test": np.flatnonzero(split == "test")}
    text, text_len, encoder = encode_texts(texts, ids, text_encoder, progress, featured_rows(parts, featurize))
    features = {"text": text, "audio": z["audio_feat"][keep][:, None, :], "video": z["video_feat"][keep][:, None, :]}
    lengths = {"text": text_len, "audio": np.ones(len(keep), np.int64), "video": np.ones(len(keep), np.int64)}
    spec = FeatureSpec(dims=(encoder.dim, features["audio"].shape[-1], features["video"].shape[-1]),
                       max_lens=(encoder.max_len, 1, 1), front_ends=(encoder.name, *AV_FRONT_ENDS))
    info = {"format": "mosi-u", "path": str(Path(path)), "seed": seed, "split": "split_declare",
            "valid": f"{VALID_FRACTION:.0%} of declare-train carved by video id",
            "valid_videos": sorted(set(videos[valid_idx].tolist())), "dropped_nan_labels": int(n - len(keep))}
    return build_splits("mosi-u", spec, features, lengths, z["label_reg"][keep], ids, texts, parts, info)
