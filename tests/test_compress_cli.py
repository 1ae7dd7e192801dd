"""`edge-msa compress`: bad options exit 2 with one line and nothing written; a tiny run end to end through the
real MOSI-U reader and MiniLM text front end (synthetic file, a few dozen utterances)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from edge_msa.checkpoint import save_checkpoint
from edge_msa.cli import build_parser, main
from edge_msa.data import load_dataset
from edge_msa.errors import InputError
from edge_msa.models import create_model
from edge_msa.training import TrainConfig, fit

WORDS = ("good great fine bad awful boring fun movie plot acting really not very quite the was and it").split()


def _mini_mosi(path, n=48, seed=0):
    """A file in the MOSI-U layout (split_declare, declare audio 73 / video 100) with random content. Transcripts of
    3 or 8 words, so every split has two length tuples: a compress report counts MACs once per distinct tuple of its
    test split (torch-pruning copies the whole model for each count), most of a tiny run's time on six."""
    rng = np.random.default_rng(seed)
    videos = np.array([f"vid{i // 4:02d}" for i in range(n)])
    text = np.array([" ".join(rng.choice(WORDS, size=(3, 8)[i % 2])) for i in range(n)])
    np.savez(path, id=np.array([f"{v}_{i}" for i, v in enumerate(videos)]), video_id=videos, clip=np.arange(n),
             transcript=np.char.upper(text), transcript_lower_mmcpanda=text,
             audio_feat=rng.normal(size=(n, 73)).astype(np.float32),
             video_feat=rng.normal(size=(n, 100)).astype(np.float32),
             label_reg=np.clip(rng.normal(size=n) * 1.5, -3, 3).astype(np.float32),
             split_declare=np.where(np.arange(n) < 32, "train", "test"))
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))


def _files(root):
    return sorted(p.name for p in root.rglob("*") if "cache" not in p.parts)


@pytest.mark.parametrize("flags, match", [
    (["--prune-ratio", "1.0"], "prune-ratio"), (["--prune-ratio", "-0.5"], "prune-ratio"),
    (["--skip-budget", "-0.1"], "skip-budget"), (["--skip-budget", "0.5", "--max-drop", "0.01"], "not allowed"),
    (["--share", "all"], "share"), (["--max-drop", "2"], "max-drop"), (["--calibrate-on", "test"], "calibrate-on"),
    (["--kd-weight", "0", "--temperature", "4"], "--temperature 4.0 with --kd-weight 0"),
    (["--text-rank", "300"], "--text-rank 300 with --text-hidden 256"), (["--transfer", "nope.csv"], "not a file")])
def test_bad_options_exit_2_and_write_nothing(tmp_path, capsys, flags, match):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"not read before options are checked")
    before = _files(tmp_path)
    with pytest.raises(SystemExit) as exc:
        code = main(["compress", str(teacher), "--out", str(tmp_path / "s" / "student.pt"), *flags])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and match in err and "\n" not in err
    assert _files(tmp_path) == before


def test_pickled_or_missing_teacher_one_line(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a pickled module: weights_only refuses it
    assert main(["compress", str(path), "--out", str(tmp_path / "s.pt"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "weights_only" in err and "\n" not in err
    # what it refused
    assert "(WeightsUnpickler error: Unsupported global: GLOBAL torch.nn.modules.linear.Linear" in err
    assert main(["compress", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "s.pt"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "text.pt").write_text("not a checkpoint")
    assert main(["compress", str(tmp_path / "text.pt"), "--out", str(tmp_path / "s.pt"), "--quiet"]) == 2
    assert "not a torch checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()
    assert main(["compress", str(tmp_path / "nope.pt"), "--seeds", "-1", "--out", str(tmp_path / "s.pt")]) == 2
    assert capsys.readouterr().err == "error: --seeds -1; expected 0 <= seeds <= 4294967295\n"


def test_out_that_is_the_teacher_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """`compress t.pt --out t.pt` replaced the teacher with its student."""
    monkeypatch.chdir(tmp_path)
    teacher = tmp_path / "t.pt"
    teacher.write_bytes(b"the teacher's bytes")
    (tmp_path / "link.pt").symlink_to(teacher)
    (tmp_path / "hard.pt").hardlink_to(teacher)
    for out in ("t.pt", str(teacher), "sub/../t.pt", "link.pt", "hard.pt"):
        assert main(["compress", "t.pt", "--out", out, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err == f"error: --out '{out}' is the teacher 't.pt' itself, which the student would overwrite; " \
                      "expected another path for the student\n"
    assert teacher.read_bytes() == b"the teacher's bytes" and sorted(p.name for p in tmp_path.iterdir()) == [
        "hard.pt", "link.pt", "t.pt"]


def _tiny_teacher(tmp_path, epochs: int):
    """A tiny teacher trained on a mini MOSI-U file, saved as tmp_path/teacher.pt: (data path, splits, model)."""
    data = _mini_mosi(tmp_path / "mini_mosi.npz")
    splits = load_dataset(data, progress=False)
    torch.manual_seed(0)
    teacher = create_model("student_tiny", splits.spec)
    fit(teacher, splits.train, splits.valid, TrainConfig(epochs=epochs), progress=False)
    save_checkpoint(tmp_path / "teacher.pt", teacher, {"data": str(data), "seeds": [0]})
    return data, splits, teacher


@pytest.fixture(scope="module")
def one_epoch_teacher(tmp_path_factory):
    """_tiny_teacher(epochs=1) once for the tests that only read it (compress reads the teacher and its data file):
    (teacher.pt, data path, splits, model); the folder is checked unchanged after them."""
    root = tmp_path_factory.mktemp("one_epoch_teacher")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGE_MSA_CACHE", str(root / "cache"))
        data, splits, teacher = _tiny_teacher(root, epochs=1)
    state = lambda: {p.name: p.read_bytes() for p in (root / "teacher.pt", data)}  # noqa: E731
    before = state()
    yield root / "teacher.pt", data, splits, teacher
    assert state() == before and sorted(p.name for p in root.iterdir()) == ["cache", "mini_mosi.npz", "teacher.pt"]


def test_a_prune_ratio_refused_by_the_students_widths_names_the_flag(tmp_path, cache, capsys, one_epoch_teacher):
    """prune.check_ratio's line, raised after the teacher is loaded, names --prune-ratio on the command line (and
    prune_ratio to a Python caller: tests/test_compress_pipeline.py)."""
    out = tmp_path / "out" / "student.pt"
    assert main(["compress", str(one_epoch_teacher[0]), "--out", str(out), "--prune-ratio", "0.8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --prune-ratio 0.8 would remove all 4 heads of a block") and err.count("\n") == 1
    assert not out.parent.exists()


def test_a_prune_ratio_refused_by_the_students_widths_comes_before_the_data_load(tmp_path, cache, capsys,
                                                                                   one_epoch_teacher, monkeypatch):
    """The ratio's check needs only the teacher's kind (which resolves the default ratio) and the student's widths,
    yet it ran after the data load and the teacher's pass over the training split. Both fail loudly here."""
    import edge_msa.compress.pipeline as pipeline

    def never(*args, **kwargs):
        raise AssertionError("the data was read before the prune ratio was checked")

    monkeypatch.setattr(pipeline, "rebuild_splits", never)
    monkeypatch.setattr(pipeline, "teacher_targets", never)
    out = tmp_path / "out" / "student.pt"
    assert main(["compress", str(one_epoch_teacher[0]), "--out", str(out), "--prune-ratio", "0.8", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: --prune-ratio 0.8 would remove all 4 heads of a block")
    assert not out.parent.exists()


def test_cli_end_to_end(tmp_path, cache, capsys):
    data, _, _ = _tiny_teacher(tmp_path, epochs=2)
    out = tmp_path / "out" / "student.pt"
    code = main(["compress", str(tmp_path / "teacher.pt"), "--out", str(out), "--epochs", "1",
                 "--finetune-epochs", "1", "--gate-epochs", "1", "--prune-ratio", "0.5", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "skipping saves" in printed and "wrote" in printed
    report = json.loads((out.parent / "student.report.json").read_text())
    assert report["timing"]["host"]["torch"] == torch.__version__
    assert report["options"]["gate_epochs"] == 1 and report["skip"]["gate"]["epochs_run"] == 1
    assert report["data"]["path"] == str(data)  # --data defaulted to the dataset recorded in the teacher
    assert report["student"]["params"] < report["teacher"]["params"] * 10
    assert report["latency"]["calls"] >= 200 and report["compare"]["teacher_minus_student"]["mae"]["resamples"] >= 1000
    assert (out.parent / "student.report.md").is_file() and out.is_file()
    capsys.readouterr()
    again = tmp_path / "again" / "student.pt"  # a student is not a teacher: refused before any work
    assert main(["compress", str(out), "--out", str(again), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: '{out}' is a student made by `edge-msa compress`") and "\n" not in err
    assert not again.parent.exists()


def test_selection_gap_of_two_runs(tmp_path, cache, few_timings, capsys, one_epoch_teacher):
    """Two tiny compress runs (one seed; two seeds): B - A on the validation criterion with a bootstrap CI, read
    from the per-seed stage students; a run against itself differs by exactly 0; a bare checkpoint is refused."""
    from edge_msa.compress.selection_gap import main as gap_main, selection_gap

    teacher_pt, data, splits, teacher = one_epoch_teacher
    runs = {}
    for name, seeds in (("one", ["0"]), ("two", ["0", "1"]), ("seed1", ["1"])):
        runs[name] = tmp_path / name / "student.pt"
        assert main(["compress", str(teacher_pt), "--out", str(runs[name]), "--epochs", "1",
                     "--finetune-epochs", "1", "--gate-epochs", "1", "--quiet", "--seeds", *seeds]) == 0
    gap = selection_gap([(runs["one"], runs["two"])], resamples=200)
    assert gap["seeds_a"] == [[0]] and gap["seeds_b"] == [[0, 1]] and gap["utterances"] == len(splits.valid)
    assert gap["scored_on"] == "valid" and 0 <= gap["acc2_non0_a"] <= 1
    assert gap["b_minus_a"] == pytest.approx(gap["criterion_b"] - gap["criterion_a"], abs=1e-6)
    assert gap["ci95"][0] <= gap["b_minus_a"] <= gap["ci95"][1] and gap["se"] > 0
    acc2_gap, (low, high) = gap["acc2_non0_b_minus_a"], gap["acc2_non0_ci95"]
    assert acc2_gap == pytest.approx(gap["acc2_non0_b"] - gap["acc2_non0_a"]) and low <= acc2_gap <= high
    report = json.loads((tmp_path / "one" / "student.report.json").read_text())
    assert gap["criterion_a"] == pytest.approx(report["seeds"]["per_seed"][0]["valid_mae"], abs=1e-5)
    # a side of two one-seed runs pools their seeds as one two-seed run does (the same per-seed students here)
    pooled = selection_gap([((runs["one"], runs["seed1"]), runs["two"])], resamples=50)
    assert pooled["seeds_a"] == [[0, 1]] and pooled["b_minus_a"] == pytest.approx(0.0, abs=1e-7)
    assert pooled["criterion_a"] != pytest.approx(gap["criterion_a"], abs=1e-7)  # not seed 0 alone
    capsys.readouterr()
    assert gap_main([f"{runs['one']},{runs['seed1']}", str(runs["two"]), "--resamples", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["seeds_a"] == [[0, 1]]
    assert gap_main([f"{runs['one']},", str(runs["two"])]) == 2
    assert "empty path between commas" in capsys.readouterr().err
    same = selection_gap([(runs["one"], runs["one"])], resamples=50)
    assert same["b_minus_a"] == 0 and same["ci95"] == [0, 0] and same["acc2_non0_a"] == same["acc2_non0_b"]
    assert same["acc2_non0_b_minus_a"] == 0 and same["acc2_non0_ci95"] == [0, 0]
    (tmp_path / "bare").mkdir()  # the same student without its report and stages
    (tmp_path / "bare" / "student.pt").write_bytes(runs["one"].read_bytes())
    capsys.readouterr()
    assert gap_main([str(runs["one"]), str(tmp_path / "bare" / "student.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot read the seeds") and "\n" not in err
    assert gap_main([str(runs["one"]), str(runs["one"]), "--resamples", "0"]) == 2
    assert capsys.readouterr().err == "error: --resamples 0; expected >= 1\n"
    assert gap_main([str(runs["one"]), str(runs["two"]), str(runs["one"])]) == 2
    assert capsys.readouterr().err == "error: 3 runs given; expected pairs: A B [A B ...]\n"
    assert gap_main([str(runs["one"]), str(runs["two"])] * 2) == 2  # two pairs, but not on cross-validation folds
    assert "distinct cross-validation folds" in capsys.readouterr().err
    save_checkpoint(tmp_path / "bare" / "student.pt", teacher, {"data": str(data)})  # lineage: the path alone
    assert gap_main([str(runs["one"]), str(tmp_path / "bare" / "student.pt")]) == 2
    assert "different data or splits" in capsys.readouterr().err


def test_every_knob_flag_is_a_compress_option():
    """The CLI passes a knob on by its dest: a flag whose dest is not a CompressOptions field would be dropped."""
    from dataclasses import fields

    from edge_msa.compress import CompressOptions

    from edge_msa.errors import named_as_flags, option_name

    args = build_parser().parse_args(["compress", "teacher.pt"])
    knobs = set(vars(args)) - {"command", "handler", "teacher", "data", "out", "quiet"}
    assert len(knobs) == 23 and knobs <= {f.name for f in fields(CompressOptions)}
    # messages name a knob by option_name: within the CLI's named_as_flags, the flag argparse defines for it
    compress_parser = build_parser()._subparsers._group_actions[0].choices["compress"]
    flags = {a.dest: a.option_strings[0] for a in compress_parser._actions if a.dest in knobs}
    with named_as_flags(knobs):
        assert {knob: option_name(knob) for knob in knobs} == flags and option_name("lr") == "lr"
    assert option_name("text_kd_epochs") == "text_kd_epochs"


@pytest.mark.parametrize("flags, kwargs, cli, library", [
    (["--epochs", "0"], {"epochs": 0}, "--epochs 0; expected >= 1", "epochs = 0; expected >= 1"),
    (["--temperature", "nan"], {"temperature": float("nan")}, "--temperature nan; expected a finite number > 0",
     "temperature = nan; expected a finite number > 0"),
    (["--text-kd-epochs", "0", "--text-relation-kd", "1"], {"text_kd_epochs": 0, "text_relation_kd": 1.0},
     "--text-relation-kd 1.0 with --text-kd-epochs 0; relation KD is part of the layer-wise KD step, which 0 epochs "
     "turn off, so expected --text-kd-epochs > 0 or no --text-relation-kd", "text_relation_kd = 1.0 with "
     "text_kd_epochs = 0; relation KD is part of the layer-wise KD step, which 0 epochs turn off, so expected "
     "text_kd_epochs > 0 or no text_relation_kd"),
    (["--transfer", "nope.csv"], {"transfer": "nope.csv"}, "--transfer nope.csv is not a file",
     "transfer = 'nope.csv' is not a file")])
def test_an_option_error_names_the_flag_on_the_command_line_and_the_keyword_in_python(tmp_path, capsys, flags,
                                                                                       kwargs, cli, library):
    """`compress --epochs 0` said `epochs = 0` (the dataclass field), others said `--flag` to library callers too."""
    from edge_msa.compress import CompressOptions

    assert main(["compress", str(tmp_path / "t.pt"), *flags]) == 2
    assert capsys.readouterr().err.startswith(f"error: {cli}")
    with pytest.raises(InputError) as exc:
        CompressOptions.build(**kwargs)
    assert str(exc.value).startswith(library)


@pytest.mark.parametrize("kwargs, says", [
    ({"epochs": 2.5}, "epochs = 2.5; expected a whole number >= 1"),
    ({"bootstrap": 50.5}, "bootstrap = 50.5; expected a whole number >= 1"),
    ({"patience": 1.5}, "patience = 1.5; expected a whole number >= 1"),
    ({"text_heads": "8"}, "text_heads = '8'; expected a whole number >= 1"),
    ({"text_kd_epochs": 0.5}, "text_kd_epochs = 0.5; expected a whole number >= 0"),
    ({"text_rank": 64.0}, "text_rank = 64.0 is a float; expected a whole number >= 0 (write 64)"),
    ({"epochs": float("inf")}, "epochs = inf; expected a finite number >= 1")])
def test_counts_from_python_are_whole_numbers(kwargs, says):
    """The CLI parses the counts with type=int; from Python compress(epochs=2.5), bootstrap 50.5 or latency_calls 20.5
    was a TypeError from range() at its stage (bootstrap's after every model had trained) and patience 1.5 ran as
    patience 2. The weights stay floats: kd_weight 0.5 is no count."""
    from edge_msa.compress import CompressOptions

    with pytest.raises(InputError) as exc:
        CompressOptions.build(**kwargs)
    assert str(exc.value) == says
    assert CompressOptions.build(kd_weight=0.5, text_relation_kd=0.5, epochs=np.int64(3)).epochs == 3


@pytest.mark.parametrize("student_params, says", [
    ({"heads": 3}, "heads = 3 does not divide the attention width 16; expected a head count that divides the "
                   "model's width"),  # 16: the width student_tiny merges in
    ({"blocks": 5}, "student blocks = 5; expected a map of fuse, text (the blocks of share='depth') to maps of "
                    "heads, head_dim, ffn"),
    ({"dim": 16.0}, "dim = 16.0 is a float; expected a whole number >= 1 (write 16)"),
    # an option the student lacks, told as a teacher's is (registry.check_options), not as its own TypeError
    ({"dims": 16}, "model student_tiny has no option 'dims' (did you mean 'dim'?); expected one of dim, heads, ffn, "
                   "depth, fuse_depth, share, enc_hidden, head_hidden, gate_hidden, dropout, modality_dropout, "
                   "av_input_dropout, skip_thresholds, blocks, sharing"),
    # base.check_probabilities: nn.Dropout took 1.0 (every activation zeroed), -0.1 was torch's "bad options" line
    ({"dropout": 1.0}, "dropout = 1.0; expected 0 <= dropout < 1 (a probability)"),
    ({"dropout": -0.1}, "dropout = -0.1; expected 0 <= dropout < 1 (a probability)"),
    # the pipeline passes share= and **student_params: a raw TypeError (share twice, or None not a mapping)
    ({"share": "depth"}, "student_params = {'share': 'depth'} sets share; expected the share mode as its own option "
                         "(share = 'depth'), not in student_params"),
    (None, "student_params = None; expected a map of the student's options to override (e.g. {'dim': 64}), or {} "
           "for none"),
    # the pipeline passes text_bert= from the distilled encoder: a TypeError (text_bert twice) after the text stage
    ({"text_bert": {}}, "student_params sets text_bert; expected no text_bert: the student's text encoder is "
                        "distilled from the teacher's (its shape: text_hidden, text_layers and the other text "
                        "options)"),
    # the gate stage wrote its calibrated thresholds over them: dropped without a word
    ({"skip_thresholds": [0.2, 0.3]}, "student_params sets skip_thresholds; expected no skip_thresholds: the gate "
                                      "stage calibrates them (skip_budget or max_drop says to what)"),
    # keys of two types: sorted() raised a TypeError, reported as the registry's generic "bad options" line
    ({"blocks": {1: {}, "text": {}}}, "student blocks ['text', 1] do not match share='depth'; expected ['fuse', "
                                      "'text']"),
])
def test_student_params_are_checked_before_the_teacher_and_the_data_are_read(student_params, says, tmp_path,
                                                                              monkeypatch):
    """compress(student_params=...) found a student it could not build when it first built one, after loading the
    teacher and the data and running the teacher over them; CompressOptions builds it on torch's meta device
    (registry.check_build). The loads fail loudly here, so the message proves it came first."""
    from conftest import one_line_error

    import edge_msa.compress.pipeline as pipeline
    from edge_msa.compress import compress

    def never(*args, **kwargs):
        raise AssertionError("read before the student's options were checked")

    monkeypatch.setattr(pipeline, "_load_teacher", never)
    message = one_line_error(lambda: compress("never-read.pt", out=tmp_path / "s.pt", student="student_tiny",
                                              share="depth", student_params=student_params, progress=False))
    assert message == says and list(tmp_path.iterdir()) == []


def test_help_says_which_text_stage_steps_run_by_default(capsys):
    """The stage list read "layer-wise KD then KD of the teacher's text-only score", a step that is off by default."""
    from edge_msa.compress import CompressOptions

    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert CompressOptions().text_score_epochs == 0 and CompressOptions().text_kd_epochs > 0
    assert ("layer-wise KD on the transfer texts, then, with --text-score-epochs (off by default), KD of the "
            "teacher's text-only score)") in text


def test_text_encoder_flags_for_a_frozen_feature_teacher_are_named_as_ignored():
    from edge_msa.compress import CompressOptions

    options = CompressOptions.build(text_layers=3, transfer="none", epochs=2)
    with pytest.warns(UserWarning, match="^text_layers, transfer ignored: .* this teacher has none"):
        options.for_teacher(own_text_encoder=False)
    from edge_msa.errors import named_as_flags

    with named_as_flags(["text_layers", "transfer"]), pytest.warns(UserWarning, match="^--text-layers, --transfer "):
        options.for_teacher(own_text_encoder=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say: an own encoder, or every text option at its default
        options.for_teacher(own_text_encoder=True)
        CompressOptions.build(epochs=2).for_teacher(own_text_encoder=False)


def test_a_missing_mosei_transfer_file_is_named_in_a_warning(tmp_path, monkeypatch):
    """The default --transfer mosei was dropped silently when mosei/label.csv was missing (README: 1.8 pt worse)."""
    from edge_msa.compress import CompressOptions

    monkeypatch.setenv("EDGE_MSA_DATA", str(tmp_path))
    with pytest.warns(UserWarning, match=f"^transfer = 'mosei' skipped: {tmp_path / 'mosei' / 'label.csv'} not "
                                         "found, so the student's text encoder learns from the training transcripts "
                                         "alone.* or transfer = 'none' to choose this$"):
        assert CompressOptions().transfer_path() is None
    (tmp_path / "mosei").mkdir()
    (tmp_path / "mosei" / "label.csv").write_text("id,text,label,mode\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CompressOptions().transfer_path() == str(tmp_path / "mosei" / "label.csv")
        assert CompressOptions(transfer="none").transfer_path() is None


def test_cross_validation_folds_pool_their_held_out_parts(tmp_path, cache, few_timings):
    """Two folds over train + valid: whole videos per part, the test rows never read, the fold rebuilt from the
    lineage by compress; selection_gap pools both held-out parts (a run against itself differs by exactly 0) and
    refuses pairs that repeat a fold; fold_drop pools teacher - student over them."""
    from edge_msa.compress.fold_drop import fold_drop
    from edge_msa.compress.selection_gap import selection_gap
    from edge_msa.data import lineage
    from edge_msa.splits import video_id_of

    data = _mini_mosi(tmp_path / "mini_mosi.npz")
    base = load_dataset(data, progress=False)
    runs = []
    for fold in (0, 1):
        splits = load_dataset(data, progress=False, cv_fold=(fold, 2))
        videos = {k: {video_id_of(i) for i in splits.split(k).ids} for k in ("train", "valid", "test")}
        assert all(videos[a].isdisjoint(videos[b]) for a, b in (("train", "valid"), ("train", "test"),
                                                               ("valid", "test")))
        assert not set(base.test.ids) & {i for k in ("train", "valid", "test") for i in splits.split(k).ids}
        assert lineage(splits)["cv"] == {"fold": fold, "folds": 2}
        torch.manual_seed(0)
        teacher = create_model("student_tiny", splits.spec)
        fit(teacher, splits.train, splits.valid, TrainConfig(epochs=1), progress=False)
        save_checkpoint(tmp_path / f"teacher{fold}.pt", teacher, {"data": lineage(splits), "seeds": [0]})
        runs.append(tmp_path / f"f{fold}" / "student.pt")
        assert main(["compress", str(tmp_path / f"teacher{fold}.pt"), "--out", str(runs[-1]), "--epochs", "1",
                     "--finetune-epochs", "1", "--gate-epochs", "1", "--quiet"]) == 0
        report = json.loads((runs[-1].parent / "student.report.json").read_text())
        assert report["data"]["cv"] == {"fold": fold, "folds": 2}
        assert report["latency"]["results"]["student"]["calls"] == 20  # few_timings reached the CLI's run
        assert report["data"]["splits"]["test"]["n"] == len(splits.test)
        assert f"fold {fold}/2: \"test\" below is the fold's held-out part" in (runs[-1].parent /
                                                                               "student.report.md").read_text()
    gap = selection_gap([(run, run) for run in runs], resamples=50)
    assert gap["scored_on"] == "held-out folds 0, 1 of 2" and gap["utterances"] == len(base.train) + len(base.valid)
    assert gap["b_minus_a"] == 0 and gap["seeds_a"] == [[0], [0]]
    with pytest.raises(InputError, match="distinct cross-validation folds"):
        selection_gap([(runs[0], runs[0])] * 2, resamples=50)
    drop = fold_drop(runs, resamples=50)  # the same students and rows: the same Acc-2 as selection_gap's
    assert drop["scored_on"] == gap["scored_on"] and drop["utterances"] == gap["utterances"]
    assert drop["student"]["acc2_non0"] == pytest.approx(gap["acc2_non0_a"])
    assert drop["teacher_minus_student"]["mae"]["diff"] == pytest.approx(drop["teacher"]["mae"] -
                                                                         drop["student"]["mae"])
    (tmp_path / "teacher0.pt").rename(tmp_path / "moved.pt")
    with pytest.raises(InputError, match="teacher0.pt' of '.*' is not there"):
        fold_drop(runs)


def test_selection_gap_embeds_only_the_split_it_scores(tmp_path, monkeypatch):
    """selection_gap (and fold_drop) score validation, yet embedded every transcript of the file through MiniLM on a
    cold cache: now only validation's, with the same features (a row's do not depend on the rows beside it)."""
    from edge_msa.compress.selection_gap import scored_split
    from edge_msa.data import lineage
    from edge_msa.features.text import MiniLMFrontEnd

    data = _mini_mosi(tmp_path / "mini_mosi.npz")
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "trained"))
    full = load_dataset(data, progress=False)
    embedded, embed = [], MiniLMFrontEnd.embed
    monkeypatch.setattr(MiniLMFrontEnd, "embed", lambda self, ids, progress=False:
                        embedded.append(len(ids)) or embed(self, ids, progress))
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cold"))
    rows = scored_split(create_model("student_tiny", full.spec), lineage(full))
    assert embedded == [len(full.valid)] and len(full.valid) < len(full.train)
    assert np.array_equal(rows.ids, full.valid.ids) and np.array_equal(rows.labels, full.valid.labels)
    width = int(full.valid.lengths["text"].max())
    assert np.array_equal(rows.lengths["text"], full.valid.lengths["text"])
    assert np.array_equal(rows.features["text"][:, :width], full.valid.features["text"][:, :width])


def test_a_seed_that_is_not_an_integer_is_refused_not_rounded():
    """int() made seed 0.5 seed 0 and "3" seed 3 without a word; numpy's ints are integers. Named as given: the
    flag on a command line, the keyword in Python."""
    from edge_msa.errors import checked_seeds, named_as_flags

    with named_as_flags(["seeds", "seed"]):
        with pytest.raises(InputError, match=r"^--seeds 0\.5; expected a whole number 0 <= seeds <= 4294967295$"):
            checked_seeds([0, 0.5])
        with pytest.raises(InputError, match=r"^--seed 1\.0 is a float; expected a whole number 0 <= seed <= "
                                             r"4294967295 \(write 1\)$"):
            checked_seeds([1.0, "3", True], "seed")
    with pytest.raises(InputError, match=r"^seeds = 0\.5; expected a whole number 0 <= seeds <= 4294967295$"):
        checked_seeds([0, 0.5])
    seeds = checked_seeds([np.int64(3), 1])
    assert seeds == (3, 1) and all(type(s) is int for s in seeds)


def test_transfer_keywords_are_read_in_any_case(monkeypatch, tmp_path):
    """NONE was taken and MOSEI refused as "not a file": one list of keywords, read in any case."""
    from edge_msa.compress import CompressOptions

    monkeypatch.setenv("EDGE_MSA_DATA", str(tmp_path))
    (tmp_path / "mosei").mkdir()
    (tmp_path / "mosei" / "label.csv").write_text("id,text,label,mode\n")
    for word in ("MOSEI", "Mosei", "mosei"):
        assert CompressOptions(transfer=word).transfer_path() == str(tmp_path / "mosei" / "label.csv")
    for word in ("NONE", "None", "none"):
        assert CompressOptions(transfer=word).transfer_path() is None
    assert CompressOptions(transfer="MOSEI").to_dict()["transfer"] == "mosei"


def test_share_and_calibrate_on_are_read_in_any_case_like_transfer(tmp_path, capsys):
    """argparse's choices refused `--share DEPTH` and `--calibrate-on VALID` (and CompressOptions share='Depth') while
    `--transfer MOSEI` was taken: every word knob is read by the one rule, options.KEYWORDS."""
    from edge_msa.compress import CompressOptions
    from edge_msa.compress.options import KEYWORDS

    options = CompressOptions(share="DEPTH", calibrate_on="Train+Valid")
    assert (options.share, options.calibrate_on) == ("depth", "train+valid")
    with pytest.raises(InputError, match=r"^share = 'all' is unknown; expected one of depth, depth\+modality$"):
        CompressOptions(share="all")
    assert main(["compress", str(tmp_path / "t.pt"), "--share", "Depth+Modality", "--calibrate-on", "VALID"]) == 2
    assert "checkpoint" in capsys.readouterr().err  # the options were taken; the (missing) teacher was next
    assert main(["compress", str(tmp_path / "t.pt"), "--calibrate-on", "test"]) == 2
    assert capsys.readouterr().err == "error: --calibrate-on test is unknown; expected one of valid, train+valid\n"
    compress_parser = build_parser()._subparsers._group_actions[0].choices["compress"]
    metavars = {a.dest: a.metavar for a in compress_parser._actions if a.dest in ("share", "calibrate_on")}
    assert metavars == {name: "{" + ",".join(KEYWORDS[name]) + "}" for name in ("share", "calibrate_on")}  # --help
