"""Readers for the public formats: real files where we have them, else fixtures with the exact public
structure written with plain pickle / np.savez under tmp_path; format detection and one-line errors."""
from __future__ import annotations

import json
import pickle
import re
import shutil
import warnings

import numpy as np
import pytest

from conftest import DATA_ROOT, one_line_error
from edge_msa.data import detect_format, load_dataset
from edge_msa.data import label_csv, mosi_u
from edge_msa.data.pickle_safe import load_pickle
from edge_msa.errors import ArtifactError, InputError
from edge_msa.spec import FeatureSpec

MISA_DEV = DATA_ROOT / "mosi" / "misa_wordaligned" / "dev.pkl"
LABEL_CSV = DATA_ROOT / "mosi" / "labels" / "mosi_label_mmcpanda.csv"
MMSA_FET = DATA_ROOT / "formats" / "mmsa_fet" / "noise_api_examples_feature_unaligned.pkl"
needs_misa = pytest.mark.skipif(not MISA_DEV.is_file(), reason=f"real MISA dev.pkl not found at {MISA_DEV}")
needs_csv = pytest.mark.skipif(not LABEL_CSV.is_file(), reason=f"real label CSV not found at {LABEL_CSV}")
needs_fet = pytest.mark.skipif(not MMSA_FET.is_file(), reason=f"real MMSA-FET clip not found at {MMSA_FET}")
WORDS = "i really liked this movie but the ending was a bit slow and sad".split()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))


def dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


def video_ids(ids):
    return {i.split("[")[0].split("$_$")[0] for i in ids}


# ---- MISA / CMU-SDK word-aligned -------------------------------------------------------------

@needs_misa
@pytest.mark.slow
def test_misa_real_dev_single_file_is_split_by_video():
    with pytest.warns(UserWarning, match="single MISA file"):
        data = load_dataset(MISA_DEV, progress=False)
    assert data.info["format"] == "misa"
    assert sum(data.info["sizes"].values()) == 229
    assert data.spec.dims == (384, 74, 47) and data.spec.front_ends[1:] == ("external:covarep-74", "external:facet-47")
    assert not video_ids(data.train.ids) & video_ids(data.test.ids)
    assert not video_ids(data.train.ids) & video_ids(data.valid.ids)
    raw = {sid: (words, acoustic) for (_, _, acoustic, words), _, sid in load_pickle(MISA_DEV)}
    sid = data.test.ids[0]
    words, acoustic = raw[sid]
    assert data.test.texts[0] == " ".join(words)
    n = data.test.lengths["audio"][0]
    assert n == len(words) and np.array_equal(data.test.features["audio"][0, :n], acoustic)
    assert not data.test.features["audio"][0, n:].any()


@needs_misa
def test_misa_directory_uses_its_folds_and_cleans_inf(tmp_path):
    items = load_pickle(MISA_DEV)[:12]
    (_, visual, acoustic, words), label, sid = items[0]
    acoustic = acoustic.copy()
    acoustic[0, :3] = -np.inf  # COVAREP log energies are -inf in the public files
    items[0] = ((_, visual, acoustic, words), label, sid)
    for name, part in (("train.pkl", items[:6]), ("dev.pkl", items[6:9]), ("test.pkl", items[9:])):
        dump(tmp_path / name, part)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no single-file warning for a directory
        data = load_dataset(tmp_path, progress=False)
    assert data.info["sizes"] == {"train": 6, "valid": 3, "test": 3}
    assert data.info["nonfinite_replaced"] == {"audio": 3, "video": 0}
    assert data.train.ids[0] == sid and (data.train.features["audio"][0, 0, :3] == 0).all()
    (tmp_path / "dev.pkl").unlink()
    with pytest.raises(InputError, match="lacks dev.pkl"):
        load_dataset(tmp_path, fmt="misa", progress=False)


def test_misa_wrong_structure_is_an_input_error(tmp_path):
    path = dump(tmp_path / "odd.pkl", [(np.zeros(3), np.zeros((1, 1)))])
    with pytest.raises(InputError, match="item 0 does not have the MISA structure"):
        load_dataset(path, fmt="misa", progress=False)
    bad = ((np.zeros(3), np.zeros((3, 47)), np.zeros((2, 74)), ["a", "b", "c"]), np.zeros((1, 1)), "v[0]")
    with pytest.raises(InputError, match="expected \\(L, dv\\), \\(L, da\\) and L words"):
        load_dataset(dump(tmp_path / "bad.pkl", [bad]), fmt="misa", progress=False)


# ---- MMSA aligned_50 / unaligned_50 --------------------------------------------------------------

def mmsa_pickle(path, lengths_key=True, with_inf=False):
    """unaligned_50.pkl structure; audio/vision rows taken from the real MMSA-FET clip output."""
    clip = load_pickle(MMSA_FET)
    rng = np.random.default_rng(0)
    data = {}
    for s, n in (("train", 4), ("valid", 2), ("test", 3)):
        la = rng.integers(5, 40, size=n)
        lv = rng.integers(3, 20, size=n)
        audio = np.zeros((n, 40, 70), np.float32)
        vision = np.zeros((n, 20, 177), np.float32)
        for i in range(n):
            audio[i, :la[i]] = clip["audio"][i * 10:i * 10 + la[i]] + 0.1
            vision[i, :lv[i]] = clip["vision"][i:i + lv[i]] + 0.1
        if with_inf and s == "train":
            audio[0, 0, :2] = -np.inf
        split = {"raw_text": np.array([" ".join(WORDS[i:i + 4]) for i in range(n)], dtype=object),
                 "text": rng.normal(size=(n, 12, 768)).astype(np.float32),
                 "text_bert": np.ones((n, 3, 12), np.int64),
                 "audio": audio, "vision": vision,
                 "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
                 "classification_labels": np.ones(n, np.float32),
                 "id": np.array([f"{s}vid$_${i}" for i in range(n)], dtype=object)}
        if lengths_key:
            split["audio_lengths"], split["vision_lengths"] = la.tolist(), lv.tolist()
        data[s] = split
    return dump(path, data), data


@needs_fet
def test_mmsa_reads_lengths_text_and_labels(tmp_path):
    path, raw = mmsa_pickle(tmp_path / "unaligned_50.pkl", with_inf=True)
    assert detect_format(path) == "mmsa"
    data = load_dataset(path, progress=False)
    assert data.info["sizes"] == {"train": 4, "valid": 2, "test": 3}
    assert data.spec.dims == (384, 70, 177) and data.spec.max_lens == (50, 40, 20)
    assert data.info["nonfinite_replaced"] == {"audio": 2, "video": 0}
    np.testing.assert_array_equal(data.test.lengths["audio"], raw["test"]["audio_lengths"])
    np.testing.assert_array_equal(data.valid.labels, raw["valid"]["regression_labels"])
    assert data.valid.texts.tolist() == raw["valid"]["raw_text"].tolist()
    assert data.valid.ids.tolist() == ["validvid$_$0", "validvid$_$1"]
    np.testing.assert_allclose(data.test.features["video"][1], raw["test"]["vision"][1])


@needs_fet
def test_mmsa_without_lengths_infers_them_from_trailing_zeros(tmp_path):
    path, raw = mmsa_pickle(tmp_path / "aligned_50.pkl", lengths_key=False)
    data = load_dataset(path, progress=False)
    expected = (np.abs(raw["train"]["vision"]).sum(-1) > 0).sum(1)  # rows are non-zero up to the length
    np.testing.assert_array_equal(data.train.lengths["video"], expected)


def test_mmsa_wrong_keys_and_wrong_format(tmp_path):
    path = dump(tmp_path / "aligned_50.pkl", {"train": {"audio": np.zeros((1, 2, 3))}, "valid": {}, "test": {}})
    with pytest.raises(InputError, match=r"split 'train' lacks keys \['raw_text', 'vision'"):
        load_dataset(path, progress=False)
    with pytest.raises(InputError, match="not an MMSA dataset pickle.*got list"):
        load_dataset(dump(tmp_path / "x.pkl", [1, 2]), fmt="mmsa", progress=False)
    npz = tmp_path / "x.npz"
    np.savez(npz, a=np.zeros(2))
    with pytest.raises(ArtifactError, match="not a readable pickle"):
        load_dataset(npz, fmt="mmsa", progress=False)


# ---- MultiBench mosi_data.pkl -------------------------------------------------------------------

def multibench_pickle(path, steps=8):
    """mosi_data.pkl structure: word-aligned, zero steps in front, labels (N, 1, 1), ids (N, 2) bytes."""
    rng = np.random.default_rng(1)
    data = {}
    for s, n in (("train", 5), ("valid", 2), ("test", 2)):
        k = rng.integers(1, steps + 1, size=n)
        valid = np.arange(steps)[None, :] >= steps - k[:, None]  # (N, L): the last k steps
        arrays = {key: rng.normal(size=(n, steps, d)).astype(np.float32) * valid[:, :, None]
                  for key, d in (("vision", 35), ("audio", 74), ("text", 300))}
        arrays["audio"][0, -1, 0] = -np.inf
        data[s] = {**arrays, "labels": rng.uniform(-3, 3, (n, 1, 1)).astype(np.float32),
                   "id": np.array([[f"{s}vid".encode(), str(i).encode()] for i in range(n)])}
    return dump(path, data), data


def test_multibench_moves_valid_steps_to_the_front(tmp_path):
    path, raw = multibench_pickle(tmp_path / "mosi_data.pkl")
    data = load_dataset(path, progress=False)
    assert data.info["format"] == "multibench" and data.info["sizes"] == {"train": 5, "valid": 2, "test": 2}
    assert data.spec.dims == (300, 74, 35) and data.spec.front_ends[0] == "external:glove-300"
    assert data.info["nonfinite_replaced"]["audio"] == 3  # one -inf per split
    x = raw["test"]["text"][1]
    kept = x[np.abs(x).sum(-1) > 0]
    n = data.test.lengths["text"][1]
    assert n == len(kept) and np.array_equal(data.test.features["text"][1, :n], kept)
    assert not data.test.features["text"][1, n:].any()
    np.testing.assert_array_equal(data.train.labels, raw["train"]["labels"].reshape(-1))
    assert data.train.ids[2] == "trainvid_2" and data.train.texts is None


def test_multibench_renamed_file_is_detected_by_content(tmp_path):
    path, _ = multibench_pickle(tmp_path / "my_copy.pkl")
    assert detect_format(path) == "multibench"


# ---- MMSA label.csv -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_label_csv():
    """The suite's own feature cache ($EDGE_MSA_CACHE, keyed by the texts, encoder files and cache version), as
    test_data_mosi_u's `mosi`: under private_cache every run encoded the 2195 transcripts with MiniLM again (15-20 s).
    Module-scoped, so it is set up before the autouse private_cache; the one test using it only reads it."""
    return load_dataset(LABEL_CSV, progress=False)


@needs_csv
@pytest.mark.slow
def test_label_csv_real_file_is_text_only(real_label_csv):
    data = real_label_csv
    assert data.info["sizes"] == {"train": 1281, "valid": 229, "test": 685}
    assert data.spec.dims == (384, 1, 1) and data.spec.front_ends[1:] == ("absent", "absent")
    assert (data.train.lengths["audio"] == 0).all() and (data.test.lengths["video"] == 0).all()
    assert data.train.ids[0] == "03bSnISJMiM_1" and data.train.texts[0] == "anyhow it was really good"


def test_label_csv_mmsa_columns_and_bad_mode(tmp_path):
    path = tmp_path / "label.csv"
    path.write_text("video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode\n"
                    "vidA,1,what a great film,2.4,,,,Positive,train\n"
                    "vidA,2,so boring,-1.8,,,,Negative,valid\n"
                    "vidB,1,it was ok,0.0,,,,Neutral,test\n"
                    "vidB,2,no score here,nan,,,,Neutral,test\n")
    data = load_dataset(path, progress=False)
    assert data.info["dropped_missing_labels"] == 1
    assert data.train.ids.tolist() == ["vidA_1"] and data.valid.labels.tolist() == [pytest.approx(-1.8)]
    path.write_text("id,text,label,mode\nv_1,hello there,1.0,holdout\n")
    with pytest.raises(InputError, match="mode 'holdout'; expected one of train, valid, dev, val, validation, test$"):
        load_dataset(path, progress=False)
    path.write_text("name,score\nx,1\n")
    with pytest.raises(InputError, match="not an MMSA label CSV"):
        load_dataset(path, progress=False)
    path.write_text('{"a": 1,\n"b": [1, 2]}\n')  # JSON: the 2nd line's extra value made a None column (TypeError)
    with pytest.raises(InputError, match="not an MMSA label CSV"):
        load_dataset(path, fmt="mmsa-label-csv", progress=False)
    path.write_text("\ufeffid,text,label,mode\nv_1,hello there,1.0,train\n", encoding="utf-8")  # spreadsheet BOM
    assert load_dataset(path, progress=False).train.ids.tolist() == ["v_1"]


def test_label_csv_short_row_names_its_line(tmp_path):
    path = tmp_path / "label.csv"
    path.write_text("video_id,clip_id,text,label,mode\nvidA,1,what a great film,2.4,train\nvidB,2,hello\n")
    message = one_line_error(lambda: load_dataset(path, progress=False))  # was AttributeError on None.strip()
    assert message == (f"{path} line 3: 3 fields; expected 5 (video_id,clip_id,text,label,mode)")


def test_label_csv_as_users_write_it(tmp_path):
    """A blank label was refused as "label '' is not a number" where the reader drops rows without a label (NaN
    was dropped); a quoted transcript over two lines shifted the line a later message named; a header without rows
    was "not an MMSA label CSV" while naming the right columns; HF-style mode 'validation' was refused."""
    path = tmp_path / "label.csv"
    path.write_text("video_id,clip_id,text,label,mode\nvidA,1,what a great film,2.4,Train\nvidA,2,so boring,,train\n"
                    "vidB,1,it was ok,0.5,validation\nvidB,2,\"one line\nand another\",-1,test\n", encoding="utf-8")
    data = load_dataset(path, progress=False)
    assert data.info["dropped_missing_labels"] == 1 and data.info["sizes"] == {"train": 1, "valid": 1, "test": 1}
    assert data.test.texts.tolist() == ["one line\nand another"]
    path.write_text(path.read_text() + "vidC,1,bad,positive,train\n")
    assert one_line_error(lambda: load_dataset(path, progress=False)) == (
        f"{path} line 7: label 'positive' is not a number; expected a sentiment score in [-3, 3] (a blank or NaN "
        "label drops the row)")
    path.write_text("id,text,label,mode\n")
    assert one_line_error(lambda: load_dataset(path, progress=False)) == (
        f"{path} has a header but no rows; expected one row per labelled transcript")
    path.write_text("")  # not even a header: csv read it after the file was closed (a ValueError traceback)
    assert one_line_error(lambda: load_dataset(path, fmt="mmsa-label-csv", progress=False)) == (
        f"{path} is not an MMSA label CSV: columns []; expected video_id,clip_id,text,label,mode or id,text,label,mode")


def test_label_csv_repeated_ids_are_named(tmp_path):
    """A file appended to itself, or a clip in train and test, was read without a word."""
    path = tmp_path / "label.csv"
    path.write_text("video_id,clip_id,text,label,mode\nvidA,1,great,2,train\nvidA,2,bad,-2,valid\n"
                    "vidA,1,great,2,test\nvidA,2,bad,-2,valid\nvidB,1,ok,0.5,train\n")
    with pytest.warns(UserWarning) as said:
        data = load_dataset(path, progress=False)
    assert [str(w.message) for w in said] == [
        f"{path}: 2 ids on more than one row (first: 'vidA_1'), 1 of them in more than one split; expected one row "
        "per clip (a repeat is trained on twice, and one in two splits scores the model on rows it trained on)"]
    assert data.info["sizes"] == {"train": 2, "valid": 2, "test": 1}


def test_label_csv_labels_outside_the_sentiment_range_are_refused(tmp_path):
    path = tmp_path / "label.csv"
    path.write_text("id,text,label,mode\nv_1,what a great film,40.0,train\nv_2,so boring,-1.8,valid\n"
                    "v_3,ok,3.0,test\n")
    message = one_line_error(lambda: load_dataset(path, progress=False))  # trained silently to an MAE of 24
    assert message.startswith(f"{path}: 1 of 3 labels lie outside [-3, 3] (first: 40 of 'v_1'); expected")


# ---- edge-msa-features npz ----------------------------------------------------------------------

def features_npz(path, **override):
    spec = FeatureSpec(dims=(384, 6, 4), max_lens=(50, 5, 3), front_ends=("minilm-l6-int8", "logmel-v1", "face-v1"))
    rng = np.random.default_rng(2)
    n = 5
    arrays = {"format": np.array("edge-msa-features-v1"), "feature_spec": np.array(json.dumps(spec.to_dict())),
              "id": np.array([f"clip{i}" for i in range(n)]), "label": rng.uniform(-3, 3, n).astype(np.float32),
              "split": np.array(["train", "train", "valid", "test", "test"]),
              "transcript": np.array(["don't forget a jacket", "a jacket", "", "forget it", "jacket"]),
              "audio_feat": rng.normal(size=(n, 5, 6)).astype(np.float32), "audio_len": np.array([5, 3, 2, 0, 1]),
              "video_feat": rng.normal(size=(n, 3, 4)).astype(np.float32), "video_len": np.array([3, 3, 0, 2, 1])}
    arrays.update(override)
    np.savez(path, **arrays)
    return path, arrays


def test_features_npz_round_trip_with_missing_text(tmp_path):
    path, raw = features_npz(tmp_path / "feats.npz")
    assert detect_format(path) == "edge-msa-features"
    data = load_dataset(path, progress=False)
    assert data.spec.front_ends == ("minilm-l6-int8", "logmel-v1", "face-v1")
    assert data.info["sizes"] == {"train": 2, "valid": 1, "test": 2} and data.info["missing_text"] == 1
    assert data.valid.lengths["text"].tolist() == [0] and not data.valid.features["text"].any()
    assert data.train.lengths["text"][0] > 3 and data.test.lengths["audio"].tolist() == [0, 1]
    np.testing.assert_array_equal(data.train.features["audio"][1, :3], raw["audio_feat"][1, :3])
    assert not data.train.features["audio"][1, 3:].any()  # zeroed after audio_len
    data.train.check_spec(data.spec)


@pytest.mark.parametrize("encoder", ["minilm", "token ids"])
def test_features_npz_without_any_transcript_has_the_text_encoders_width(encoder, tmp_path):
    """featurize without --text or a transcript column writes every transcript empty: the missing text was 384 wide
    (the file's spec) whatever the encoder, so `edge-msa train` (token ids, 1 wide) stopped at "text feature dim is
    384 in the data but the model expects 1"."""
    from edge_msa.features.text import TokenIds

    path, _ = features_npz(tmp_path / "notext.npz", transcript=np.array([""] * 5))
    front = TokenIds() if encoder == "token ids" else None
    data = load_dataset(path, progress=False, text_encoder=front)
    assert data.train.features["text"].shape == (2, 1, data.spec.dim("text")) and data.info["missing_text"] == 5
    assert data.spec.dim("text") == (1 if front else 384) and not data.train.lengths["text"].any()
    data.train.check_spec(data.spec)


def test_features_npz_errors(tmp_path):
    audio = np.ones((5, 5, 6), np.float32)
    audio[[0, 3], 1, 2] = np.nan
    path, _ = features_npz(tmp_path / "nan.npz", audio_feat=audio)
    with pytest.raises(InputError, match=re.escape(
            "nan.npz: audio_feat rows hold 2 of 150 values that are not finite (NaN or inf), the first at sample 0, "
            "step 1, feature 2; expected finite numbers") + "$"):
        load_dataset(path, progress=False)
    path, _ = features_npz(tmp_path / "dims.npz", video_feat=np.zeros((5, 3, 9), np.float32))
    with pytest.raises(InputError, match=r"video_feat \(5, 3, 9\).*expected \(5, L, 4\)"):
        load_dataset(path, progress=False)
    path, _ = features_npz(tmp_path / "split.npz", split=np.array(["train"] * 4 + ["holdout"]))
    with pytest.raises(InputError, match=r"split values \['holdout'\]"):
        load_dataset(path, fmt="edge-msa-features", progress=False)
    path, _ = features_npz(tmp_path / "range.npz", label=np.array([0, 1, 40, -1, 2], np.float32))  # was read as is
    with pytest.raises(InputError, match=r"range.npz: 1 of 5 labels lie outside \[-3, 3\] \(first: 40 of 'clip2'\)"):
        load_dataset(path, progress=False)


# ---- detection and one-line errors ---------------------------------------------------------------

def test_unknown_format_suggests_the_closest(tmp_path):
    """fmt= is read through spec.read_word, named as the keyword; in any case, as train's --data-format reads it."""
    with pytest.raises(InputError, match=r"^fmt = 'mosi_u' is unknown \(did you mean 'mosi-u'\?\); expected one of "):
        load_dataset(dump(tmp_path / "x.pkl", []), fmt="mosi_u")
    path, _ = features_npz(tmp_path / "f.npz")
    assert load_dataset(path, fmt="EDGE-MSA-Features", progress=False).info["format"] == "edge-msa-features"


def test_missing_and_undetectable_files(tmp_path):
    with pytest.raises(InputError, match="dataset not found: .*absent.npz; expected a dataset file or folder, one "
                       "of the formats mosi-u, misa,"):
        load_dataset(tmp_path / "absent.npz")
    with pytest.raises(InputError, match="label CSV not found: .*absent.csv; expected an MMSA label CSV with columns "
                       "video_id,clip_id,text,label,mode or id"):
        label_csv.read(tmp_path / "absent.csv")
    with pytest.raises(InputError, match=r"MOSI-U \(mosi_utterance_std\) file not found: .*absent.npz; expected a "):
        mosi_u.read(tmp_path / "absent.npz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="cannot tell the dataset format .*mosi-u:"):
        load_dataset(tmp_path / "notes.txt")
    np.savez(tmp_path / "other.npz", a=np.zeros(1))
    with pytest.raises(InputError, match="cannot tell the dataset format"):
        load_dataset(tmp_path / "other.npz")
    (tmp_path / "fake.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a .npz archive"):
        load_dataset(tmp_path / "fake.npz")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="cannot tell the dataset format of directory"):
        load_dataset(tmp_path / "empty_dir")



def test_extensions_are_detected_in_any_case(tmp_path):
    """`LABEL.CSV` or `FEATS.NPZ` (a copy from a Windows tool) were undetectable: the user was told to
    pass --data-format for a file whose format the extension names."""
    (tmp_path / "LABEL.CSV").write_text("video_id,clip_id,text,label,mode\nv,0,good,1,train\n")
    assert detect_format(tmp_path / "LABEL.CSV") == "mmsa-label-csv"
    path, _ = features_npz(tmp_path / "feats.npz")  # np.savez would append .npz to another case
    assert detect_format(path.rename(tmp_path / "FEATS.NPZ")) == "edge-msa-features"
    path, _ = multibench_pickle(tmp_path / "copy.pkl")
    assert detect_format(path.rename(tmp_path / "Copy.Pkl")) == "multibench"

@needs_misa
def test_misa_file_claimed_as_mosi_u_is_an_error(tmp_path):
    copy = shutil.copy(MISA_DEV, tmp_path / "dev.pkl")
    with pytest.raises(ArtifactError, match="not a readable MOSI-U"):
        load_dataset(copy, fmt="mosi-u", progress=False)


def test_training_data_that_is_not_finite_is_counted_and_placed_as_predict_input_is():
    """A FeatureSet (what every reader hands the trainer) holding NaN or inf said "audio features contain NaN/Inf in
    1 samples" and its labels "contain NaN/Inf", in words of their own, neither placing the first: the one wording of
    predict's features (spec.check_finite), placed by sample, step and feature."""
    from dataclasses import replace

    from conftest import make_featureset
    from edge_msa.spec import FeatureSpec

    data = make_featureset(FeatureSpec(dims=(4, 3, 2), max_lens=(2, 2, 2)), 5)
    audio, labels = data.features["audio"].copy(), data.labels.copy()
    audio[3, 1, 2], labels[4] = np.nan, np.inf
    assert one_line_error(lambda: replace(data, features={**data.features, "audio": audio})) == (
        "audio features hold 1 of 30 values that are not finite (NaN or inf), the first at sample 3, step 1, "
        "feature 2; expected finite numbers (clean or drop those rows before training)")
    assert one_line_error(lambda: replace(data, labels=labels)) == (
        "labels hold 1 of 5 values that are not finite (NaN or inf), the first at sample 4; expected finite "
        "sentiment scores in [-3, 3]")
