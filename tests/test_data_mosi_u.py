"""MOSI-U reader on the real npz: split_declare, video-disjoint valid, MiniLM text, NaN labels dropped."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import MOSI_NPZ, needs_data, one_line_error
from edge_msa.data import load_dataset
from edge_msa.errors import InputError


@pytest.fixture(scope="module")
def mosi(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGE_MSA_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield load_dataset(MOSI_NPZ, progress=False)


@needs_data
@pytest.mark.slow
def test_mosi_u_splits_and_shapes(mosi):
    assert mosi.info["format"] == "mosi-u" and mosi.info["dropped_nan_labels"] == 4
    sizes = {k: len(mosi.split(k)) for k in ("train", "valid", "test")}
    assert sizes == {"train": 1204, "valid": 240, "test": 751}
    assert mosi.spec.dims == (384, 73, 100) and mosi.spec.max_lens == (50, 1, 1)
    assert mosi.spec.front_ends == ("minilm-l6-int8", "external:declare-opensmile-73", "external:declare-3dcnn-100")
    for name in ("train", "valid", "test"):
        fs = mosi.split(name)
        fs.check_spec(mosi.spec)
        assert fs.features["audio"].shape[1:] == (1, 73) and (fs.lengths["video"] == 1).all()
        assert 3 <= fs.lengths["text"].min() and fs.lengths["text"].max() <= 50
        assert np.isfinite(fs.labels).all() and np.abs(fs.labels).max() <= 3


@needs_data
@pytest.mark.slow
def test_mosi_u_valid_is_video_disjoint_and_seeded(mosi):
    video = lambda fs: {i.rsplit("_", 1)[0] for i in fs.ids}  # noqa: E731
    assert not video(mosi.train) & video(mosi.valid)
    assert not video(mosi.train) & video(mosi.test) and not video(mosi.valid) & video(mosi.test)
    raw = np.load(MOSI_NPZ)
    declare_test = set(raw["id"][(raw["split_declare"] == "test") & np.isfinite(raw["label_reg"])])
    assert set(mosi.test.ids) == declare_test
    assert mosi.info["valid_videos"] == sorted(video(mosi.valid))
    other = load_dataset(MOSI_NPZ, seed=1, progress=False)  # cached text: fast
    assert other.info["valid_videos"] != mosi.info["valid_videos"]
    assert len(other.train) + len(other.valid) == len(mosi.train) + len(mosi.valid)


@needs_data
@pytest.mark.slow
def test_mosi_u_text_is_the_transcript(mosi):
    i = int(np.flatnonzero(mosi.test.ids == "03bSnISJMiM_1")[0])
    assert mosi.test.texts[i] == "anyhow it was really good"
    n = mosi.test.lengths["text"][i]
    assert n == 8 and not mosi.test.features["text"][i, n:].any()


def test_mosi_u_missing_keys_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, id=np.array(["a_1"]), label_reg=np.zeros(1, np.float32))
    with pytest.raises(InputError, match="not a MOSI-U .* missing keys"):
        load_dataset(bad, fmt="mosi-u", progress=False)


def test_mosi_u_labels_outside_the_sentiment_range_are_refused(tmp_path):
    bad = tmp_path / "scaled.npz"
    n = 4
    np.savez(bad, id=np.array([f"v{i}_1" for i in range(n)]), video_id=np.array([f"v{i}" for i in range(n)]),
             transcript=np.array(["a b"] * n), transcript_lower_mmcpanda=np.array(["a b"] * n),
             audio_feat=np.zeros((n, 3), np.float32), video_feat=np.zeros((n, 2), np.float32),
             label_reg=np.array([1.0, -120.0, np.nan, 2.0], np.float32), split_declare=np.array(["train"] * 3 + ["test"]))
    message = one_line_error(lambda: load_dataset(bad, fmt="mosi-u", progress=False))
    assert message.startswith(f"{bad}: 1 of 3 labels lie outside [-3, 3] (first: -120 of 'v1_1')")
