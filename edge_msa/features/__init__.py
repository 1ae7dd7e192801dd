"""Raw-media front ends: turn text / audio files / video files into feature arrays that match a FeatureSpec.

Each front end has `.name`, `.dim` and `__call__(source) -> (L, dim) float32`; heavy imports are lazy.
A model can only consume the front end its FeatureSpec names (manifest `front_ends`).
"""
from __future__ import annotations

import importlib

from ..errors import InputError
from ..spec import suggest

# name -> "module:Class"; the modules import onnxruntime / soundfile / OpenCV only when used.
FRONT_ENDS = {
    "minilm-l6-int8": "edge_msa.features.text:TextEncoder",
    "logmel-v1": "edge_msa.features.audio:AudioFrontEnd",
    "face-v1": "edge_msa.features.video:VideoFrontEnd",
}


def front_end(name: str, **kwargs):
    """Instantiate the front end called `name` (see FRONT_ENDS)."""
    if name not in FRONT_ENDS:
        raise InputError(f"unknown front end '{name}'{suggest(name, sorted(FRONT_ENDS))}")
    module, cls = FRONT_ENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
