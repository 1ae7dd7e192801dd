"""`edge-msa train` / train_teacher: writes the checkpoint and the metrics JSON; bad input exits 2."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge_msa.checkpoint import data_record, load_checkpoint
from edge_msa.data.base import DatasetSplits
from edge_msa.data.lineage import split_record
from edge_msa.cli import build_parser, main
from edge_msa.errors import InputError
from edge_msa.metrics import METRIC_KEYS
from edge_msa.spec import FeatureSpec
from edge_msa.models.registry import TEACHERS
from edge_msa.teacher import TRAIN_DEFAULTS, metrics_path, train_teacher

from conftest import MOSI_NPZ, make_featureset, needs_data, one_line_error

pytestmark = pytest.mark.usefixtures("torch_one_thread")


WORDS = ["good", "bad", "great", "awful", "movie", "plot", "boring", "fun", "really", "not"]


def _features_npz(path, n: int = 48) -> None:
    """A small dataset in the edge-msa-features-v1 format (text goes through the real MiniLM front end)."""
    rng = np.random.default_rng(0)
    spec = FeatureSpec(dims=(384, 5, 7), max_lens=(16, 3, 2), front_ends=("minilm-l6-int8", "external:a", "external:v"))
    audio_len, video_len = rng.integers(0, 4, n), rng.integers(1, 3, n)
    np.savez(path, format=np.array("edge-msa-features-v1"), feature_spec=np.array(json.dumps(spec.to_dict())),
             id=np.array([f"u{i}" for i in range(n)]), label=rng.uniform(-3, 3, n).astype(np.float32),
             split=np.array(["train"] * (n // 2) + ["valid"] * (n // 4) + ["test"] * (n - n // 2 - n // 4)),
             transcript=np.array([" ".join(rng.choice(WORDS, 4)) for _ in range(n)]),
             audio_feat=rng.normal(size=(n, 3, 5)).astype(np.float32), audio_len=audio_len,
             video_feat=rng.normal(size=(n, 2, 7)).astype(np.float32), video_len=video_len)


def test_train_teacher_api_seeds(tiny_splits, tmp_path):
    out = tmp_path / "t.pt"
    m = train_teacher("gtf_tiny", out=out, splits=tiny_splits, seeds=(0, 1), epochs=2, progress=False)
    assert set(METRIC_KEYS) <= set(m) and set(m["seeds"]) == {"0", "1"}
    assert m["selected_seed"] in (0, 1)
    assert m[METRIC_KEYS[0]] == m["seeds"][str(m["selected_seed"])][METRIC_KEYS[0]]
    assert all(m["std"][k] >= 0 for k in METRIC_KEYS)
    on_disk = json.loads(metrics_path(out).read_text())
    assert on_disk["mean"] == pytest.approx(m["mean"])
    import torch  # the host is recorded, so a difference between machines can be told from a code change
    assert on_disk["host"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability() and on_disk["host"]["cpu"]
    model, meta = load_checkpoint(out)
    assert meta["seeds"] == [0, 1] and meta["dataset"] == "tiny" and set(meta["per_seed_test"]) == {"0", "1"}
    assert data_record(meta)["seed"] == 0 and data_record({"seeds": [3, 1]})["seed"] == 3  # pre-lineage teachers
    assert data_record({"data_seed": 2, "seeds": [0]})["seed"] == 2  # a pre-lineage student's carve
    assert meta["data"]["splits"]["valid"] == split_record(tiny_splits.valid)  # the lineage of its data
    assert model.model_name == "gtf_tiny"
    assert model.config_params["score_clip"] == 0.0  # validation picked no clip for gtf (teacher.MODEL_DEFAULTS)
    assert 0.5 <= model.config_params["score_scale"] <= 1.5 and m["model_params"] == model.config_params


def test_a_learning_rate_that_diverges_is_named(tiny_splits, tmp_path):
    """--lr 1e6 trained NaN weights through every epoch and phase, then failed in the metrics ("metrics got NaN/Inf
    scores"), with no word of the learning rate."""
    message = one_line_error(lambda: train_teacher("gtf_tiny", out=tmp_path / "t.pt", splits=tiny_splits, epochs=2,
                                                   lr=1e6, progress=False))
    assert message == ("gtf_tiny seed 0: the validation MAE was nan after every epoch, so training diverged at "
                       "learning rate 1000000.0; expected a smaller learning rate")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("empty, rows, what", [("train", 0, "0 labelled rows"), ("valid", 0, "0 labelled rows"),
                                               ("test", 0, "0 labelled rows"), ("valid", 1, "1 labelled row"),
                                               ("test", 1, "1 labelled row"),
                                               ("test", 3, "3 labelled rows, all 0")])
def test_a_split_too_small_to_score_is_refused_before_training(empty, rows, what, tiny_spec, tmp_path):
    """e.g. a label.csv without valid rows: it failed inside predict ("need at least one array to concatenate"). A
    one-row or all-0 test split (a 20-row `feedback export`, a 3-clip featurized dataset) failed after all of
    training, in the metrics (a TypeError traceback for all 0: Acc-2 non-0 is None); a one-row valid split failed in
    compress's skip calibration."""
    sizes = {"train": 16, "valid": 8, "test": 8, empty: rows}
    sets = [make_featureset(tiny_spec, sizes[name], i) for i, name in enumerate(("train", "valid", "test"))]
    if "all 0" in what:
        sets[2].labels[:] = 0.0
    splits = DatasetSplits(tiny_spec, *sets, name="tiny", info={"split": "mode column"})
    message = one_line_error(lambda: train_teacher("gtf_tiny", out=tmp_path / "t.pt", splits=splits, epochs=1,
                                                   progress=False))
    assert message == (f"split '{empty}' of tiny holds {what}; expected at least 2 in each of train, valid and test, "
                       "not all labelled 0 (split by: mode column)")
    assert list(tmp_path.iterdir()) == []


def test_training_pins_torch_threads_and_restores_them(tiny_splits, tmp_path):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        m = train_teacher("gtf_tiny", out=tmp_path / "t.pt", splits=tiny_splits, epochs=1, progress=False)
        assert m["host"]["torch_threads"] == 1  # the default: a seed's model does not depend on the core count
        assert torch.get_num_threads() == 2
        with pytest.raises(InputError, match=r"^threads = -1; expected >= 0 \(0: the library's default\)$"):
            train_teacher("gtf_tiny", out=tmp_path / "u.pt", splits=tiny_splits, threads=-1, progress=False)
        assert not (tmp_path / "u.pt").exists()
        m = train_teacher("gtf_tiny", out=tmp_path / "z.pt", splits=tiny_splits, epochs=1, threads=0, progress=False)
        assert m["host"]["torch_threads"] == 2  # 0: torch's count, left as it was (the rule of every --threads)
    finally:
        torch.set_num_threads(before)


def test_calibrate_scale_picks_the_validation_mae_minimum(tiny_splits):
    import torch

    from edge_msa.models import create_model
    from edge_msa.teacher import calibrate_scale
    from edge_msa.training import predict

    torch.manual_seed(0)
    net = create_model("gtf_tiny", tiny_splits.spec)
    raw = predict(net, tiny_splits.valid)
    mae = calibrate_scale(net, tiny_splits.valid, grid=(0.5, 1.0, 2.0))
    scale = net.config_params["score_scale"]
    expected = min((float(np.mean(np.abs(a * raw - tiny_splits.valid.labels))), a) for a in (0.5, 1.0, 2.0))
    assert (mae, scale) == pytest.approx(expected)
    assert np.allclose(predict(net, tiny_splits.valid), scale * raw, atol=1e-5)


def test_a_shuffle_without_its_generator_is_named(tiny_splits):
    """Shuffled batches come from the caller's seeded rng (training is deterministic with a seed); asked to shuffle
    without one, iterate failed with "'NoneType' object has no attribute 'permutation'"."""
    from edge_msa.training import iterate

    with pytest.raises(ValueError, match="shuffle=True.*no rng; expected the seeded np.random.Generator"):
        next(iterate(tiny_splits.train, 16, shuffle=True))
    seeded = [b["index"].tolist() for b in iterate(tiny_splits.train, 16, shuffle=True, rng=np.random.default_rng(0))]
    assert seeded == np.random.default_rng(0).permutation(len(tiny_splits.train)).reshape(-1, 16).tolist()


def test_checkpoint_out_ends_in_pt_in_any_case(tiny_splits, tmp_path):
    """teacher.PT was refused as not ending in .pt, though nothing that reads a checkpoint looks at its suffix."""
    train_teacher("gtf_tiny", out=tmp_path / "t.PT", splits=tiny_splits, epochs=1, progress=False)
    assert load_checkpoint(tmp_path / "t.PT")[0].model_name == "gtf_tiny"
    assert (tmp_path / "t.metrics.json").is_file()


def test_cli_train_writes_checkpoint_and_metrics(tmp_path, monkeypatch, capsys, cli_tiny_teacher):
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "tiny_features.npz"
    _features_npz(data)
    out = tmp_path / "teachers" / "fd.pt"
    rc = main(["train", "--model", "fd_cmdie_tiny", "--data", str(data), "--out", str(out), "--epochs", "2",
               "--batch-size", "8", "--text-encoder", "frozen", "--quiet"])
    assert rc == 0
    assert out.is_file() and metrics_path(out).is_file()
    metrics = json.loads(metrics_path(out).read_text())
    assert set(METRIC_KEYS) <= set(metrics) and metrics["params"] > 0
    assert "acc2_non0" in capsys.readouterr().out
    model, meta = load_checkpoint(out)
    assert model.spec.dims == (384, 5, 7) and meta["seeds"] == [0]


def test_cli_model_param_sizes_the_teacher(tmp_path, monkeypatch, capsys, cli_tiny_teacher):
    """A model's options (its width, say, for a weak board) could be set only from Python (train_teacher's
    model_params); `--model-param KEY=VALUE` passes them from the command line, each value read as JSON."""
    monkeypatch.setenv("EDGE_MSA_CACHE", str(tmp_path / "cache"))
    data, out = tmp_path / "tiny_features.npz", tmp_path / "fd.pt"
    _features_npz(data)
    assert main(["train", "--model", "fd_cmdie_tiny", "--data", str(data), "--out", str(out), "--epochs", "1",
                 "--text-encoder", "frozen", "--quiet", "--model-param", "hidden=8", "--model-param", "dropout=0.25",
                 "--model-param", "score_clip=0"]) == 0
    model, _ = load_checkpoint(out)
    metrics = json.loads(metrics_path(out).read_text())
    for params in (model.config_params, metrics["model_params"]):
        assert (params["hidden"], params["dropout"], params["score_clip"]) == (8, 0.25, 0)
        assert type(params["hidden"]) is int and params["heads"] == 2  # the rest: fd_cmdie_tiny's own
    capsys.readouterr()
    assert main(["info", str(out)]) == 0  # where the help says a trained teacher's options are listed
    assert '"hidden": 8' in capsys.readouterr().out


def _exit_code(argv: list[str]) -> int:
    """main's exit code, whether the parser (SystemExit) or the command (its return value) refused the call."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


@pytest.mark.parametrize("pairs, says", [
    (["hidden"], "argument --model-param: 'hidden' is not KEY=VALUE; expected a model option and its value, such as "
                 "hidden=32; see 'edge-msa train --help'"),
    (["=32"], "argument --model-param: '=32' is not KEY=VALUE;"),
    (["hidden="], "argument --model-param: 'hidden=' is not KEY=VALUE;"),
    (["hidden=[32]"], "argument --model-param: 'hidden=[32]': [32] is not a number, true / false or a word; expected "
                      "a single value, such as hidden=32; see"),
    (["hidden=32", "hidden=16"], "argument --model-param: hidden given twice (hidden=32 and hidden=16); expected each "
                                 "key once; see"),
    # train_teacher's own keywords: Python's TypeError (got multiple values) as a traceback
    (["text_encoder=lstm"], "argument --model-param: text_encoder is a keyword of train_teacher itself "
                            "(--text-encoder), not a model option it passes on; expected a model option; see"),
    (["progress=false"], "argument --model-param: progress is a keyword of train_teacher itself, not a model option"),
    # the library's own checks (registry.check_build), in their own words: an option the model lacks as in Python
    # (Python's TypeError named FDCMDIE.__init__ and no option), a bad value named as typed (it was `hidden = 63.5`)
    (["hiden=32"], "model fd_cmdie has no option 'hiden' (did you mean 'hidden'?); expected one of hidden, heads, "
                   "layers, text_layers, av_layers, dropout, "),
    (["hidden=63.5"], "--model-param hidden=63.5; expected a whole number >= 2\n"),
    (["hidden=32", "heads=3"], "--model-param heads=3 does not divide the attention width 32; expected a head count "
                               "that divides the model's width\n"),
    (["hidden=wide"], "--model-param hidden=wide; expected a whole number >= 2\n"),
    # as typed, not as parsed: `hidden="64"` read as `hidden=64` (as if 64 were refused), 1e2 as 100.0, true as True
    (['hidden="64"'], '--model-param hidden="64"; expected a whole number >= 2\n'),
    (["hidden=1e2"], "--model-param hidden=1e2 is a float; expected a whole number >= 2 (write 100)\n"),
    (["hidden=true"], "--model-param hidden=true; expected a whole number >= 2\n"),
    (["hidden=wide", "hidden=1e2"], "argument --model-param: hidden given twice (hidden=wide and hidden=1e2); "),
])
def test_cli_bad_model_param_is_one_line_before_any_data_is_read(pairs, says, tmp_path, capsys, monkeypatch):
    import edge_msa.teacher as teacher

    def never(*args, **kwargs):
        raise AssertionError("read before the model options were checked")

    monkeypatch.setattr(teacher, "_load", never)
    monkeypatch.setattr(teacher, "_pretrained_text", never)
    flags = [arg for pair in pairs for arg in ("--model-param", pair)]
    assert _exit_code(["train", "--out", str(tmp_path / "t.pt"), "--quiet", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {says}") and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_model_option_is_the_same_line_from_python_and_the_command_line(tmp_path, capsys):
    """The one line for an option the model lacks (registry.check_options), whoever passed it: the command line
    names what its user typed only where a value is wrong (`--model-param hidden=63.5`)."""
    message = one_line_error(lambda: train_teacher("gtf", data="never-read.npz", out=tmp_path / "t.pt", hiden=32))
    assert _exit_code(["train", "--model", "gtf", "--out", str(tmp_path / "t.pt"), "--model-param", "hiden=32"]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
    assert message.startswith("model gtf has no option 'hiden' (did you mean 'hidden'?); expected one of hidden, ")


def test_the_model_options_trains_help_names_are_the_models():
    """--help tells where a model's options are found and names some: each is a keyword of that model's class, and
    the example builds."""
    import inspect
    import shlex

    from edge_msa.cli.train import EPILOG
    from edge_msa.models.fd_cmdie import FDCMDIE
    from edge_msa.models.mult import MulT
    from edge_msa.models.registry import check_build

    example = next(line for line in EPILOG.splitlines() if "--model-param" in line and "edge-msa train" in line)
    args = build_parser().parse_args(shlex.split(example.split("#")[0])[1:])
    assert args.model_params == {"hidden": 32, "layers": 2}
    check_build(args.model, args.model_params)
    assert {"hidden", "heads", "layers", "dropout"} <= set(inspect.signature(FDCMDIE).parameters)
    assert "dim" in inspect.signature(MulT).parameters
    assert build_parser().parse_args(["train"]).model_params == {}  # no flag: train_teacher gets no model_params


def test_a_model_param_kept_as_typed_for_messages_reaches_the_model_as_parsed():
    """The text as typed is for messages only: train_teacher gets the JSON value, of its own type."""
    args = build_parser().parse_args(["train", "--model-param", "dropout=1e-1", "--model-param", 'score_clip="3"'])
    assert args.model_params == {"dropout": 0.1, "score_clip": "3"}
    assert [type(v) for v in args.model_params.values()] == [float, str]


def test_cli_unknown_model_exit_2(tmp_path, capsys):
    data = tmp_path / "tiny_features.npz"
    _features_npz(data, n=12)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--model", "fd_cmdei", "--data", str(data), "--out", str(tmp_path / "x.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error:") and "did you mean 'fd_cmdie'" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("command", ["train", "pipeline"])
@pytest.mark.parametrize("model, says", [("student", ""), ("fd_cmdie_tiny", " (did you mean 'fd_cmdie'?)")])
def test_cli_train_offers_the_teachers_only(command, model, says, tmp_path, capsys):
    """The registry's student (compress's output) and *_tiny test widths trained as teachers through the CLI; they
    are refused before the data is read (no such file here), while the Python API still builds them. The teachers
    are words like any other (cli.one_of): `--model GTF` is gtf."""
    with pytest.raises(SystemExit):
        main([command, "--model", model, "--data", str(tmp_path / "absent.npz"), "--out", str(tmp_path / "x")])
    assert capsys.readouterr().err == (f"error: argument --model: invalid choice '{model}'{says}; expected one of "
                                       f"fd_cmdie, gtf, mult; see 'edge-msa {command} --help'\n")
    assert list(tmp_path.iterdir()) == []
    assert build_parser().parse_args([command, "--model", "GTF"]).model == "gtf"
    assert set(TEACHERS) == set(TRAIN_DEFAULTS)  # each offered teacher has its training defaults


def test_cli_missing_data_file_exit_2(tmp_path, capsys):
    rc = main(["train", "--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "x.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.npz" in err and len(err.splitlines()) == 1


def test_cli_default_data_names_where_edge_msa_data_points(tmp_path, monkeypatch, capsys):
    """$EDGE_MSA_DATA set to the mosi/ folder itself (not the folder above it) was answered with "no
    ../shared/data/mosi/mosi_utterance_std.npz beside the checkout ... (or set EDGE_MSA_DATA)": advice to set what
    was set. The error now names the file it looked for there."""
    monkeypatch.setenv("EDGE_MSA_DATA", str(tmp_path / "mosi"))
    rc = main(["train", "--out", str(tmp_path / "x.pt"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"$EDGE_MSA_DATA holds no {tmp_path / 'mosi' / 'mosi' / 'mosi_utterance_std.npz'}; expected" in err, err


@pytest.mark.parametrize("args, says", [
    (["--out", "teacher.txt"], "--out 'teacher.txt' does not end in .pt; expected the teacher checkpoint to write, "
                               "e.g. teacher.pt"),
    (["--seeds", "0", "-1"], "--seeds -1; expected 0 <= seeds <= 4294967295"),
    (["--seeds", "0", "1", "0"], "--seeds 0 1 0 repeats a seed; expected distinct seeds"),
    (["--text-model", "no/such/folder"], "text encoder folder no/such/folder does not exist"),
    (["--lr", "nan"], "--lr nan; expected a finite number > 0\n"),  # not a torch error
    (["--epochs", "0"], "--epochs 0; expected >= 1\n"),  # it listed every setting, and not which was wrong
    (["--batch-size", "0"], "--batch-size 0; expected >= 1\n"),
    (["--text-encoder", "FROZEN", "--text-model", "x"], "--text-model x is an encoder to fine-tune, but the text "
     "encoder is frozen (frozen MiniLM features); expected one of --text-model and --text-encoder frozen\n"),
    (["--threads", "-1"], "--threads -1; expected >= 0 (0: the library's default)\n"),
    (["--cv-fold", "4/4"], "--cv-fold '4/4'; expected 0 <= FOLD < FOLDS and FOLDS >= 2"),
    (["--cv-fold", "1-4"], "--cv-fold '1-4'; expected FOLD/FOLDS such as 0/4"),
])
def test_cli_bad_request_is_refused_before_any_data_is_read(args, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "--data", "never-read.npz", *args, "--quiet"])  # the missing file is never reached
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {says}") and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_data_format_is_read_in_any_case_and_a_wrong_one_named_by_the_parser(capsys):
    """`--data-format MISA` reached the loader, which refused it: its names are case-sensitive. The names live in the
    light dataset_formats, so the parser checks them (one_of) without importing the readers."""
    from edge_msa.cli import build_parser

    assert build_parser().parse_args(["train", "--data-format", "MISA"]).fmt == "misa"
    with pytest.raises(SystemExit):
        main(["train", "--data-format", "misa-csv"])
    assert "argument --data-format: invalid choice 'misa-csv' (did you mean " in capsys.readouterr().err


def test_a_training_setting_is_named_as_the_flag_on_the_command_line_and_the_keyword_in_python(tmp_path):
    """`train --epochs 0` (0 epochs would save an untrained teacher, so it is refused) said `epochs = 0`, the
    keyword; train_teacher's caller passed that keyword and is told it. Each such flag is the keyword's. The seeds,
    threads and text encoder checks told a Python caller about `--seeds`, `--threads` and `--text-model`."""
    import inspect

    from edge_msa.cli import build_parser
    from edge_msa.cli.train import TRAINING_KNOBS
    from edge_msa.errors import InputError
    from edge_msa.teacher import train_teacher

    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest: a.option_strings[0] for a in train_parser._actions}
    assert {flags[knob] for knob in TRAINING_KNOBS} == {"--epochs", "--batch-size", "--lr", "--seeds", "--threads",
                                                        "--text-encoder", "--text-model"}
    assert set(TRAINING_KNOBS) <= set(inspect.signature(train_teacher).parameters)
    for kwargs, says in (({"epochs": 0}, "epochs = 0; expected >= 1"), ({"lr": -1.0}, "lr = -1.0; expected > 0"),
                         ({"seeds": (0.5,)}, "seeds = 0.5; expected a whole number 0 <= seeds <= 4294967295"),
                         ({"threads": -1}, "threads = -1; expected >= 0 (0: the library's default)"),
                         ({"text_encoder": "frozen", "text_model": "x"}, "text_model = 'x' is an encoder to "
                          "fine-tune, but the text encoder is frozen (frozen MiniLM features); expected one of "
                          "text_model and text_encoder = 'frozen'"),
                         # read in any case, as compress's keywords: 'FROZEN' was unknown
                         ({"text_encoder": "FROZEN", "text_model": "x"}, "text_model = 'x' is an encoder to "
                          "fine-tune, but the text encoder is frozen (frozen MiniLM features); expected one of "
                          "text_model and text_encoder = 'frozen'"),
                         ({"text_encoder": "frozn"}, "text_encoder = 'frozn' is unknown (did you mean 'frozen'?); "
                          "expected one of finetune, frozen"),
                         # the closest word is looked for in lower case, as the CLI's one_of does
                         ({"text_encoder": "FROZN"}, "text_encoder = 'FROZN' is unknown (did you mean 'frozen'?); "
                          "expected one of finetune, frozen")):
        with pytest.raises(InputError) as exc:
            train_teacher(data="never-read.npz", out=tmp_path / "t.pt", **kwargs)
        assert str(exc.value) == says
    assert list(tmp_path.iterdir()) == []


def test_training_counts_from_python_are_whole_numbers(tmp_path):
    """`train --epochs` parses an int, but train_teacher(epochs=2.5) was a TypeError from range() inside fit after the
    data load, batch_size 8.5 one from iterate, and TrainConfig(patience=1.5) ran as patience 2 (errors.check_range's
    whole=True); a non-finite count is told it must be finite, as before."""
    from edge_msa.training import TrainConfig

    for kwargs, says in (({"epochs": 2.5}, "epochs = 2.5; expected a whole number >= 1"),
                         ({"batch_size": 8.5}, "batch_size = 8.5; expected a whole number >= 1"),
                         ({"batch_size": "8"}, "batch_size = '8'; expected a whole number >= 1"),
                         ({"epochs": float("inf")}, "epochs = inf; expected a finite number >= 1")):
        with pytest.raises(InputError) as exc:
            train_teacher(data="never-read.npz", out=tmp_path / "t.pt", **kwargs)
        assert str(exc.value) == says
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match=r"^patience = 1\.5; expected a whole number >= 1$"):
        TrainConfig(patience=1.5)
    assert TrainConfig(epochs=np.int64(3)).epochs == 3  # numpy's ints are whole


@pytest.mark.parametrize("model_params, says", [({"hidden": 63.5}, "hidden = 63.5; expected a whole number >= 2"),
                                                 ({"heads": 0}, "heads = 0; expected >= 1")])
def test_model_counts_are_checked_before_any_data_is_read(model_params, says, tmp_path):
    """A width or a head count passed as model_params failed inside torch after the data load."""
    message = one_line_error(lambda: train_teacher("gtf", data="never-read.npz", out=tmp_path / "t.pt", **model_params))
    assert message == says and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("model, model_params, says", [
    ("gtf", {"hidden": 15}, "hidden = 15 is odd; expected an even width (a BiLSTM gives each of its directions "
                            "half)"),
    ("gtf_tiny", {"heads": 3}, "heads = 3 does not divide the attention width 16; expected a head count that divides "
                               "the model's width"),  # 16: the width gtf_tiny merges in
    # the options read from the constructor, less train_teacher's own keywords (fd_cmdie's text_encoder)
    ("fd_cmdie", {"text_encoder_kind": 1}, "model fd_cmdie has no option 'text_encoder_kind'; expected one of hidden, "
                                           "heads, layers, text_layers, av_layers, dropout, modality_dropout, "
                                           "av_input_dropout, k_cl, tau, margin, lambda_cl, lambda_tri, score_clip"),
    ("mult", {"hiden": 32}, "model mult has no option 'hiden'; expected one of dim, heads, cross_layers, memory_layers, "
                            "dropout, modality_dropout, av_input_dropout"),  # mult's width is dim
    ("gtf_tiny", {"hiden": 32}, "model gtf_tiny has no option 'hiden' (did you mean 'hidden'?); expected one of "
                                "hidden, heads, fusion_layers, dropout, modality_dropout, av_input_dropout, "
                                "cmd_moments, alpha, beta, score_clip, score_scale"),
    # torch's nn.Dropout refused it with a ValueError, which the registry let through as a traceback; the
    # constructor's base.check_probabilities now says it in the rule's words
    ("gtf_tiny", {"dropout": 1.5}, "dropout = 1.5; expected 0 <= dropout < 1 (a probability)"),
])
def test_options_the_model_cannot_be_built_with_are_refused_before_any_data_is_read(model, model_params, says,
                                                                                    tmp_path, monkeypatch):
    """An odd BiLSTM width, heads that do not divide the width (with the widths a *_tiny factory merges in) and an
    unknown keyword were refused by the constructor, i.e. after the data load and the encoder's (registry.check_build
    runs the factory first). Both loads fail loudly here, so the message proves it came first."""
    import edge_msa.teacher as teacher

    def never(*args, **kwargs):
        raise AssertionError("read before the options were checked")

    monkeypatch.setattr(teacher, "_load", never)
    monkeypatch.setattr(teacher, "_pretrained_text", never)
    message = one_line_error(lambda: train_teacher(model, out=tmp_path / "t.pt", **model_params))
    assert message == says and list(tmp_path.iterdir()) == []


def test_a_kind_of_fd_cmdies_text_encoder_is_refused_naming_the_clash(tiny_splits, tmp_path):
    """train_teacher's text_encoder (finetune / frozen) takes the keyword of fd_cmdie's constructor argument (its text
    encoder's kind), which train_teacher therefore cannot set; 'transformer' was told only that it is unknown. The
    way the line names builds and trains that kind."""
    from edge_msa.models import create_model
    from edge_msa.training import TrainConfig, fit

    message = one_line_error(lambda: train_teacher(data="never-read.npz", out=tmp_path / "t.pt",
                                                   text_encoder="Transformer"))
    assert message.startswith("text_encoder = 'Transformer' is a kind of fd_cmdie's text encoder (")
    assert "so fd_cmdie trains with its default, linear; expected one of finetune, frozen (" in message
    assert list(tmp_path.iterdir()) == []
    model = create_model("fd_cmdie_tiny", tiny_splits.spec, text_encoder="transformer")
    fit(model, tiny_splits.train, tiny_splits.valid, TrainConfig(epochs=1), progress=False)
    assert model.encoders["text"].kind == "transformer"


@pytest.mark.parametrize("kwargs, says", [
    # stopped after the first epoch without a word (and 0 was read as no limit)
    ({"max_minutes": -1}, "max_minutes = -1; expected > 0 (inf: no limit)"),
    ({"max_minutes": 0}, "max_minutes = 0; expected > 0 (inf: no limit)"),
    ({"max_minutes": "5"}, "max_minutes = '5'; expected a number > 0 (inf: no limit)"),
    # ValueError from AdamW, after the data load
    ({"weight_decay": float("nan")}, "weight_decay = nan; expected a finite number >= 0"),
    ({"weight_decay": -0.01}, "weight_decay = -0.01; expected >= 0"),
    # a negative clip norm flipped every gradient; NaN made NaN weights, blamed on the learning rate
    ({"grad_clip": -1.0}, "grad_clip = -1.0; expected >= 0"),
    ({"grad_clip": float("nan")}, "grad_clip = nan; expected a finite number >= 0"),
    ({"grad_clip": "1"}, "grad_clip = '1'; expected a number >= 0"),
    # 0 fell back to lr without a word; AdamW checks its default lr, not a group's: NaN made the encoder NaN
    ({"encoder_lr": 0.0}, "encoder_lr = 0.0; expected > 0"),
    ({"encoder_lr": float("nan")}, "encoder_lr = nan; expected a finite number > 0"),
    # a TypeError / ValueError from numpy's seeding when fit began
    ({"seed": 0.5}, "seed = 0.5; expected a whole number 0 <= seed <= 4294967295"),
    ({"seed": -1}, "seed = -1; expected 0 <= seed <= 4294967295"),
    ({"warmup": "0.1"}, "warmup = '0.1'; expected a number >= 0"),  # a bare TypeError from the comparison
])
def test_training_knobs_without_a_flag_are_checked_when_the_config_is_made(kwargs, says):
    """max_minutes, weight_decay, grad_clip, encoder_lr, seed and warmup have no flag of their own; TrainConfig, which
    train_teacher builds for every phase before the data load, checks them with the one rule of each (check_range,
    checked_seeds), named as given."""
    from edge_msa.training import TrainConfig

    assert one_line_error(lambda: TrainConfig(**kwargs)) == says


def test_training_knobs_at_their_edges_are_taken():
    """None and inf are no time limit, 0 turns clipping and weight decay off, None is lr's encoder lr: the defaults
    and the phases' values stay as they were."""
    from edge_msa.teacher import JOINT_PHASE, TEXT_PHASE
    from edge_msa.training import TrainConfig

    for kwargs in ({}, {"max_minutes": None}, {"max_minutes": float("inf")}, {"grad_clip": 0}, {"weight_decay": 0.0},
                   {"encoder_lr": None}, TEXT_PHASE, JOINT_PHASE, *TRAIN_DEFAULTS.values()):
        TrainConfig(**kwargs)


@pytest.mark.parametrize("command", ["train", "compress"])
def test_cli_unwritable_out_is_refused_before_any_work(command, tmp_path, capsys, monkeypatch):
    """Both commands write only after minutes of work: an --out they cannot create fails first, in one line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    first = ["never-read.pt"] if command == "compress" else ["--data", "never-read.npz"]
    assert main([command, *first, "--out", "a_file/sub/x.pt", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write 'a_file/sub/x.pt': ") and "a_file is a file" in err
    assert len(err.splitlines()) == 1
    (tmp_path / "folder.pt").mkdir()
    assert main([command, *first, "--out", "folder.pt", "--quiet"]) == 2
    assert "'folder.pt' is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "folder.pt"]


def test_help_says_which_phases_epochs_batch_size_and_lr_set(capsys):
    """--lr and --batch-size set the fusion phase alone (the fine-tuned encoder's text and joint phases keep theirs)
    and --epochs caps every phase; the help said "learning rate (default: per model)", as if it set them all."""
    from edge_msa.teacher import JOINT_PHASE, TEXT_PHASE, _settings

    phases = _settings("fd_cmdie", epochs=2, batch_size=8, lr=1e-2, with_encoder=True)
    assert (phases["fusion"]["epochs"], phases["fusion"]["batch_size"], phases["fusion"]["lr"]) == (2, 8, 1e-2)
    for name, phase in (("text", TEXT_PHASE), ("joint", JOINT_PHASE)):
        assert phases[name] == {**phase, "epochs": min(2, phase["epochs"])}
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE batch size of the fusion model's training (default: per model); the fine-tuned " \
           "text encoder's text and joint phases keep their own" in text
    assert "--lr LR learning rate of the fusion model's training" in text and "also a cap on its text and joint" in text


def test_cli_bad_option_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "many"])
    assert exc.value.code == 2


@pytest.mark.slow
@needs_data
def test_train_real_mosi_one_epoch(tmp_path):
    """One short epoch of the real fd_cmdie on MOSI-U (frozen text features: fine-tuning the real MiniLM has its own
    few-step test): the pipeline runs and beats a constant guess."""
    m = train_teacher("fd_cmdie", data=MOSI_NPZ, out=tmp_path / "fd.pt", epochs=1, progress=False,
                      text_encoder="frozen", hidden=32, layers=1)
    assert m["dataset"] and np.isfinite(m["mae"]) and m["mae"] < 1.6


@pytest.mark.parametrize("extra", [{"cv_fold": (0, 5)}, {"data": "other.csv"}, {"fmt": "mmsa-label-csv"}])
def test_splits_with_loading_arguments_are_refused(tmp_path, tiny_splits, extra):
    """cv_fold / data / fmt only say how to load splits: beside given splits they were silently ignored."""
    message = one_line_error(lambda: train_teacher("gtf_tiny", out=tmp_path / "t.pt", splits=tiny_splits, epochs=1,
                                                   progress=False, **extra))
    assert message == (f"train_teacher got splits and also {next(iter(extra))}, which only say how to load splits; "
                       "expected splits alone, or data (with fmt / cv_fold) to load them from")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text_encoder", ["finetune", "frozen"])
def test_a_text_bert_model_param_is_refused_before_any_data_is_read(text_encoder, tmp_path):
    """text_bert (the config of a text encoder inside the model) is train_teacher's own, built from text_model: as a
    model_param it failed after the data load with create_model's TypeError (text_bert given twice), or with a frozen
    encoder wrapped a random encoder around the text features and failed in its forward (torch's RuntimeError)."""
    text_bert = {"vocab_size": 40, "hidden": 32, "layers": 2, "heads": 4, "head_dim": 8, "ffn": 64, "max_positions": 12}
    message = one_line_error(lambda: train_teacher("gtf_tiny", data="never-read.npz", out=tmp_path / "t.pt",
                                                   text_encoder=text_encoder, text_bert=text_bert))
    assert message == ("text_bert is set by train_teacher from the text encoder it fine-tunes; expected no text_bert "
                       "among the model options (text_model, a Hugging Face folder, chooses the encoder)")
    assert list(tmp_path.iterdir()) == []


def test_a_text_bert_model_param_is_told_by_trains_flags(tmp_path, capsys):
    """From `edge-msa train` the line names the flags typed (it read `expected --text-model = a Hugging Face
    folder`, a flag followed by ` = `); pipeline's, which has no --text-model, is in test_pipeline_resume."""
    assert _exit_code(["train", "--out", str(tmp_path / "t.pt"), "--model-param", "text_bert=1"]) == 2
    assert capsys.readouterr().err == (
        "error: --model-param text_bert=1 is set by train_teacher from the text encoder it fine-tunes; expected no "
        "text_bert among the model options (--text-model FOLDER chooses the encoder)\n")
    assert list(tmp_path.iterdir()) == []


def test_a_score_scale_model_param_is_refused_before_any_data_is_read(tmp_path):
    """gtf's score_scale is fitted on validation by calibrate_scale, which reset it to 1 first: a value given as a
    model option was trained with and then dropped without a word."""
    message = one_line_error(lambda: train_teacher("gtf_tiny", data="never-read.npz", out=tmp_path / "t.pt",
                                                   score_scale=0.9))
    assert message == ("score_scale is fitted on validation by train_teacher; expected no score_scale among the "
                       "model options")
    assert list(tmp_path.iterdir()) == []


def test_a_score_scale_model_param_is_told_by_trains_flags(tmp_path, capsys):
    """`edge-msa train --model-param score_scale=...` names the flag as typed; a model without the option (fd_cmdie)
    is still told it has none."""
    assert _exit_code(["train", "--model", "gtf", "--data", "never-read.npz", "--out", str(tmp_path / "t.pt"),
                       "--model-param", "score_scale=0.9"]) == 2
    assert capsys.readouterr().err == ("error: --model-param score_scale=0.9 is fitted on validation by train_teacher; "
                                       "expected no score_scale among the model options\n")
    assert _exit_code(["train", "--out", str(tmp_path / "t.pt"), "--model-param", "score_scale=0.9"]) == 2
    assert capsys.readouterr().err.startswith("error: model fd_cmdie has no option 'score_scale'")
    assert list(tmp_path.iterdir()) == []
