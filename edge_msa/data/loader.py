"""`load_dataset(path, fmt=None)`: one format table drives reader choice, detection and error messages."""
from __future__ import annotations

import importlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..features.text import TextEncoder
from ..spec import suggest
from .base import DatasetSplits


@dataclass(frozen=True)
class Format:
    reader: str  # "module:function" under edge_msa.data, imported when used
    what: str  # one line for messages and --help


FORMATS: dict[str, Format] = {
    "mosi-u": Format("mosi_u:read", "utterance-level CMU-MOSI npz (mosi_utterance_std.npz)"),
}


def detect_format(path: Path) -> str:
    """Guess the format from the file name, then from the content; InputError when it cannot tell."""
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                keys = set(z.files)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path} is not a readable .npz ({type(exc).__name__}: {exc})") from None
        if {"split_declare", "audio_feat", "video_feat", "label_reg"} <= keys:
            return "mosi-u"
    raise InputError(f"cannot tell the dataset format of {path}; pass fmt= one of {', '.join(FORMATS)}")


def load_dataset(path: str | os.PathLike, fmt: str | None = None, seed: int = 0, progress: bool = True,
                 text_encoder: TextEncoder | None = None) -> DatasetSplits:
    """Read a public MSA dataset into train/valid/test FeatureSets with the FeatureSpec describing them.

    `fmt` is one of FORMATS (None = detect from the name/content). Text goes through the one text
    front end (MiniLM, cached on disk) wherever the format has raw text; `text_encoder` overrides
    its files (e.g. the copies inside a bundle). `seed` fixes any split this reader has to make.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"dataset not found: {path}")
    if fmt is None:
        fmt = detect_format(path)
    elif fmt not in FORMATS:
        raise InputError(f"unknown dataset format '{fmt}'{suggest(fmt, list(FORMATS))}")
    module, func = FORMATS[fmt].reader.split(":")
    read = getattr(importlib.import_module(f"{__package__}.{module}"), func)
    return read(path, seed=seed, progress=progress, text_encoder=text_encoder)
