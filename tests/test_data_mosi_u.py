"""MOSI-U reader on the real npz: split_declare, video-disjoint valid, MiniLM text, NaN labels dropped."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import MOSI_NPZ, needs_data, one_line_error
from edge_msa.data import load_dataset
from edge_msa.errors import InputError


@pytest.fixture(scope="module")
def mosi():
    """The suite's own feature cache ($EDGE_MSA_CACHE, keyed by the texts, encoder files and cache version): a
    private one encoded the 2195 transcripts with MiniLM again, for the features the real-data bundles read."""
    return load_dataset(MOSI_NPZ, progress=False)


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
             label_reg=np.array([1.0, -120.0, np.nan, 2.0], np.float32),
             split_declare=np.array(["train"] * 3 + ["test"]))
    message = one_line_error(lambda: load_dataset(bad, fmt="mosi-u", progress=False))
    assert message.startswith(f"{bad}: 1 of 3 labels lie outside [-3, 3] (first: -120 of 'v1_1')")


# The lineage of the README's MOSI-U cross-validation teachers (`edge-msa train --cv-fold F/4`, seed 0): the rows of
# each fold's train / valid / held-out "test" (lineage.ids_sha256). Their checkpoints rebuild these splits, so the
# folds of MOSI-U must never move (e.g. when the grouping by video changes for other formats).
RECORDED_FOLDS = {
    0: ("93624302e23bdb62", "3541e5ef45bc9e44", "803ca4298b3ff06e"),
    1: ("6c31f5991f726354", "fa4aa1c1a379b10c", "117e7aa76c6ab70c"),
    2: ("95ab616bb2ade81a", "67f9a57a57fd8747", "bdc039f02d99cfdf"),
    3: ("938c4342bdd7b303", "1ceece5af7ac2a11", "b2dc6319607afcf5"),
}


def ids_only(monkeypatch):
    """Readers skip the text front end (one zero step per text): splits and folds depend on ids and videos alone."""
    from types import SimpleNamespace

    from edge_msa.data import label_csv, mosi_u

    stub = SimpleNamespace(dim=1, max_len=1, name="stub")
    fake = lambda texts, ids, encoder, progress, rows=None: (np.zeros((len(texts), 1, 1), np.float32),  # noqa: E731
                                                            np.ones(len(texts), np.int64), stub)
    for module in (mosi_u, label_csv):
        monkeypatch.setattr(module, "encode_texts", fake)


@needs_data
def test_mosi_u_cross_validation_folds_keep_their_recorded_rows(monkeypatch):
    from edge_msa.data.lineage import ids_sha256

    ids_only(monkeypatch)
    for fold, recorded in RECORDED_FOLDS.items():
        splits = load_dataset(MOSI_NPZ, progress=False, cv_fold=(fold, 4))
        assert tuple(ids_sha256(splits.split(k).ids)[:16] for k in ("train", "valid", "test")) == recorded, fold


def test_label_csv_folds_are_cut_by_its_video_id_column(tmp_path, monkeypatch):
    """MOSEI's clip ids hold '_' ("-3g5yACwYnA,82_7645"): cut by the id's prefix, a video's clips fell into
    different folds (18,100 groups for MOSEI's 2,542 train + valid videos), so held-out videos were trained on."""
    ids_only(monkeypatch)
    rows = [f"vid{v}_x,{v * 7 + c}_{c * 13},clip {c} of video {v},0.5,{'valid' if v > 6 else 'train'}"
            for v in range(9) for c in range(4)]
    path = tmp_path / "label.csv"
    path.write_text("video_id,clip_id,text,label,mode\n" + "\n".join(rows) + "\n")
    for fold in range(3):
        splits = load_dataset(path, progress=False, cv_fold=(fold, 3))
        video = {k: {i.rsplit("_", 2)[0] for i in splits.split(k).ids} for k in ("train", "valid", "test")}
        assert not video["test"] & (video["train"] | video["valid"]) and not video["train"] & video["valid"]
        assert splits.test.groups is not None and set(splits.test.groups) == video["test"]


def test_every_fold_is_checked_before_any_is_trained(tmp_path, monkeypatch):
    """`train --cv-fold 0/6` trained while fold 4's held-out part held one row: the cross-validation stopped at its
    fifth run, after four trainings, with a message that blamed the file's mode column."""
    ids_only(monkeypatch)
    rows = [f"v{i // 3 if i < 18 else 6 + i},{i},clip {i},{(i % 5) - 2}.5,{('train', 'train', 'valid', 'test')[i % 4]}"
            for i in range(24)]  # six videos of three clips, six of one
    path = tmp_path / "label.csv"
    path.write_text("video_id,clip_id,text,label,mode\n" + "\n".join(rows) + "\n")
    message = one_line_error(lambda: load_dataset(path, progress=False, seed=1, cv_fold=(0, 6)))
    assert message == (f"split 'test' of {path} holds 1 labelled row; expected at least 2 in each of train, valid and "
                       "test, not all labelled 0 (split by: cross-validation fold 4/6 of train + valid, by video; "
                       "every fold must hold them: fewer folds make larger parts)")
    assert len(load_dataset(path, progress=False, seed=1, cv_fold=(0, 3)).test) > 2


def test_a_fold_whose_rest_is_one_video_names_the_fold(tmp_path, monkeypatch):
    """Two videos in two folds leave one video beside each held-out part, which no validation share can be carved
    from: carve_by_group's message named no fold."""
    ids_only(monkeypatch)
    rows = [f"v{i % 2},{i},clip {i},{(i % 5) - 2}.5,{('train', 'valid')[i % 2]}" for i in range(12)]
    rows += [f"t{i},{i},clip {i},{(i % 5) - 2}.5,test" for i in range(4)]
    path = tmp_path / "label.csv"
    path.write_text("video_id,clip_id,text,label,mode\n" + "\n".join(rows) + "\n")
    message = one_line_error(lambda: load_dataset(path, progress=False, cv_fold=(1, 2)))
    assert message.startswith("cross-validation fold 0/2 of train + valid: cannot carve a ")
    assert message.endswith("; fewer folds leave more videos beside each held-out part (or give more videos)")

@pytest.mark.parametrize("folds, seed, says", [
    (5000, 0, "ran out after 4): K = 5000 is too large for the number of videos; expected fewer folds (at most 5)"),
    (4, 8, "ran out after 1): K = 4 is too large for the number of videos; expected fewer folds"),  # 5 videos, but
])  # the seed-8 order carves the four small ones first and leaves the large one alone
def test_too_many_folds_for_the_videos_names_k(folds, seed, says):
    """--cv-fold 0/5000 said "cannot carve a 0% split from 1 video(s)", never naming K."""
    from edge_msa.splits import folds_by_group

    groups = np.array(["a", "b", "c", "d"] + ["e"] * 40)  # e: one large video
    message = one_line_error(lambda: folds_by_group(np.arange(len(groups)), groups, folds, seed=seed))
    assert message.startswith(f"cannot cut 5 videos into {folds} cross-validation folds of whole videos")
    assert message.endswith(says)
