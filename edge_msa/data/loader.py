"""`load_dataset(path, fmt=None)`: one format table drives reader choice, detection and error messages."""
from __future__ import annotations

import importlib
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..dataset_formats import FORMATS
from ..digest import file_sha256
from ..errors import InputError, not_found
from ..spec import read_word
from ..splits import SPLITS
from .assemble import TextFrontEnd
from .base import DatasetSplits
from .cv import cross_validation_fold


def sniff_npz(path: Path) -> str | None:
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # numpy would otherwise try (and refuse) to unpickle it
            raise InputError(f"{path} is not a .npz archive (no zip header); expected a numpy .npz such as "
                             "mosi_utterance_std.npz or an `edge-msa featurize` output")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            tag = str(z["format"]) if "format" in keys and z["format"].ndim == 0 else None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path} is not a readable .npz ({type(exc).__name__}: {exc})") from None
    if tag is not None and tag.startswith("edge-msa-features"):
        return "edge-msa-features"
    if {"split_declare", "audio_feat", "video_feat", "label_reg"} <= keys:
        return "mosi-u"
    return None


def sniff_pickle(path: Path) -> str | None:
    """Load with the restricted unpickler and look at the structure (for renamed pickles)."""
    from .pickle_safe import load_pickle

    data = load_pickle(path)
    if isinstance(data, list):
        return "misa"
    train = data.get("train") if isinstance(data, dict) else None
    if isinstance(train, dict):
        if "raw_text" in train:
            return "mmsa"
        if "labels" in train and "text" in train:
            return "multibench"
    return None


def detect_format(path: str | os.PathLike) -> str:
    """Guess the format from the file name, then from the content; InputError when it cannot tell. Extensions
    match in any case (`LABEL.CSV`, `data.NPZ`: copies from Windows tools keep upper case)."""
    path = Path(path)
    if path.is_dir():
        if any((path / name).is_file() for name in FORMATS["misa"].names):
            return "misa"
        raise InputError(f"cannot tell the dataset format of directory {path}; a MISA directory holds "
                         "train.pkl, dev.pkl and test.pkl, other formats are single files")
    for fmt, spec in FORMATS.items():
        if path.name in spec.names:
            return fmt
    found, suffix = None, path.suffix.lower()
    if suffix == ".npz":
        found = sniff_npz(path)
    elif suffix == ".csv":
        found = "mmsa-label-csv"
    elif suffix in (".pkl", ".pickle"):
        found = sniff_pickle(path)
    if found is None:
        choices = "; ".join(f"{k}: {v.what}" for k, v in FORMATS.items())
        raise InputError(f"cannot tell the dataset format of {path}; name it (`edge-msa train --data-format`, "
                         f"fmt= in Python), one of {choices}")
    return found


def existing_dataset(path: str | os.PathLike) -> Path:
    """`path` as a Path, or the one-line error for a dataset that is not there."""
    path = Path(path)
    if not path.exists():
        raise not_found("dataset", path, f"a dataset file or folder, one of the formats {', '.join(FORMATS)}")
    return path


def load_dataset(path: str | os.PathLike, fmt: str | None = None, seed: int = 0, progress: bool = True,
                 text_encoder: TextFrontEnd | None = None, cv_fold: tuple[int, int] | None = None,
                 featurize: Sequence[str] = SPLITS, sha256: str | None = None) -> DatasetSplits:
    """Read a public MSA dataset into train/valid/test FeatureSets with the FeatureSpec describing them.

    `fmt` is one of FORMATS (None = detect from the name/content). Text goes through the one text
    front end (MiniLM, cached on disk) wherever the format has raw text; `text_encoder` overrides
    its files (e.g. the copies inside a bundle). `seed` fixes any split the reader has to make.
    `cv_fold` = (fold, folds): that cross-validation fold over train + valid instead (`edge_msa.data.cv`; the
    test rows are dropped). `featurize`: the splits whose text is embedded (eval scores one; every row is still read,
    for the splits' ids and the file's sha256); the others hold no text, and `DatasetSplits.split` refuses them. A fold
    embeds every split, as it re-splits train + valid. `info` records path, format, seed, the fold, the file's sha256
    (see `lineage`) and "featurized". `sha256`: the file's, where the caller has hashed it already (rebuild_splits
    compares it with a model's record first), so that a large file is not read once more for it.
    """
    path = existing_dataset(path)
    # in any case, as train's --data-format reads it (fmt="MISA" was an unknown dataset format)
    fmt = detect_format(path) if fmt is None else read_word("fmt", fmt, tuple(FORMATS))
    module, func = FORMATS[fmt].reader.split(":")
    read = getattr(importlib.import_module(f"{__package__}.{module}"), func)
    featurize = SPLITS if cv_fold is not None else tuple(read_word("featurize", name, SPLITS) for name in featurize)
    splits = read(path, seed=seed, progress=progress, text_encoder=text_encoder, featurize=featurize)
    if cv_fold is not None:
        splits = cross_validation_fold(splits, *cv_fold, seed=seed)
    splits.info = {**splits.info, "path": str(path.resolve()), "format": fmt, "seed": int(seed),
                   "sha256": sha256 or file_sha256(path), "featurized": list(featurize)}
    return splits
