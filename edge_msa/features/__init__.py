"""Raw-media front ends: turn text / audio files / video files into feature arrays that match a FeatureSpec.

Each front end has `.name`, `.dim` and `__call__(source) -> (L, dim) float32`; heavy imports are lazy.
A model can only consume the front end its FeatureSpec names (manifest `front_ends`).
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from ..errors import InputError
from ..spec import suggest

# name -> ("module:Class", the constructor argument that sets its sequence length); the modules import
# onnxruntime / soundfile / OpenCV only when used.
FRONT_ENDS = {
    "minilm-l6-int8": ("edge_msa.features.text:MiniLMFrontEnd", "max_len"),
    "logmel-v1": ("edge_msa.features.audio:AudioFrontEnd", "max_frames"),
    "face-v1": ("edge_msa.features.video:VideoFrontEnd", "num_frames"),
}


def front_end(name: str, **kwargs):
    """Instantiate the front end called `name` (see FRONT_ENDS)."""
    if name not in FRONT_ENDS:
        raise InputError(f"unknown front end '{name}'{suggest(name, sorted(FRONT_ENDS))}")
    module, cls = FRONT_ENDS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


def front_end_for(spec, modality: str, **kwargs):
    """The front end `spec` names for `modality`, producing at most the spec's sequence length (what the
    model was trained on), so featurize and the runtime build it the same way."""
    name = spec.front_end(modality)
    length = {FRONT_ENDS[name][1]: spec.max_len(modality)} if name in FRONT_ENDS else {}  # unknown: front_end says so
    return front_end(name, **{**length, **kwargs})


def media_file(path: str | os.PathLike, what: str, expected: str) -> Path:
    """`path` when it is a file with bytes in it, else one line saying which of folder / missing / empty it is: the
    decoders' own errors for those read "[Errno 1094995529] Invalid data found" (FFmpeg, a 0-byte audio file)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder; expected {expected}")
    if not p.is_file():
        raise InputError(f"{what} not found: {p}")
    if p.stat().st_size == 0:
        raise InputError(f"{what} {p} is empty (0 bytes); expected {expected}")
    return p
