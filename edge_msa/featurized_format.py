"""The "edge-msa-features-v1" .npz contract: its format tag and keys.

It sits below both sides of the format, its writer (edge_msa.features.featurize) and its reader
(edge_msa.data.features_npz), so neither imports the other's package and the front ends never import the
dataset readers (which use the text front end). Imports nothing from edge_msa.
"""
from __future__ import annotations

FORMAT_TAG = "edge-msa-features-v1"
KEYS = ("format", "feature_spec", "id", "label", "split", "transcript", "audio_feat", "audio_len",
        "video_feat", "video_len")
