"""`featurize` / `edge-msa featurize`: raw clips + labels CSV -> the edge-msa-features-v1 npz."""
from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA_ROOT
from edge_msa.cli import main
from edge_msa.data.features_npz import FORMAT_TAG
from edge_msa.errors import InputError
from edge_msa.features.audio import AudioFrontEnd
from edge_msa.features.featurize import check_out, featurize, parse_label_map
from edge_msa.spec import FeatureSpec
from test_features_audio import silent_avi

sf = pytest.importorskip("soundfile", reason="soundfile is a core dependency of the audio front end")
CREMAD = DATA_ROOT / "raw_av" / "cremad"
needs_cremad = pytest.mark.skipif(not (CREMAD / "label.csv").is_file(), reason=f"CREMA-D clips not found at {CREMAD}")
pytestmark = pytest.mark.filterwarnings("ignore:split .* holds:UserWarning")  # most tests featurize 3 or 4 clips
KEYS = {"format", "feature_spec", "id", "label", "split", "transcript", "audio_feat", "audio_len", "video_feat",
        "video_len"}


def make_clips(root, n: int, speakers: int | None = None, extra_cols: str = "") -> tuple:
    """n short WAVs under root/clips/sub/ and a labels CSV with numeric labels (and speakers)."""
    sub = root / "clips" / "sub"
    sub.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["id,label" + (",speaker" if speakers else "") + extra_cols]
    for i in range(n):
        sf.write(sub / f"u{i}.wav", (0.1 * rng.normal(size=8000)).astype(np.float32), 8000)  # 1 s
        lines.append(f"u{i},{i / n - 0.5:.3f}" + (f",s{i % speakers}" if speakers else ""))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "clips", root / "labels.csv"


def load(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def cremad_npz(tmp_path_factory):
    if not (CREMAD / "label.csv").is_file():
        pytest.skip(f"CREMA-D clips not found at {CREMAD}")
    timings: dict = {}
    out = tmp_path_factory.mktemp("cremad") / "cremad.npz"
    with pytest.warns(UserWarning) as caught:
        featurize(CREMAD, CREMAD / "label.csv", out, label_map="cremad", progress=False, timings=timings)
    messages = " | ".join(str(w.message) for w in caught)
    assert "extra1, extra2" in messages and "only 2 speakers;" in messages  # no media; 2 speakers -> by utterance
    return load(out), timings


@needs_cremad
@pytest.mark.slow
def test_real_cremad_npz_has_12_clips_6_videos_and_mapped_labels(cremad_npz):
    z, timings = cremad_npz
    assert set(z) == KEYS and str(z["format"]) == FORMAT_TAG
    spec = FeatureSpec.from_dict(json.loads(str(z["feature_spec"])))
    assert spec.front_ends == ("minilm-l6-int8", "logmel-v1", "face-v1") and spec.dims == (384, 56, 105)
    ids = z["id"].tolist()
    assert len(ids) == 12 and "extra1" not in ids and "extra2" not in ids
    assert z["audio_feat"].shape == (12, spec.max_len("audio"), 56) and z["video_feat"].shape == (12, 16, 105)
    assert (z["audio_len"] > 0).all()
    has_video = {i for i, n in zip(ids, z["video_len"]) if n > 0}
    assert has_video == {i for i in ids if i.startswith("1001_")}  # only speaker 1001 has FLVs
    expected = {"HAP": 1.0, "NEU": 0.0, "ANG": -1.0, "DIS": -1.0, "FEA": -1.0, "SAD": -1.0}
    assert z["label"].tolist() == [expected[i.split("_")[2]] for i in ids]
    assert set(z["transcript"].tolist()) == {"Don't forget a jacket"}
    assert {s: int((z["split"] == s).sum()) > 0 for s in ("train", "valid", "test")} == dict.fromkeys(
        ("train", "valid", "test"), True)
    for m in ("audio", "video"):
        x, n = z[f"{m}_feat"], z[f"{m}_len"]
        assert np.isfinite(x).all() and not x[np.arange(x.shape[1])[None, :] >= n[:, None]].any()  # zero padding
    assert len(timings["audio"]) == 12 and len(timings["video"]) == 6
    assert all(t["detect"] > 0 for t in timings["video"])


@needs_cremad
@pytest.mark.slow
def test_real_cremad_npz_loads_through_the_dataset_reader(cremad_npz, tmp_path, monkeypatch):
    loader = pytest.importorskip("edge_msa.data.loader", reason="the dataset reader is another area's module")
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))
    z, _ = cremad_npz
    path = tmp_path / "c.npz"
    np.savez(path, **z)
    splits = loader.load_dataset(path, progress=False)
    assert len(splits.train) + len(splits.valid) + len(splits.test) == 12
    assert (splits.train.lengths["text"] > 0).all()


def test_speaker_disjoint_splits_and_determinism(tmp_path):
    clips, labels = make_clips(tmp_path, 12, speakers=4)
    a = featurize(clips, labels, tmp_path / "a.npz", text="hello there", progress=False, seed=3)
    b = featurize(clips, labels, tmp_path / "b.npz", text="hello there", progress=False, seed=3)
    za, zb = load(a), load(b)
    assert za["split"].tolist() == zb["split"].tolist()
    speaker = {f"u{i}": f"s{i % 4}" for i in range(12)}
    per_split = {s: {speaker[i] for i in za["id"][za["split"] == s]} for s in ("train", "valid", "test")}
    assert all(per_split.values())
    assert not (per_split["train"] & per_split["valid"] or per_split["train"] & per_split["test"]
                or per_split["valid"] & per_split["test"])
    np.testing.assert_allclose(za["label"], [i / 12 - 0.5 for i in range(12)], atol=1e-3)
    assert (za["video_len"] == 0).all() and (za["audio_len"] > 0).all()  # no video files -> length 0


def test_written_keys_are_the_format_contract_the_reader_checks(tmp_path):
    from edge_msa import featurized_format
    from edge_msa.data import features_npz

    clips, labels = make_clips(tmp_path, 3)
    z = load(featurize(clips, labels, tmp_path / "k.npz", text="hi", progress=False))
    assert set(z) == set(featurized_format.KEYS) and str(z["format"]) == featurized_format.FORMAT_TAG
    assert (features_npz.KEYS, features_npz.FORMAT_TAG) == (featurized_format.KEYS, featurized_format.FORMAT_TAG)

def test_splits_too_small_to_train_on_are_warned_about(tmp_path):
    """3 clips split 1 / 1 / 1, which `edge-msa train` then refused (a split's metrics need 2 scores); so is a split
    whose labels are all 0 (Acc-2 non-0 is undefined). The rule is the one train applies (metrics.SPLIT_RULE)."""
    clips, labels = make_clips(tmp_path, 3)
    with pytest.warns(UserWarning, match=r"^split 'valid' of .*a\.npz holds 1 labelled row; edge-msa train and "
                                         r"compress expect at least 2 in each of train, valid and test, not all "
                                         r"labelled 0: add clips, or raise --valid-frac / --test-frac$"):
        featurize(clips, labels, tmp_path / "a.npz", text="x", progress=False)
    labels.write_text("id,label\n" + "".join(f"u{i},1\n" for i in range(3)) + "".join(f"v{i},-1\n" for i in range(9)))
    for i in range(9):
        (clips / "sub" / f"v{i}.wav").write_bytes((clips / "sub" / "u0.wav").read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        featurize(clips, labels, tmp_path / "c.npz", text="x", progress=False)  # 12 clips: 8 / 2 / 2
    assert not [w for w in caught if "holds" in str(w.message)]
    labels.write_text("id,label\n" + "".join(f"u{i},0\n" for i in range(3)) + "".join(f"v{i},0\n" for i in range(9)))
    with pytest.warns(UserWarning, match=r"^split 'train' of .*d\.npz holds 8 labelled rows, all 0;"):
        featurize(clips, labels, tmp_path / "d.npz", text="x", progress=False)


def test_the_split_warning_and_the_training_error_state_one_finding():
    """featurize warns of the splits that train will refuse with an error: both name them from one loop
    (metrics.short_splits), so the warning cannot drift from the rule train applies."""
    from edge_msa.data.base import require_split_rows
    from edge_msa.metrics import untrainable_splits

    labels = {"train": np.ones(4), "valid": np.ones(1), "test": np.zeros(3)}
    warned = untrainable_splits(labels, "d.npz", "add clips")
    assert [line.split(";")[0] for line in warned] == ["split 'valid' of d.npz holds 1 labelled row",
                                                       "split 'test' of d.npz holds 3 labelled rows, all 0"]
    with pytest.raises(InputError) as info:
        require_split_rows(labels, "d.npz", "speaker")
    assert str(info.value) == (f"{warned[0].split(';')[0]}; expected at least 2 in each of train, valid and test, "
                               "not all labelled 0 (split by: speaker)")


def test_text_column_and_missing_transcripts(tmp_path):
    clips, labels = make_clips(tmp_path, 4)
    labels.write_text("name,label,text\nu0,1,good\nu1,0,\nu2,-1,bad\nu3,0.5,fine\n")
    with pytest.warns(UserWarning, match="no transcript for 1 of 4"):
        out = featurize(clips, labels, tmp_path / "t.npz", progress=False)
    assert load(out)["transcript"].tolist() == ["good", "", "bad", "fine"]


def test_labels_csv_from_a_spreadsheet_reads_as_written(tmp_path):
    """A byte-order mark, CRLF line ends, blank lines at the end and quoted values holding commas, quotes or a line
    break are all read as the values they hold."""
    clips, labels = make_clips(tmp_path, 3)
    labels.write_bytes(b'\xef\xbb\xbfID,Label,Text\r\nu0,1,"hi, there"\r\n"u1","0","say ""no"""\r\n'
                       b'u2,-1,"two\r\nlines"\r\n\r\n\r\n')
    z = load(featurize(clips, labels, tmp_path / "x.npz", progress=False))
    assert z["id"].tolist() == ["u0", "u1", "u2"] and z["label"].tolist() == [1, 0, -1]
    assert z["transcript"].tolist() == ["hi, there", 'say "no"', "two\r\nlines"]
    labels.write_text("id,label,text\nu0,1,a\nu1,0\nu2,-1,c\n")  # a trailing empty cell left out
    with pytest.warns(UserWarning, match="no transcript for 1 of 3"):
        z = load(featurize(clips, labels, tmp_path / "x.npz", progress=False))
    assert z["transcript"].tolist() == ["a", "", "c"]


@pytest.mark.parametrize("rows, message", [
    ('u0,1,"hi"\nu1,0,hi, there\n', r"labels.csv line 3: 4 values; expected 3 \(id,label,text\): put a value that "
                                     r"holds a comma in quotes$"),  # "there" was dropped without a word
    ('u0,1,"hi\nu1,0,a\n', r"cannot read CSV .*labels.csv from line 2: unexpected end of data; expected comma-"
                           r"separated values, each quote closed"),  # u1 and u2 vanished into u0's transcript
    ('u0,1,"hi"x\nu1,0,a\n', r"cannot read CSV .*labels.csv from line 2: ',' expected after '\"'"),
    ('u0,1,"hi"\nu1\n', r"labels.csv line 3: 1 value; expected 3 \(id,label,text\): the row ends before its 'label' "
                        r"value$"),  # read "label of 'u1' is empty"
    ("u0,1,a\nu1,0,b\nu1,1,c\n", r"labels.csv: id 'u1' appears twice; expected one row per utterance$"),
    ("u0,1,a\nu1,0,b\nu1.wav,1,c\n", r"ids 'u1' and 'u1.wav' both match sub/u1.wav under .*clips; expected one "
                                    r"row per clip"),  # one clip, two labels, in two splits
    ("u0,1,a\nu1,3.5,b\n", r"labels.csv: 1 of 3 labels lie outside \[-3, 3\] \(first: 3.5 of 'u1'\)"),
], ids=["unquoted-comma", "unclosed-quote", "text-after-quote", "short-row", "duplicate-id", "one-file-two-ids",
        "label-out-of-range"])
def test_a_malformed_labels_csv_is_one_line_and_nothing_is_written(tmp_path, capsys, rows, message):
    clips, labels = make_clips(tmp_path, 3)
    labels.write_text("id,label,text\n" + rows + "u2,-1,c\n")
    out = tmp_path / "x.npz"
    assert main(["featurize", str(clips), "--labels", str(labels), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and re.match(f"error: .*{message}", err[0]) and not out.exists()


def test_a_column_named_twice_or_no_rows_is_refused(tmp_path):
    """label,Label: the rows kept the last column's value without a word; a header alone read "only 0 of 0 labelled
    ids with media under clips", and a folder "CSV file not found"."""
    clips, labels = make_clips(tmp_path, 3)
    labels.write_text("id,label,Label\nu0,1,-1\nu1,0,0\nu2,-1,1\n")
    with pytest.raises(InputError, match=r"labels.csv has the column 'label' twice \(column names ignore case\); "
                                         r"expected each column once$"):
        featurize(clips, labels, tmp_path / "x.npz", text="x", progress=False)
    labels.write_text("id,label\n\n")
    with pytest.raises(InputError, match=r"labels.csv has no row with an id; expected one row per labelled clip$"):
        featurize(clips, labels, tmp_path / "x.npz", text="x", progress=False)
    with pytest.raises(InputError, match=r"^CSV file .*clips is a folder; expected a CSV with a header and an id"):
        featurize(clips, clips, tmp_path / "x.npz", text="x", progress=False)


def test_transcript_csv_beside_labels_and_ids_with_extensions(tmp_path):
    clips, labels = make_clips(tmp_path, 3)
    labels.write_text("file,label\nu0.wav,1\nu1.WAV,0\nu2,-1\n")
    (tmp_path / "transcript.csv").write_text("id,transcript\nu0.wav,a\nu1.WAV,b\nu2,c\n")
    z = load(featurize(clips, labels, tmp_path / "t.npz", progress=False))
    assert z["transcript"].tolist() == ["a", "b", "c"] and z["id"].tolist() == ["u0.wav", "u1.WAV", "u2"]
    assert (z["audio_len"] > 0).all()


def test_side_tables_match_ids_as_the_labels_csv_does(tmp_path):
    """transcript.csv / speaker.csv ids had to equal the labels CSV's exactly: 'u0.wav' there and 'u0' in the labels
    CSV lost the transcript (a warning) and the speaker (splits by utterance, without a word)."""
    clips, labels = make_clips(tmp_path, 12)
    (tmp_path / "transcript.csv").write_text("id,transcript\n" + "".join(f"u{i}.wav,t{i}\n" for i in range(12)))
    (tmp_path / "speaker.csv").write_text("id,speaker\n" + "".join(f"u{i}.WAV,s{i % 4}\n" for i in range(12)))
    z = load(featurize(clips, labels, tmp_path / "t.npz", progress=False))
    assert z["transcript"].tolist() == [f"t{i}" for i in range(12)]
    per_split = {s: {f"s{int(i[1:]) % 4}" for i in z["id"][z["split"] == s]} for s in ("train", "valid", "test")}
    assert sum(map(len, per_split.values())) == 4  # no speaker in two splits
    (tmp_path / "transcript.csv").write_text("id,transcript\nu0,a\nu0.wav,b\n")
    with pytest.raises(InputError, match=r"transcript.csv: ids 'u0' and 'u0.wav' name one utterance; expected one "
                                         r"row per utterance$"):
        featurize(clips, labels, tmp_path / "t.npz", progress=False)


def test_unreadable_media_becomes_a_missing_modality(tmp_path):
    clips, labels = make_clips(tmp_path, 4)
    (clips / "sub" / "u1.wav").write_bytes(b"not audio")
    (clips / "u2.mp4").write_bytes(b"not video")
    with pytest.warns(UserWarning) as caught:
        out = featurize(clips, labels, tmp_path / "m.npz", text="x", progress=False)
    messages = " | ".join(str(w.message) for w in caught)
    assert "u1: audio left out: cannot read audio" in messages and "u2: video left out: cannot read media" in messages
    z = load(out)
    assert z["audio_len"].tolist() == [50, 0, 50, 50] and z["video_len"].tolist() == [0, 0, 0, 0]


def test_an_utterance_left_with_no_input_is_dropped(tmp_path):
    """No transcript and an unreadable clip: the row was written with every modality missing, a label for nothing."""
    clips, labels = make_clips(tmp_path, 4)
    (clips / "sub" / "u1.wav").write_bytes(b"not audio")
    labels.write_text("id,label,text\nu0,1,\nu1,0,\nu2,-1,hello\nu3,0.5,\n")
    (clips / "sub" / "u2.wav").write_bytes(b"not audio either")  # but u2 has its transcript: kept, text only
    with pytest.warns(UserWarning) as caught:
        z = load(featurize(clips, labels, tmp_path / "d.npz", progress=False))
    assert "dropping 1 utterance with no transcript whose media could not be read: u1" in [
        str(w.message) for w in caught]
    assert z["id"].tolist() == ["u0", "u2", "u3"] and z["audio_len"].tolist() == [50, 0, 50]
    assert z["split"].shape == z["label"].shape == (3,) and z["audio_feat"].shape[0] == z["video_feat"].shape[0] == 3


def test_a_split_left_short_by_dropped_rows_is_warned_about_once(tmp_path):
    """The split warnings were told before extraction, from every row: a valid split of 2 that a dropped row (no
    transcript, unreadable clip) left with 1 was written without a word. They are told from the rows written now."""
    clips, labels = make_clips(tmp_path, 12)  # no transcripts: a row is dropped when its clip cannot be read
    with pytest.warns(UserWarning, match="no transcript"):
        valid = load(featurize(clips, labels, tmp_path / "a.npz", progress=False))["split"] == "valid"  # 8 / 2 / 2
    (clips / "sub" / f"u{valid.argmax()}.wav").write_bytes(b"not audio")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        featurize(clips, labels, tmp_path / "b.npz", progress=False)
    assert [str(w.message).split(";")[0] for w in caught if " holds " in str(w.message)] == [
        f"split 'valid' of {tmp_path / 'b.npz'} holds 1 labelled row"]


def test_media_longer_than_max_media_s_is_left_out_and_counted(tmp_path, capsys):
    """featurize decoded every file whole, a 2-hour recording too (minutes and GBs, pooled into one row), while
    predict and serve refuse media over 30 s from its header: featurize now refuses it the same way (the one limit,
    --max-media-s), leaves it out like an unreadable file, with a warning, and counts it on the last line."""
    from edge_msa.features import MAX_MEDIA_SECONDS

    clips, labels = make_clips(tmp_path, 4)
    sf.write(clips / "sub" / "u1.wav", np.zeros(int(1000 * (MAX_MEDIA_SECONDS + 1)), np.float32), 1000)
    args = ["featurize", str(clips), "--labels", str(labels), "--text", "x", "--out"]
    assert main([*args, str(tmp_path / "a.npz")]) == 0
    out, err = capsys.readouterr()
    assert f"warning: u1: audio left out: audio {clips / 'sub' / 'u1.wav'} lasts 31.0 s; expected at most 30 s" in err
    assert out.endswith("; 1 clip over 30 s left out (--max-media-s)\n")
    assert load(tmp_path / "a.npz")["audio_len"].tolist() == [50, 0, 50, 50]  # kept: its transcript is its input
    assert main([*args, str(tmp_path / "b.npz"), "--max-media-s", "inf"]) == 0
    assert load(tmp_path / "b.npz")["audio_len"].tolist() == [50] * 4 and "left out" not in capsys.readouterr().out
    assert main([*args, str(tmp_path / "c.npz"), "--max-media-s", "0"]) == 2
    out, err = capsys.readouterr()
    assert err == "error: --max-media-s 0; expected > 0 (inf: no limit)\n"  # the flag and value typed (not 0.0)
    assert not (tmp_path / "c.npz").exists()
    assert main([*args, str(tmp_path / "d.npz"), "--max-media-s", "30.0000001"]) == 0  # read as given, not as 30
    out, err = capsys.readouterr()
    assert "u1.wav lasts 31.0 s; expected at most 30.0000001 s" in err
    assert out.endswith("; 1 clip over 30.0000001 s left out (--max-media-s)\n")


def test_clips_without_a_label_row_are_counted_in_a_warning(tmp_path):
    """They were left out without a word: a labels CSV of one split, or ids that differ from the file names."""
    clips, labels = make_clips(tmp_path, 9)
    labels.write_text("id,label\nu0,1\nu1,0\nu2,-1\n")
    with pytest.warns(UserWarning, match=r"^leaving out 6 media file names under .*clips with no row in the labels "
                                         r"CSV: u3, u4, u5, u6, u7 \.\.\.$"):
        z = load(featurize(clips, labels, tmp_path / "l.npz", text="x", progress=False))
    assert z["id"].tolist() == ["u0", "u1", "u2"]


def test_label_maps():
    assert parse_label_map("HAP=1, neu=0,ANG=-1.5") == {"hap": 1.0, "neu": 0.0, "ang": -1.5}
    cremad = parse_label_map("cremad")
    assert cremad["happiness"] == 1.0 and cremad["neu"] == 0.0 and cremad["sadness"] == -1.0
    for bad in ("HAP", "HAP=x", "=1", " , "):
        with pytest.raises(InputError):
            parse_label_map(bad)
    for bad in ("HAP=nan,NEU=0", "HAP=inf", {"hap": float("nan")}):  # float() read these: NaN labels were written
        with pytest.raises(InputError, match="is not a finite number"):
            parse_label_map(bad)


def test_categorical_labels_need_a_map(tmp_path):
    clips, labels = make_clips(tmp_path, 3)
    labels.write_text("id,label\nu0,POS\nu1,NEG\nu2,NEU\n")
    with pytest.raises(InputError, match="--label-map"):
        featurize(clips, labels, tmp_path / "x.npz", text="x", progress=False)
    with pytest.raises(InputError, match=r"add 'NEU' to the label map \(it maps neg, pos\)$"):  # a preset's too
        featurize(clips, labels, tmp_path / "x.npz", text="x", label_map="POS=1,NEG=-1", progress=False)
    assert not (tmp_path / "x.npz").exists()
    out = featurize(clips, labels, tmp_path / "x.npz", text="x", label_map="POS=1,NEG=-1,NEU=0", progress=False)
    assert load(out)["label"].tolist() == [1.0, -1.0, 0.0]
    labels.write_text("id,label\nu0,POS\nu1,\nu2,NEU\n")  # an empty cell was told to add '' to the map
    with pytest.raises(InputError, match=r"^label of 'u1' is empty; expected a sentiment score or a category of the "
                                         r"label map \(or remove the row to leave the clip out\)$"):
        featurize(clips, labels, tmp_path / "x.npz", text="x", label_map="POS=1,NEU=0", progress=False)
    labels.write_text("id,label\nu0,1\nu1\nu2,0\n")  # a short row: no label cell at all, named by its line
    with pytest.raises(InputError, match=r"labels.csv line 3: 1 value; expected 2 \(id,label\): the row ends before "
                                         r"its 'label' value$"):
        featurize(clips, labels, tmp_path / "x.npz", text="x", progress=False)


def test_bad_featurize_inputs(tmp_path):
    clips, labels = make_clips(tmp_path, 2)
    with pytest.raises(InputError, match="at least 3"):
        featurize(clips, labels, tmp_path / "x.npz", text="x", progress=False)
    with pytest.raises(InputError, match="clips directory not found"):
        featurize(tmp_path / "nope", labels, tmp_path / "x.npz", progress=False)
    with pytest.raises(InputError, match="CSV file not found: .*nope.csv; expected a CSV with a header and an id "
                       "column \\(id, name,"):
        featurize(clips, tmp_path / "nope.csv", tmp_path / "x.npz", progress=False)
    (tmp_path / "nolabel.csv").write_text("id,score\nu0,1\n")
    with pytest.raises(InputError, match="expected label"):
        featurize(clips, tmp_path / "nolabel.csv", tmp_path / "x.npz", progress=False)
    (tmp_path / "dup.csv").write_text("id,label\nu0,1\nu0,2\n")
    with pytest.raises(InputError, match="appears twice"):
        featurize(clips, tmp_path / "dup.csv", tmp_path / "x.npz", progress=False)
    with pytest.raises(InputError, match=r"^valid_frac = 0.6 and test_frac = 0.5; expected each in \(0, 1\)"):
        featurize(clips, labels, tmp_path / "x.npz", valid_frac=0.6, test_frac=0.5, progress=False)
    assert not (tmp_path / "x.npz").exists()
    with pytest.raises(InputError, match="^seed = -1; expected 0 <= seed <= 4294967295$"):  # was numpy's ValueError traceback
        featurize(clips, labels, tmp_path / "x.npz", seed=-1, progress=False)
    with pytest.raises(InputError, match="clips directory is a file: .*u0.wav; expected a folder"):
        featurize(clips / "sub" / "u0.wav", labels, tmp_path / "x.npz", progress=False)


def test_out_must_be_an_npz_file_path_checked_before_any_clip(tmp_path, monkeypatch):
    """A folder as --out failed with an IsADirectoryError traceback after every clip was featurized; a name without
    .npz wrote a dataset that load_dataset cannot tell the format of."""
    clips, labels = make_clips(tmp_path, 3)
    monkeypatch.setattr("edge_msa.features.featurize.extract_all", lambda *a: pytest.fail("featurized first"))
    (tmp_path / "folder.npz").mkdir()
    for out, message in ((tmp_path / "folder.npz", "is a folder; expected the path of the file to write"),
                         (tmp_path / "data", "does not end in .npz")):
        with pytest.raises(InputError, match=message):
            featurize(clips, labels, out, text="x", progress=False)
    assert not (tmp_path / "data").exists() and not any((tmp_path / "folder.npz").iterdir())
    check_out(tmp_path / "data.NPZ")  # any case, as load_dataset tells an .npz: it was refused as not ending in .npz


def test_labels_outside_the_sentiment_range_are_refused_before_any_clip(tmp_path, monkeypatch):
    """1-5 ratings were written as they were, and trained without a word to a model whose scores stop at +-3."""
    clips, labels = make_clips(tmp_path, 3)
    labels.write_text("id,label\nu0,1\nu1,5\nu2,3\n")
    monkeypatch.setattr("edge_msa.features.featurize.extract_all", lambda *a: pytest.fail("featurized first"))
    with pytest.raises(InputError, match=r"labels.csv: 1 of 3 labels lie outside \[-3, 3\] \(first: 5 of 'u1'\); "
                                         r"expected .*map each value to a score with --label-map"):
        featurize(clips, labels, tmp_path / "x.npz", text="x", progress=False)
    assert not (tmp_path / "x.npz").exists()
    monkeypatch.undo()
    out = featurize(clips, labels, tmp_path / "x.npz", text="x", label_map="1=-3,3=0,5=3", progress=False)
    assert load(out)["label"].tolist() == [-3.0, 3.0, 0.0]


def test_one_name_in_two_subfolders_is_refused_before_any_clip(tmp_path, monkeypatch):
    """clips/train/x.wav and clips/dev/x.wav (datasets that reuse names per split): the label went silently to the
    copy whose path sorted first, here the other split's clip."""
    clips, labels = make_clips(tmp_path, 3)
    (clips / "dev").mkdir()
    sf.write(clips / "dev" / "u1.wav", np.zeros(8000, np.float32), 8000)
    (clips / "u2.flac").write_bytes((clips / "sub" / "u2.wav").read_bytes())  # another extension: the .wav wins
    monkeypatch.setattr("edge_msa.features.featurize.extract_all", lambda *a: pytest.fail("featurized first"))
    with pytest.raises(InputError, match=r"two or more files of one kind under .*clips match 1 labelled id, e.g. "
                                         r"'u1': dev/u1.wav and sub/u1.wav; expected at most one audio and one video "
                                         r"file per id: write the id with its folder \(e.g. 'dev/u1'\), pass the"):
        featurize(clips, labels, tmp_path / "x.npz", text="x", progress=False)
    monkeypatch.undo()
    z = load(featurize(clips / "sub", labels, tmp_path / "x.npz", text="x", progress=False))
    assert z["id"].tolist() == ["u0", "u1", "u2"] and (z["audio_len"] > 0).all()


def test_ids_with_folders_match_the_files_in_those_folders(tmp_path):
    """a/u1.wav and b/u1.wav (names reused per speaker or session): an id 'a/u1' matched no file, and 'a/u9.wav' was
    matched by its stem alone, so it took b/u9.wav, another speaker's clip, without a word."""
    clips, _ = make_clips(tmp_path, 3)
    for folder, names in {"a": ["u0", "u1"], "b": ["u1", "u9"], "b/x": ["u2"]}.items():
        (clips / folder).mkdir(parents=True)
        for k, name in enumerate(names):
            sf.write(clips / folder / f"{name}.wav", np.full(8000, 0.01 * (k + 1), np.float32), 8000)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\na/u0,1\nb/u1.wav,0\na\\u1,-1\nx/u2,2\nsub/u2,0\na/u9.wav,1\n")
    with pytest.warns(UserWarning) as caught:
        z = load(featurize(clips, labels, tmp_path / "x.npz", text="x", progress=False))
    assert z["id"].tolist() == ["a/u0", "b/u1.wav", "a\\u1", "x/u2", "sub/u2"]
    for utt, feats, n in zip(z["id"], z["audio_feat"], z["audio_len"]):
        folder, name = utt.replace("\\", "/").removesuffix(".wav").split("/")
        own = AudioFrontEnd()(clips / ("b/x" if folder == "x" else folder) / f"{name}.wav")
        np.testing.assert_allclose(feats[:n], own, atol=1e-6)
    skipped, unlabelled = [str(w.message).split(": ", 1)[1] for w in caught if "with no" in str(w.message)]
    assert skipped == "a/u9.wav" and unlabelled == "sub/u0, sub/u1, u9"  # named as files, where a stem is matched


def test_too_few_matches_say_what_the_clips_folder_holds(tmp_path):
    clips, labels = make_clips(tmp_path, 3)
    labels.write_text("id,label\nclip_000,1\nclip_001,0\nclip_002,-1\n")
    with pytest.raises(InputError, match=r"^only 0 of 3 labelled ids with media under .*clips \(media file names, "
                                         r"e.g. 'u0', must equal the ids, e.g. 'clip_000'\); expected at least 3"), \
            pytest.warns(UserWarning) as caught:
        featurize(clips, labels, tmp_path / "x.npz", text="x", progress=False)
    assert [str(w.message).split(" under ")[0] for w in caught] == [
        "skipping 3 labelled ids with no audio/video file", "leaving out 3 media file names"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"with media under .*empty \(it holds no .wav/.flac/.*/.mpeg files\)"), \
            pytest.warns(UserWarning, match="skipping 3 labelled ids "):
        featurize(tmp_path / "empty", labels, tmp_path / "x.npz", text="x", progress=False)


def test_cli_featurize_prints_the_warnings_before_an_error(tmp_path, capsys):
    """The warnings were held back for the progress bar and then dropped when featurize failed, so the skipped ids
    that explain the error were never shown."""
    clips, labels = make_clips(tmp_path, 3)
    labels.write_text("id,label\nu0,POS\nu1,NEG\nu2,JOY\nu9,POS\n")
    assert main(["featurize", str(clips), "--labels", str(labels), "--out", str(tmp_path / "x.npz"), "--text", "x",
                 "--label-map", "POS=1,NEG=-1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"warning: skipping 1 labelled id with no audio/video file under {clips}: u9",
        "error: label 'JOY' of 'u2' is not a number; add 'JOY' to the label map (it maps neg, pos)"]


def test_cli_featurize_writes_npz_and_reports_errors(tmp_path, capsys):
    clips, labels = make_clips(tmp_path, 3)
    out = tmp_path / "cli.npz"
    assert main(["featurize", str(clips), "--labels", str(labels), "--out", str(out), "--text", "hi",
                 "--quiet"]) == 0
    assert load(out)["id"].tolist() == ["u0", "u1", "u2"]
    assert main(["featurize", str(tmp_path / "nope"), "--labels", str(labels), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: clips directory not found")


@pytest.mark.parametrize("flags, says", [(["--valid-frac", "nan"], "--valid-frac nan and --test-frac 0.15; expected "
                                                                    "each in (0, 1) with a sum < 1"),
                                         (["--seed", "-1"], "--seed -1; expected 0 <= seed <= 4294967295")])
def test_cli_featurize_names_its_flags_and_python_its_keywords(flags, says, tmp_path, capsys):
    """`--valid-frac nan` was refused as `valid_frac=nan` (the keyword) and featurize(seed=-1) as `--seed -1` (the
    flag): each side is told the names it used (errors.named_as_flags, cli.featurize.FEATURIZE_KNOBS)."""
    clips, labels = make_clips(tmp_path, 3)
    assert main(["featurize", str(clips), "--labels", str(labels), "--out", str(tmp_path / "x.npz"), *flags]) == 2
    assert capsys.readouterr().err.startswith(f"error: {says}")
    assert not (tmp_path / "x.npz").exists()


def three_cremad_videos(tmp_path: Path) -> tuple[Path, list[str]]:
    """A clips folder holding three real CREMA-D FLVs (videos with an audio track), and their ids."""
    clips = tmp_path / "clips"
    clips.mkdir()
    names = ["1001_DFA_HAP_XX", "1001_DFA_NEU_XX", "1001_DFA_SAD_XX"]
    for name in names:
        (clips / f"{name}.flv").write_bytes((CREMAD / "data" / f"{name}.flv").read_bytes())
    return clips, names


@needs_cremad
def test_video_only_clips_take_audio_from_the_container(tmp_path, capsys):
    pytest.importorskip("av", reason="PyAV decodes the FLVs' audio tracks (pip install 'edge-msa[media]')")
    clips, names = three_cremad_videos(tmp_path)
    (tmp_path / "labels.csv").write_text("id,label\n" + "".join(f"{n},{s}\n" for n, s in zip(names, (1, 0, -1))))
    z = load(featurize(clips, tmp_path / "labels.csv", tmp_path / "f.npz", text="Don't forget a jacket"))
    assert "audio from video container for 3 clips" in capsys.readouterr().err
    assert (z["audio_len"] == 50).all() and (z["video_len"] > 0).all()
    np.testing.assert_allclose(z["audio_feat"][2], AudioFrontEnd()(clips / f"{names[2]}.flv"), atol=1e-5)


def test_separate_audio_file_wins_and_a_silent_video_has_no_audio(tmp_path):
    pytest.importorskip("av", reason="PyAV reads the video containers (pip install 'edge-msa[media]')")
    clips, labels = make_clips(tmp_path, 3)
    silent_avi(clips / "u0.avi")  # u0 also has u0.wav: the WAV is the audio
    silent_avi(clips / "u3.avi")  # u3 has only a video, and it has no audio track
    labels.write_text(labels.read_text() + "u3,0.5\n")
    with pytest.warns(UserWarning, match=r"u3: audio left out: .*u3.avi \(AVI\) has no audio track"):
        z = load(featurize(clips, labels, tmp_path / "s.npz", text="x", progress=False))
    assert z["audio_len"].tolist() == [50, 50, 50, 0] and z["video_len"][0] > 0 and z["video_len"][3] > 0
    np.testing.assert_allclose(z["audio_feat"][0], AudioFrontEnd()(clips / "sub" / "u0.wav"), atol=1e-6)


def test_without_pyav_video_only_clips_keep_audio_missing_with_one_warning(tmp_path, monkeypatch):
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        silent_avi(clips / f"v{i}.avi")
    (tmp_path / "labels.csv").write_text("id,label\nv0,1\nv1,0\nv2,-1\n")
    monkeypatch.setitem(sys.modules, "av", None)  # any `import av` now fails
    with pytest.warns(UserWarning) as caught:
        z = load(featurize(clips, tmp_path / "labels.csv", tmp_path / "n.npz", text="x", progress=False))
    pyav = [str(w.message) for w in caught if "pip install av" in str(w.message)]
    assert len(pyav) == 1 and pyav[0].startswith("audio missing for 3 clips with only a video file: ")
    assert (z["audio_len"] == 0).all() and (z["video_len"] > 0).all()


def test_without_pyav_a_corrupt_wav_is_left_out_and_a_streamed_flac_names_the_fix(tmp_path, monkeypatch):
    """Without PyAV, measuring a corrupt .wav before the duration limit asked for PyAV ("av is required for measuring
    media without a duration in the header") and stopped featurize; soundfile's verdict is final then, as read_audio
    rules: the clip is left out with a warning. A FLAC soundfile reads but whose length only PyAV can measure (written
    as a stream) still stops with the fix."""
    from edge_msa.errors import MissingDependencyError

    clips, labels = make_clips(tmp_path, 3)
    (clips / "sub" / "u1.wav").write_bytes(b"RIFF" + bytes(2000))
    monkeypatch.setitem(sys.modules, "av", None)  # any `import av` now fails
    with pytest.warns(UserWarning, match=r"^u1: audio left out: cannot read audio .*u1\.wav: .*; expected a WAV/FLAC"):
        z = load(featurize(clips, labels, tmp_path / "f.npz", text="x", progress=False))
    assert z["audio_len"].tolist() == [50, 0, 50]
    sf.write(clips / "sub" / "u1.flac", np.zeros(8000, np.float32), 8000)
    flac = bytearray((clips / "sub" / "u1.flac").read_bytes())
    flac[21] &= 0xF0  # STREAMINFO total samples = 0: "unknown", as a streaming encoder writes it
    flac[22:26] = bytes(4)
    (clips / "sub" / "u1.flac").write_bytes(bytes(flac))
    with pytest.warns(UserWarning, match=r"^u1: cannot read audio .*; trying u1\.flac instead$"):
        with pytest.raises(MissingDependencyError, match="measuring media without a duration"):
            featurize(clips, labels, tmp_path / "g.npz", text="x", progress=False)


def test_no_row_with_any_input_is_an_error_and_nothing_is_written(tmp_path, capsys):
    """Every clip unreadable and no transcript: a 0-row npz was written, which `edge-msa train` then refused."""
    clips, labels = make_clips(tmp_path, 3)
    for i in range(3):
        (clips / "sub" / f"u{i}.wav").write_bytes(b"not audio")
    out = tmp_path / "none.npz"
    assert main(["featurize", str(clips), "--labels", str(labels), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: none of the 3 utterances has any input (no transcript, and no clip could be read); expected at least "
        "one readable clip or a transcript: see the warnings for why each clip could not be read, or give "
        "transcripts (a text column, a transcript.csv or --text)"]
    assert not out.exists() and not list(tmp_path.glob("*.npz*"))


def test_an_unreadable_audio_file_falls_back_to_the_next_with_its_stem(tmp_path):
    """u1.wav corrupt beside a good u1.flac: the audio was left out, while a missing u1.wav fell back to u1.flac."""
    clips, labels = make_clips(tmp_path, 3)
    good = clips / "u1.flac"
    sf.write(good, sf.read(clips / "sub" / "u1.wav")[0], 8000)
    (clips / "sub" / "u1.wav").write_bytes(b"not audio")
    with pytest.warns(UserWarning, match=r"^u1: cannot read audio .*u1\.wav: .*; trying u1\.flac instead$"):
        z = load(featurize(clips, labels, tmp_path / "f.npz", text="x", progress=False))
    assert z["audio_len"].tolist() == [50, 50, 50]
    np.testing.assert_allclose(z["audio_feat"][1], AudioFrontEnd()(good), atol=1e-6)

    good.write_bytes(b"not audio either")  # none decodes: left out as before, naming the last failure
    with pytest.warns(UserWarning) as caught:
        z = load(featurize(clips, labels, tmp_path / "g.npz", text="x", progress=False))
    fallback, left_out = [str(w.message) for w in caught if str(w.message).startswith("u1")]
    assert fallback.startswith("u1: cannot read audio") and fallback.endswith("; trying u1.flac instead")
    assert left_out.startswith("u1: audio left out: audio file")
    assert left_out.endswith("u1.flac has no samples; expected at least 25 ms of audio")
    assert z["audio_len"].tolist() == [50, 0, 50]


@needs_cremad
def test_an_unreadable_or_too_long_audio_file_falls_back_to_the_video_track(tmp_path):
    """x.wav unreadable or over --max-media-s beside x.flv (a video with an audio track) left the audio out: only ids
    with no audio file took the video's track. The track is now the last audio candidate of every id with a video."""
    pytest.importorskip("av", reason="PyAV decodes the FLVs' audio tracks (pip install 'edge-msa[media]')")
    clips, names = three_cremad_videos(tmp_path)
    (clips / f"{names[0]}.wav").write_bytes(b"not audio")
    sf.write(clips / f"{names[1]}.wav", np.zeros(1000 * 31, np.float32), 1000)  # 31 s: over the 30 s default
    (clips / f"{names[2]}.wav").write_bytes((CREMAD / "resampled" / f"{names[2]}.wav").read_bytes())  # readable: wins
    (tmp_path / "labels.csv").write_text("id,label\n" + "".join(f"{n},{s}\n" for n, s in zip(names, (1, 0, -1))))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        z = load(featurize(clips, tmp_path / "labels.csv", tmp_path / "f.npz", text="x", progress=False))
    fallbacks = [str(w.message) for w in caught if "instead" in str(w.message)]
    assert [m.split(":")[0] for m in fallbacks] == names[:2]
    assert all(m.endswith(f"; trying {n}.flv instead") for m, n in zip(fallbacks, names))
    assert z["audio_len"].tolist() == [50, 50, 50]
    for n, source in zip(range(3), [clips / f"{names[0]}.flv", clips / f"{names[1]}.flv", clips / f"{names[2]}.wav"]):
        np.testing.assert_allclose(z["audio_feat"][n], AudioFrontEnd()(source), atol=1e-6)


def test_counts_in_messages_agree_with_their_nouns(tmp_path, capsys):
    """One video-only clip was reported as "audio from video container for 1 clips" and "video 1 clips"."""
    pytest.importorskip("av", reason="PyAV reads the video container (pip install 'edge-msa[media]')")
    clips, labels = make_clips(tmp_path, 3)
    silent_avi(clips / "u3.avi")
    labels.write_text(labels.read_text() + "u3,0.5\n")
    assert main(["featurize", str(clips), "--labels", str(labels), "--out", str(tmp_path / "c.npz"),
                 "--text", "x"]) == 0
    err = capsys.readouterr().err
    assert "audio from video container for 1 clip (no separate audio file)" in err
    assert "front-end time: audio 3 clips, " in err and "; video 1 clip, " in err


def test_cli_summary_counts_the_rows_of_each_split(tmp_path, capsys):
    """The last line said only "wrote data.npz": how many rows each split holds was left to a load_dataset call."""
    clips, labels = make_clips(tmp_path, 12)
    out = tmp_path / "s.npz"
    assert main(["featurize", str(clips), "--labels", str(labels), "--out", str(out), "--text", "x"]) == 0
    split = load(out)["split"]
    counts = ", ".join(f"{name} {(split == name).sum()}" for name in ("train", "valid", "test"))
    assert capsys.readouterr().out == f"wrote 12 rows to {out} ({counts})\n"
    assert counts == "train 8, valid 2, test 2"
