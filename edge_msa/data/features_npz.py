"""Format "edge-msa-features": the featurized-dataset .npz the raw-media pipeline writes (no pickle).

Keys: `format` = "edge-msa-features-v1", `feature_spec` (FeatureSpec JSON), `id`, `label` (N,) float32,
`split` (N,) in {train, valid, test}, `transcript` (N,), `audio_feat` (N, La, da), `audio_len` (N,),
`video_feat` (N, Lv, dv), `video_len` (N,). Text features are computed here from `transcript` by the
text front end the spec names (cached); an empty transcript means the text modality is missing
(length 0) for that sample.
"""
from __future__ import annotations

import json
from dataclasses import replace
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..features.text import NAME as MINILM, MiniLMFrontEnd
from ..featurized_format import FORMAT_TAG, KEYS
from ..labels import check_label_range
from ..spec import FeatureSpec, check_finite
from ..splits import SPLITS
from .assemble import TextFrontEnd, build_splits, encode_texts, featured_rows, zero_padding
from .base import FINITE_LABELS, SAMPLE_AXES, DatasetSplits, missing_modality
from .npz import load_npz


def read(path: str | os.PathLike, seed: int = 0, progress: bool = True,
         text_encoder: TextFrontEnd | None = None, featurize: Sequence[str] = SPLITS) -> DatasetSplits:
    path = Path(path)
    z = load_npz(path, KEYS, "edge-msa features")
    if str(z["format"]) != FORMAT_TAG:
        raise InputError(f"{path}: format '{z['format']}'; expected '{FORMAT_TAG}'")
    try:
        spec = FeatureSpec.from_dict(json.loads(str(z["feature_spec"])))
    except (json.JSONDecodeError, TypeError) as exc:
        raise InputError(f"{path}: feature_spec is not FeatureSpec JSON ({exc})") from None
    if spec.front_end("text") != MINILM or spec.dim("text") != MiniLMFrontEnd.dim:
        raise InputError(f"{path}: text front end '{spec.front_end('text')}' ({spec.dim('text')}-d) cannot be "
                         f"computed from transcripts; expected '{MINILM}' ({MiniLMFrontEnd.dim}-d)")
    n = len(z["id"])
    features, lengths = {}, {}
    for m in ("audio", "video"):
        x, ln = z[f"{m}_feat"], np.asarray(z[f"{m}_len"], dtype=np.int64)
        if x.ndim != 3 or len(x) != n or x.shape[-1] != spec.dim(m) or ln.shape != (n,):
            raise InputError(f"{path}: {m}_feat {x.shape} / {m}_len {ln.shape}; expected ({n}, L, {spec.dim(m)}) "
                             f"and ({n},) as the feature_spec says")
        if (ln < 0).any() or (ln > x.shape[1]).any():
            raise InputError(f"{path}: {m}_len outside [0, {x.shape[1]}]")
        check_finite(f"{path}: {m}_feat rows", x, SAMPLE_AXES)
        features[m], lengths[m] = zero_padding(x.astype(np.float32), ln), ln
    for key in ("label", "split", "transcript"):
        if z[key].shape != (n,):
            raise InputError(f"{path}: {key} has shape {z[key].shape}; expected ({n},)")
    split = z["split"].astype(str)
    unknown = sorted(set(split.tolist()) - {"train", "valid", "test"})
    if unknown:
        raise InputError(f"{path}: split values {unknown}; expected train, valid or test")
    check_finite(f"{path}: labels", z["label"], SAMPLE_AXES[:1], FINITE_LABELS)
    ids, texts = z["id"].astype(str), z["transcript"].astype(str)
    check_label_range(z["label"], ids, str(path))
    has_text = np.flatnonzero(np.char.str_len(np.char.strip(texts)) > 0)
    parts = {s: np.flatnonzero(split == s) for s in SPLITS}
    wanted = np.flatnonzero(np.isin(has_text, featured_rows(parts, featurize)))  # positions within has_text
    encoder = text_encoder or MiniLMFrontEnd(max_len=spec.max_len("text"))
    text, text_len = missing_modality(n, encoder.dim)  # the encoder's width: token ids are 1 wide, not the spec's 384
    if len(has_text):
        enc, enc_len, encoder = encode_texts(texts[has_text], ids[has_text], encoder, progress, wanted)
        text = np.zeros((n, enc.shape[1], enc.shape[2]), dtype=np.float32)
        text[has_text], text_len[has_text] = enc, enc_len
    features["text"], lengths["text"] = text, text_len
    spec = replace(spec, dims=(encoder.dim, *spec.dims[1:]), max_lens=(encoder.max_len, *spec.max_lens[1:]),
                   front_ends=(encoder.name, *spec.front_ends[1:]))  # e.g. token ids for a model's own encoder
    info = {"format": "edge-msa-features", "path": str(path), "split": "split column",
            "missing_text": int(n - len(has_text))}
    return build_splits("edge-msa-features", spec, features, lengths, z["label"].astype(np.float32),
                        ids, texts, parts, info)
