"""Benchmark inputs: modality subsets and the batches fed to `predict_features`.

A subset such as "text+audio" is simulated the way a device sees it (edge_msa.data.modality_subset): the
left-out modalities have length 0 (missing) and zero features, so the runtime's missing-modality path and
skip gate run for real.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_msa.data.base import FeatureSet
from edge_msa.data.modality_subset import restrict_arrays
from edge_msa.errors import InputError
from edge_msa.features.text import TOKENS_PREFIX
from edge_msa.spec import MODALITIES, FeatureSpec, suggest

SUBSET_EXAMPLES = ("all", "text", "text+audio", "text+video", "audio+video")


def parse_subset(name: str) -> tuple[str, ...]:
    """'all' -> every modality; 'text+audio' -> ('text', 'audio') in canonical order. Read in any case, as the CLI's
    other word choices are (cli.one_of): `--modalities TEXT` was refused as an unknown modality 'TEXT'."""
    if name.strip().lower() == "all":
        return MODALITIES
    parts = [p.strip().lower() for p in name.split("+") if p.strip()]
    for p in parts:
        if p not in MODALITIES:
            raise InputError(f"unknown modality '{p}' in subset '{name}'{suggest(p, MODALITIES)}; "
                             f"examples: {', '.join(SUBSET_EXAMPLES)}")
    if not parts:
        raise InputError(f"empty modality subset '{name}'; examples: {', '.join(SUBSET_EXAMPLES)}")
    return tuple(m for m in MODALITIES if m in parts)


def subset_name(subset: tuple[str, ...]) -> str:
    """A parsed subset's one name, 'all' or its modalities in MODALITIES' order ('text+audio'): the key of its rows,
    so `--modalities TEXT` and `text`, or `audio+text` and `text+audio`, match in `bench --compare`."""
    return "all" if subset == MODALITIES else "+".join(subset)


@dataclass(frozen=True)
class Batch:
    """One call: features[m] (B, L_m, d_m) float32, lengths[m] (B,) int64; with `texts` (raw transcripts, text
    in the subset) the call starts from the strings, so the tokenizer and text encoder are timed too."""

    features: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    texts: tuple[str, ...] | None = None

    @property
    def size(self) -> int:
        return len(self.lengths[MODALITIES[0]])


def synthetic_set(spec: FeatureSpec, n: int, seed: int = 0, vocab: int | None = None) -> FeatureSet:
    """Random full-length features of the bundle's spec, for latency when no dataset is given. A token-id
    bundle ("wordpiece:" text front end) refuses noise as text, so its text is random whole ids below `vocab`
    (the size of the bundle's tokenizer): the runtime then times the path real transcripts take."""
    rng = np.random.default_rng(seed)
    feats = {m: rng.normal(size=(n, spec.max_len(m), spec.dim(m))).astype(np.float32) for m in MODALITIES}
    if spec.front_end("text").startswith(TOKENS_PREFIX):
        if vocab is None or vocab < 1:
            raise InputError(f"synthetic text for a token-id bundle needs its tokenizer's vocabulary size; got {vocab}")
        feats["text"] = rng.integers(0, vocab, size=feats["text"].shape).astype(np.float32)
    lens = {m: np.full(n, spec.max_len(m), dtype=np.int64) for m in MODALITIES}
    return FeatureSet(feats, lens, np.zeros(n, np.float32), np.array([f"synthetic{i}" for i in range(n)]))


def batches(fs: FeatureSet, batch: int, keep: tuple[str, ...], count: int = 32, raw_text: bool = False) -> list[Batch]:
    """Up to `count` consecutive batches of `batch` samples (wrapping around small sets), cycled in timing
    so latency reflects the data's mix of skipped and kept modalities rather than one sample. `raw_text`: the
    batches carry the transcripts (where the data has them and text is in `keep`)."""
    n = len(fs)
    if n == 0:
        raise InputError("the chosen split is empty; expected samples to time")
    out = []
    for b in range(max(1, min(count, -(-n // batch)))):
        idx = np.arange(b * batch, (b + 1) * batch) % n
        feats, lens = restrict_arrays({m: fs.features[m][idx] for m in MODALITIES},
                                      {m: fs.lengths[m][idx] for m in MODALITIES}, keep)
        texts = fs.texts if raw_text and "text" in keep else None
        out.append(Batch(feats, lens, tuple(str(t) for t in texts[idx]) if texts is not None else None))
    return out

