"""Format "misa": the MISA / CMU-MultimodalSDK word-aligned pickles (train.pkl, dev.pkl, test.pkl).

Reads pickle (restricted: numpy arrays and builtin containers only, see pickle_safe). Each file is a
list of `((word_ids (L,), visual (L, dv) Facet, acoustic (L, da) COVAREP, words list[str]),
label (1, 1), segment_id)`. Text is MiniLM of " ".join(words) (the front end shared by every
dataset; the GloVe word ids are not used); audio = acoustic, video = visual, one step per word.
COVAREP holds -inf log energies in the public files: non-finite audio/video values become 0
(as MMSA does), and the count is recorded in `info["nonfinite_replaced"]`.

`path` is a directory holding train.pkl, dev.pkl and test.pkl, or a single .pkl: a single file is
split by video id into train/valid/test (70/15/15 %, seeded), with a warning, because its own fold
label is unknown.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError, warn
from ..labels import check_label_range
from ..spec import FeatureSpec
from ..splits import SPLITS, split_three_by_group, video_id_of
from .assemble import TextFrontEnd, build_splits, encode_texts, featured_rows, pad_sequences, replace_nonfinite
from .base import DatasetSplits
from .pickle_safe import load_pickle

FILES = {"train": "train.pkl", "valid": "dev.pkl", "test": "test.pkl"}


def parse(items: object, where: str) -> list[tuple[np.ndarray, np.ndarray, list[str], float, str]]:
    """Check the public structure and return (visual, acoustic, words, label, segment_id) per utterance."""
    if not isinstance(items, list) or not items:
        raise InputError(f"{where} is not a MISA word-aligned pickle: expected a non-empty list of "
                         f"((word_ids, visual, acoustic, words), label, segment_id); got {type(items).__name__}")
    rows = []
    for i, item in enumerate(items):
        try:
            (_, visual, acoustic, words), label, segment = item
            visual, acoustic = np.asarray(visual, np.float32), np.asarray(acoustic, np.float32)
            score = float(np.asarray(label).reshape(-1)[0])
        except (TypeError, ValueError, IndexError) as exc:
            raise InputError(f"{where} item {i} does not have the MISA structure ((word_ids, visual, acoustic, "
                             f"words), label, segment_id): {exc}") from None
        if visual.ndim != 2 or acoustic.ndim != 2 or not (len(visual) == len(acoustic) == len(words)):
            raise InputError(f"{where} item {i} ({segment}): visual {visual.shape}, acoustic {acoustic.shape} and "
                             f"{len(words)} words; expected (L, dv), (L, da) and L words")
        rows.append((visual, acoustic, [str(w) for w in words], score, str(segment)))
    return rows


def read(path: str | os.PathLike, seed: int = 0, progress: bool = True,
         text_encoder: TextFrontEnd | None = None, featurize: Sequence[str] = SPLITS) -> DatasetSplits:
    path = Path(path)
    if path.is_dir():
        missing = [f for f in FILES.values() if not (path / f).is_file()]
        if missing:
            raise InputError(f"MISA directory {path} lacks {', '.join(missing)}; expected train.pkl, dev.pkl, test.pkl "
                             "(or pass a single .pkl to split it by video id)")
        per_split = {k: parse(load_pickle(path / f), str(path / f)) for k, f in FILES.items()}
        rows = [r for k in FILES for r in per_split[k]]
        bounds = np.cumsum([0] + [len(per_split[k]) for k in FILES])
        parts = {k: np.arange(bounds[i], bounds[i + 1]) for i, k in enumerate(FILES)}
        how = "train.pkl / dev.pkl / test.pkl"
    else:
        rows = parse(load_pickle(path), str(path))
        parts = split_three_by_group(np.array([video_id_of(r[4]) for r in rows]), seed)
        how = "single file split 70/15/15 by video id"
        warn(f"{path.name} is a single MISA file: splitting it by video id into train/valid/test "
             f"({', '.join(f'{k} {len(v)}' for k, v in parts.items())}, seed {seed})")
    dims = {(r[0].shape[1], r[1].shape[1]) for r in rows}
    if len(dims) != 1:
        raise InputError(f"{path}: visual/acoustic dims differ between utterances {sorted(dims)}; "
                         "expected one (dv, da)")
    ids = [r[4] for r in rows]
    texts = [" ".join(r[2]) for r in rows]
    labels = np.array([r[3] for r in rows], np.float32)
    check_label_range(labels, ids, str(path))
    text, text_len, encoder = encode_texts(texts, ids, text_encoder, progress, featured_rows(parts, featurize))
    audio, audio_len = pad_sequences([r[1] for r in rows])
    video, video_len = pad_sequences([r[0] for r in rows])
    audio, bad_a = replace_nonfinite(audio)
    video, bad_v = replace_nonfinite(video)
    spec = FeatureSpec(dims=(encoder.dim, audio.shape[-1], video.shape[-1]),
                       max_lens=(encoder.max_len, audio.shape[1], video.shape[1]),
                       front_ends=(encoder.name, f"external:covarep-{audio.shape[-1]}",
                                   f"external:facet-{video.shape[-1]}"))
    info = {"format": "misa", "path": str(path), "seed": seed, "split": how,
            "nonfinite_replaced": {"audio": bad_a, "video": bad_v}}
    return build_splits("misa", spec, {"text": text, "audio": audio, "video": video},
                        {"text": text_len, "audio": audio_len, "video": video_len},
                        labels, ids, texts, parts, info)
