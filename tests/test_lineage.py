"""Data lineage in checkpoints and bundles, any modality subset in any dataset, one FeatureSpec check (issue 10)."""
from __future__ import annotations

import csv
import importlib
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA_ROOT, one_line_error
from edge_msa.checkpoint import save_checkpoint
from edge_msa.cli import main
from edge_msa.data import lineage, load_dataset, rebuild_splits
from edge_msa.data.lineage import split_record
from edge_msa.digest import file_sha256
from edge_msa.errors import InputError
from edge_msa.export import export
from edge_msa.models import create_model
from edge_msa.runtime import load
from edge_msa.runtime.manifest import read_manifest
from edge_msa.spec import ABSENT, FeatureSpec, check_compatible

MISA_DEV = DATA_ROOT / "mosi" / "misa_wordaligned" / "dev.pkl"  # one real file: split 70/15/15 by a seeded carve
MOSI_LIKE = FeatureSpec(dims=(384, 5, 7), max_lens=(16, 1, 1),
                        front_ends=("minilm-l6-int8", "external:declare-opensmile-73", "external:declare-3dcnn-100"))
WORDS = ["good", "bad", "film", "really", "not", "great", "boring", "fun"]


def _label_csv(path, n=18, seed=0):
    """An MMSA label.csv: text and labels only (audio and video absent), standard `mode` folds."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "clip_id", "text", "label", "mode"])
        for i in range(n):
            w.writerow([f"v{i // 2}", i % 2, " ".join(rng.choice(WORDS, 5)), f"{rng.uniform(-3, 3):.2f}",
                        ("train", "valid", "test")[i % 3]])
    return path


@pytest.fixture(scope="module")
def mosi_like_bundle(tmp_path_factory):
    ckpt = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "s.pt", create_model("student_tiny", MOSI_LIKE), {})
    return export(ckpt, out=tmp_path_factory.mktemp("b") / "bundle", log=None)


def _eval(capsys, *args) -> tuple[int, dict | None, str]:
    code = main(["eval", *map(str, args)])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


@pytest.mark.slow  # MiniLM over 229 real transcripts (disk-cached), a tiny export with parity
@pytest.mark.skipif(not MISA_DEV.is_file(), reason=f"real data not found at {MISA_DEV}")
def test_bundle_and_eval_carry_the_split_the_model_was_carved_with(tmp_path, capsys):
    splits = load_dataset(MISA_DEV, seed=1, progress=False)
    ckpt = save_checkpoint(tmp_path / "s.pt", create_model("student_tiny", splits.spec), {"data": lineage(splits)})
    bundle = export(ckpt, out=tmp_path / "bundle", data=MISA_DEV, log=None)
    record = read_manifest(bundle).data
    assert record["sha256"] == file_sha256(MISA_DEV) and record["seed"] == 1 and record["format"] == "misa"
    assert record["splits"]["valid"] == split_record(splits.valid)
    for name in ("valid", "test"):  # eval reports the rows it scored: the model's own split
        code, m, _ = _eval(capsys, bundle, "--data", MISA_DEV, "--split", name)
        assert code == 0 and m["split"] == {"name": name, **record["splits"][name]}
    seed0 = lineage(load_dataset(MISA_DEV, seed=0, progress=False))  # what eval used before lineage
    assert seed0["splits"]["test"] != record["splits"]["test"]
    assert f"data       {MISA_DEV.resolve()} [misa] sha256 {record['sha256'][:12]}" in _info(capsys, bundle)


def _info(capsys, path) -> str:
    assert main(["info", str(path)]) == 0
    return capsys.readouterr().out


def test_rebuild_warns_when_the_file_is_not_the_models(tmp_path):
    """The model's own file edited since and another file given are told apart: both said "not the file the model
    was trained on", which sent a user who had fixed a label in the recorded file looking for another file."""
    data = _label_csv(tmp_path / "label.csv")
    record = lineage(load_dataset(data, progress=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = rebuild_splits(record, data)  # same file: silent
    assert again.info["sha256"] == file_sha256(data)
    other = _label_csv(tmp_path / "other.csv", seed=1)
    with pytest.warns(UserWarning, match=rf"^{re.escape(str(other))} \(sha256 .*\) is not the file the model was "
                      rf"trained on \({re.escape(str(data))}, sha256 "):
        rebuild_splits(record, other)
    with open(data, "a", encoding="utf-8") as f:
        f.write("v99,0,good film,1.5,train\n")
    edited = rf"^{re.escape(str(data))} was edited since the model was trained on it \(sha256 "
    with pytest.warns(UserWarning, match=edited) as seen:
        rebuild_splits(record, data)
    assert len(seen) == 1 and "not the file" not in str(seen[0].message)


def test_a_model_whose_data_file_is_gone_is_not_scored_on_mosi_u(tmp_path, capsys):
    """eval / compress / export without --data read the recorded file, else MOSI-U: a model trained on a label.csv
    since moved or deleted was scored on MOSI-U's test split under one warning, as if those were its own scores."""
    data = _label_csv(tmp_path / "label.csv")
    record = lineage(load_dataset(data, progress=False))
    ckpt = save_checkpoint(tmp_path / "s.pt", create_model("student_tiny", load_dataset(data, progress=False).spec),
                           {"data": record})
    bundle = export(ckpt, out=tmp_path / "bundle", log=None)
    data.rename(tmp_path / "moved.csv")
    message = (f"the model's data {data} is not there (moved or deleted); expected that file back at its path, or "
               "--data naming where it is now")
    with pytest.raises(InputError) as refused:
        rebuild_splits(record)
    assert str(refused.value) == message
    code, _, err = _eval(capsys, bundle)
    assert code == 2 and err == f"error: {message}\n"
    code, m, _ = _eval(capsys, bundle, "--data", tmp_path / "moved.csv")  # named where it is now: its own splits
    assert code == 0 and m["split"] == {"name": "test", **record["splits"]["test"]}


def test_text_only_label_csv_scores_through_the_runtime_with_audio_video_missing(mosi_like_bundle, tmp_path, capsys):
    data = _label_csv(tmp_path / "label.csv")
    code, m, err = _eval(capsys, mosi_like_bundle, "--data", data, "--split", "test")
    assert code == 0, err
    assert m["n"] == 6 and m["data"]["missing"] == ["audio", "video"]
    assert m["skip_rate_audio"] == m["skip_rate_video"] == "missing" and m["skip_rate_text"] == 0.0
    with load(mosi_like_bundle) as p:  # predict: text alone, a/v reported missing
        r = p.predict(text="a really good film")
    assert r.ran == ["text"] and r.skipped == {"audio": "missing", "video": "missing"}


def test_eval_embeds_only_the_split_it_scores(mosi_like_bundle, tmp_path, capsys, monkeypatch):
    """`eval --split test` of MOSEI's label.csv embedded all 22,788 transcripts through MiniLM to score 4,653
    (5 min 46 s on 2 cores): now only the test rows, while every split's ids (the lineage checks) are still read; a
    file cached whole (after training on it) is loaded, not embedded again. Training, which needs every split, is
    unchanged."""
    from edge_msa.features.text import MiniLMFrontEnd

    embedded, embed = [], MiniLMFrontEnd.embed
    monkeypatch.setattr(MiniLMFrontEnd, "embed", lambda self, ids, progress=False:
                        embedded.append(len(ids)) or embed(self, ids, progress))
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))
    data = _label_csv(tmp_path / "label.csv")
    code, m, err = _eval(capsys, mosi_like_bundle, "--data", data, "--split", "test")
    assert code == 0, err
    assert embedded == [6] and m["n"] == 6
    part = load_dataset(data, progress=False, featurize=["test"])  # the library's MiniLM (max_len): another cache key
    full = load_dataset(data, progress=False)
    assert embedded == [6, 6, 18]  # all 18 rows for training, which caches them all
    for name in ("train", "valid", "test"):  # every split's rows, as rebuild_splits checks them
        assert split_record(getattr(part, name)) == split_record(full.split(name))
    assert part.info["sha256"] == full.info["sha256"]
    valid = load_dataset(data, progress=False, featurize=["valid"]).valid
    for fs, whole in ((part.test, full.test), (valid, full.valid)):
        width = int(whole.lengths["text"].max())
        assert np.array_equal(fs.lengths["text"], whole.lengths["text"])
        np.testing.assert_allclose(fs.features["text"][:, :width], whole.features["text"][:, :width], atol=1e-5)
    assert embedded == [6, 6, 18]  # valid alone: read from the whole file's cache entry
    message = one_line_error(lambda: part.split("train"))
    assert "the train split" in message and "read without its text features" in message


def test_bench_scores_text_only_data(mosi_like_bundle, tmp_path, monkeypatch):
    """...embedding only the transcripts of the split it times and scores (test: 6 of the 18), as eval does."""
    from edge_msa.benchmarks import run_bench
    from edge_msa.features.text import MiniLMFrontEnd

    embedded, embed = [], MiniLMFrontEnd.embed
    monkeypatch.setattr(MiniLMFrontEnd, "embed", lambda self, ids, progress=False:
                        embedded.append(len(ids)) or embed(self, ids, progress))
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))
    out = run_bench([mosi_like_bundle], data=_label_csv(tmp_path / "label.csv"), out=tmp_path / "report",
                    modalities=("all",), min_time=0.0, min_runs=2, warmup=0, energy_window=0.05, meter="none",
                    progress=False)
    row = json.loads((out / "report.json").read_text())["rows"][0]
    assert row["status"] == "ok" and isinstance(row["metrics"], dict), row["metrics"]
    assert row["skip_rates"] == {"audio_video": "missing", "audio": "missing", "video": "missing"}
    assert embedded[0] == 6  # the data (18 before); the rest are the timed raw-text calls, one text each
    assert set(embedded[1:]) == {1}


def test_export_embeds_only_the_validation_split(tmp_path, monkeypatch):
    """export checks the bundle on the validation split alone (parity, accuracy, TensorRT's INT8 calibration from the
    parity feeds) but embedded every transcript of the file through MiniLM on a cold cache (all 22,788 of MOSEI's
    label.csv for its 1,861 validation rows): now only those, and the bundle records the same parity and metrics as
    one exported from a cache of the whole file (as training leaves it)."""
    from edge_msa.features.text import MiniLMFrontEnd

    data = _label_csv(tmp_path / "label.csv")
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "trained"))
    full = load_dataset(data, progress=False)  # every row, cached whole
    ckpt = save_checkpoint(tmp_path / "s.pt", create_model("student_tiny", full.spec), {"data": lineage(full)})
    embedded, embed = [], MiniLMFrontEnd.embed
    monkeypatch.setattr(MiniLMFrontEnd, "embed", lambda self, ids, progress=False:
                        embedded.append(len(ids)) or embed(self, ids, progress))
    whole = read_manifest(export(ckpt, out=tmp_path / "whole", log=None))
    assert embedded == []  # read from training's cache entry
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cold"))
    part = read_manifest(export(ckpt, out=tmp_path / "part", log=None))
    assert embedded == [len(full.valid)] == [6]
    assert part.metrics["valid"]["n"] == 6 and part.metrics == whole.metrics and part.parity == whole.parity


def test_train_and_predict_on_text_only_data(tmp_path):
    from edge_msa.teacher import train_teacher

    data = _label_csv(tmp_path / "label.csv", n=30)
    train_teacher("gtf_tiny", data=data, out=tmp_path / "t.pt", epochs=1, progress=False, text_encoder="frozen")
    ckpt = save_checkpoint(tmp_path / "s.pt", create_model("student_tiny", load_dataset(data, progress=False).spec), {})
    with load(export(ckpt, out=tmp_path / "bundle", log=None)) as p:
        r = p.predict(text="not fun at all", audio=np.zeros((1, 1), np.float32))
    assert p.spec.front_ends[1:] == (ABSENT, ABSENT)
    assert r.ran == ["text"] and r.skipped["audio"].startswith("missing")


def test_one_compatibility_check_compares_front_ends_not_only_dims(mosi_like_bundle, tmp_path, capsys):
    other = FeatureSpec(MOSI_LIKE.dims, MOSI_LIKE.max_lens,
                        ("minilm-l6-int8", "external:librosa-5", MOSI_LIKE.front_ends[2]))
    with pytest.raises(InputError, match=r"audio features .* 'external:librosa-5' .* expects 5-dim from "
                                         r"'external:declare-opensmile-73'"):
        check_compatible(MOSI_LIKE, other)
    assert check_compatible(MOSI_LIKE, FeatureSpec((384, 1, 1), (16, 1, 1), ("minilm-l6-int8", ABSENT, ABSENT))) \
        == ("audio", "video")
    data = _features_npz(tmp_path / "feats.npz", other)  # same widths, another audio extractor
    code, _, err = _eval(capsys, mosi_like_bundle, "--data", data)
    warning, error = err.splitlines()  # the CLI prints a warning as one line too, never file:line + source
    assert warning.startswith("warning: no data lineage recorded with the model; reading")
    assert code == 2 and error.startswith("error: audio features") and "external:librosa-5" in error
    ckpt = save_checkpoint(tmp_path / "s.pt", create_model("student_tiny", MOSI_LIKE), {})
    with pytest.raises(InputError, match="external:librosa-5"):
        export(ckpt, out=tmp_path / "b2", data=data, log=None)
    assert not (tmp_path / "b2").exists()


def _features_npz(path, spec: FeatureSpec, n=12, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, format="edge-msa-features-v1", feature_spec=json.dumps(spec.to_dict()),
             id=np.array([f"c{i}" for i in range(n)]), label=rng.uniform(-3, 3, n).astype(np.float32),
             split=np.array(["train", "valid", "test"] * (n // 3)),
             transcript=np.array([" ".join(rng.choice(WORDS, 4)) for _ in range(n)]),
             audio_feat=rng.normal(size=(n, 1, 5)).astype(np.float32), audio_len=np.ones(n, np.int64),
             video_feat=rng.normal(size=(n, 1, 7)).astype(np.float32), video_len=np.ones(n, np.int64))
    return path


def test_the_models_file_moved_is_read_in_its_recorded_format(tmp_path):
    """--data naming the model's own file at another path (moved, copied, another checkout: the same sha256) reads it
    as it was trained: its format was detected from the new name instead, so a file trained with `train --data-format`
    was refused by eval, bench, export and compress ("cannot tell the dataset format"), which have no such flag."""
    data = _label_csv(tmp_path / "labels.txt")  # a name detection cannot place: trained with --data-format
    record = lineage(load_dataset(data, fmt="mmsa-label-csv", seed=3, progress=False))
    moved = data.rename(tmp_path / "moved.txt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same bytes: neither a sha256 nor a rows warning
        again = rebuild_splits(record, moved)
    assert again.info["format"] == "mmsa-label-csv" and lineage(again)["splits"] == record["splits"]


def test_a_record_from_before_lineage_is_read_under_a_warning(tmp_path, monkeypatch):
    """A checkpoint from before lineage records a path and seed at most (checkpoint.data_record): with nothing to check
    the file or its rows against, its file was read without a word, and MOSI-U in its place once the file was gone."""
    from edge_msa import paths
    from edge_msa.checkpoint import data_record

    data = _label_csv(tmp_path / "label.csv")
    record = data_record({"data": str(data), "data_seed": 2})
    no_check = r"^no data lineage recorded with the model; reading .* with seed 2, which may not be the file"
    with pytest.warns(UserWarning, match=no_check):
        rebuild_splits(record)
    monkeypatch.setattr(paths, "default_mosi_path", lambda: _label_csv(tmp_path / "stand_in_for_mosi_u.csv", seed=1))
    data.unlink()
    with pytest.warns(UserWarning, match=no_check) as seen:
        rebuild_splits(record)
    assert "stand_in_for_mosi_u.csv" in str(seen[0].message)


def test_export_finds_the_models_mosi_u_file_from_another_checkout_as_eval_does(tmp_path, monkeypatch):
    """A run folder moved to another checkout: its recorded path is gone, but MOSI-U there holds the recorded bytes.
    eval, compress and bench read that file; export fell back to random inputs (no accuracy check) without --data."""
    from edge_msa import paths

    data = _label_csv(tmp_path / "label.csv")  # stands in for MOSI-U, whose embedding a test cannot afford
    splits = load_dataset(data, progress=False)
    ckpt = save_checkpoint(tmp_path / "s.pt", create_model("student_tiny", splits.spec), {"data": lineage(splits)})
    elsewhere = data.rename(tmp_path / "other_checkout.csv")
    monkeypatch.setattr(paths, "default_mosi_path", lambda: elsewhere)
    bundle = export(ckpt, out=tmp_path / "bundle", log=None)
    manifest = read_manifest(bundle)
    assert manifest.export_options["data"] == str(elsewhere) and "valid" in manifest.metrics


def test_splits_with_other_rows_are_counted_in_english(tmp_path):
    """The warning said "the valid split(s) hold other rows": a count reads as English (errors.plural)."""
    data = _label_csv(tmp_path / "label.csv")
    record = lineage(load_dataset(data, progress=False))
    for changed, says in ((["valid"], "1 split (valid) with"), (["valid", "test"], "2 splits (valid, test) with")):
        tampered = {**record, "splits": {n: {**s, "ids_sha256": "0" * 64} if n in changed else s
                                         for n, s in record["splits"].items()}}
        with pytest.warns(UserWarning, match=rf"^{re.escape(str(data))}: {re.escape(says)} other rows than the "
                          r"model's record \(a reader or seed changed\); scores are not comparable$"):
            rebuild_splits(tampered, data)


def test_a_data_file_at_another_path_is_hashed_once(tmp_path, monkeypatch):
    """rebuild_splits hashed a --data file to compare it with the record, then load_dataset hashed it again: two
    reads of a file that can be GBs (MOSEI's features). Once now, for a moved file and for another file alike."""
    data = _label_csv(tmp_path / "labels.txt")
    record = lineage(load_dataset(data, fmt="mmsa-label-csv", progress=False))
    moved, other = data.rename(tmp_path / "moved.txt"), _label_csv(tmp_path / "other.csv", seed=1)
    hashed = []

    def counted(path):
        hashed.append(Path(path).name)
        return file_sha256(path)

    for module in ("edge_msa.data.lineage", "edge_msa.data.loader"):  # edge_msa.data.lineage is also a function
        monkeypatch.setattr(importlib.import_module(module), "file_sha256", counted)
    again = rebuild_splits(record, moved)
    assert hashed == ["moved.txt"] and again.info["sha256"] == record["sha256"]
    assert again.info["format"] == "mmsa-label-csv"  # the same bytes: read in the recorded format
    with pytest.warns(UserWarning, match="is not the file the model was trained on"):
        rebuild_splits(record, other)
    assert hashed == ["moved.txt", "other.csv"]
