"""The one modality-subset rule (edge_msa.data.modality_subset), used by teacher training and the benchmarks."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import make_featureset
from edge_msa.data.modality_subset import restrict_set
from edge_msa.spec import MODALITIES, FeatureSpec

SPEC = FeatureSpec(dims=(12, 5, 7), max_lens=(9, 3, 4))


@pytest.mark.parametrize("keep", [("text",), ("text", "audio"), ("audio", "video"), MODALITIES])
def test_left_out_modalities_are_missing_and_kept_ones_unchanged(keep):
    fs = make_featureset(SPEC, 20, seed=len(keep))
    fs.lengths["text"][:] = np.minimum(fs.lengths["text"], 6)  # no text uses all 9 steps: trimmed to 6
    out = restrict_set(fs, keep)
    assert len(out) == len(fs) and out.ids.tolist() == fs.ids.tolist() and (out.labels == fs.labels).all()
    for m in MODALITIES:
        x, n = out.features[m], out.lengths[m]
        assert x.dtype == np.float32 and n.dtype == np.int64 and x.shape[-1] == SPEC.dim(m)
        if m in keep:
            assert (n == fs.lengths[m]).all() and x.shape[1] == int(fs.lengths[m].max())
            np.testing.assert_array_equal(x, fs.features[m][:, :x.shape[1]])
        else:
            assert (n == 0).all() and x.shape[1] == 1 and not x.any()


def test_batches_the_trainer_builds_are_unchanged_by_the_trim():
    """Teacher training used to keep the full padded width of kept modalities; the trainer's batches (trimmed to
    the batch's longest sequence) are the same either way, so the shared rule changes no training result."""
    torch = pytest.importorskip("torch")
    from edge_msa.training import iterate

    fs = make_featureset(SPEC, 40, seed=3)
    fs.lengths["text"][:] = np.minimum(fs.lengths["text"], 5)
    full = restrict_set(fs, MODALITIES)
    untrimmed = type(fs)({**full.features, "text": fs.features["text"]}, full.lengths, fs.labels, fs.ids)
    for a, b in zip(iterate(full, 16), iterate(untrimmed, 16)):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
