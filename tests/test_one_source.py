"""One helper per job across the tree: where two functions did the same job in their own words, one did it worse."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import one_line_error


class _Refusing:
    """An onnxruntime session stand-in whose run raises `exc`."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def run(self, outputs, feed):
        raise self.exc


@pytest.fixture
def relu_backend(tmp_path):
    """An OnnxRuntimeBackend over a one-node graph y = relu(x), x (1, 3) float32."""
    from onnx import TensorProto, helper, save

    from edge_msa.runtime.onnxruntime_backend import OnnxRuntimeBackend

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, tmp_path / "relu.onnx")
    return OnnxRuntimeBackend(tmp_path / "relu.onnx", threads=1)


def test_onnxruntime_refusal_keeps_its_detail_and_survives_an_empty_message(relu_backend):
    """The backend kept the first line of onnxruntime's message (errors.one_line, the package's rule, keeps them all):
    'Got invalid dimensions for input: x for the following indices' lost the line saying which index and sizes, and
    an exception with an empty message raised IndexError from the error handler itself."""
    feed = {"x": np.zeros((1, 3), np.float32)}
    refusal = ("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x for the following "
               "indices\n index: 1 Got: 5 Expected: 3")
    relu_backend.session = _Refusing(RuntimeError(refusal))
    assert one_line_error(lambda: relu_backend.run(feed)).endswith("indices index: 1 Got: 5 Expected: 3)")
    relu_backend.session = _Refusing(RuntimeError())
    assert one_line_error(lambda: relu_backend.run(feed)).endswith("onnxruntime rejected the inputs (RuntimeError)")


def test_unreadable_audio_without_pyav_names_the_error_when_it_has_no_message(monkeypatch):
    """soundfile's refusal was spelt out by hand (its words joined), which left 'cannot read audio x.wav: ;' for an
    error without words; errors.one_line names its type instead."""
    from edge_msa.features import audio

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "av" else real(name, *a))
    message = one_line_error(lambda: audio.unreadable_without_av(Path("x.wav"), RuntimeError()))
    assert message == "cannot read audio x.wav: RuntimeError; expected a WAV/FLAC/OGG/MP3 file"


@pytest.mark.parametrize("knob, value", [("prune_ratio", "0.5"), ("skip_budget", "0.5"), ("max_drop", [0.01]),
                                         ("max_drop", True), ("skip_budget", True)])
def test_compress_fractions_follow_the_one_range_rule(knob, value):
    """prune_ratio, skip_budget and max_drop were compared by hand rather than by check_range, the rule of every
    other knob: a string from a Python caller was a bare TypeError from the comparison, and True passed as 1."""
    from compress.options import CompressOptions

    message = one_line_error(lambda: CompressOptions.build(**{knob: value}))
    assert message.startswith(f"{knob} = {value!r}; expected a number ")


@pytest.mark.parametrize("tool", ["selection_gap", "fold_drop"])
def test_resamples_follow_the_one_range_rule(tool):
    """Both bootstrap tools compared resamples by hand: '20' from a Python caller was a bare TypeError, 2.5 ran, and
    a Python caller was told of a --resamples flag it never typed. The flag still names itself (test_compress_cli)."""
    import importlib

    run = getattr(importlib.import_module(f"compress.{tool}"), tool)
    assert one_line_error(lambda: run([], resamples="20")) == "resamples = '20'; expected a whole number >= 1"
    assert one_line_error(lambda: run([], resamples=0)) == "resamples = 0; expected >= 1"
    assert one_line_error(lambda: run([], resamples=2.5)).startswith("resamples = 2.5; expected a whole number")


def test_the_mosei_transfer_file_is_looked_for_where_the_data_folder_rule_says(tmp_path, monkeypatch, capsys):
    """--transfer mosei's help and its warning named '../shared/data' alone, their own copy of where the data folder
    is: a user who had set $EDGE_MSA_DATA (which the file is read from first) was told it was ignored. Both are now
    worded by paths.searched, as the --data help is."""
    from edge_msa import paths
    from edge_msa.cli import main
    from edge_msa.compress import CompressOptions

    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    assert "'mosei' (train fold of $EDGE_MSA_DATA/mosei/label.csv, else ../shared/data/mosei/label.csv beside the " \
           "checkout or the working directory)" in " ".join(capsys.readouterr().out.split())
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.setattr(paths, "SHARED_DATA_FROM", {"the checkout": lambda: tmp_path / "a" / "b"})
    with pytest.warns(UserWarning, match=r"^transfer = 'mosei' skipped: \$EDGE_MSA_DATA/mosei/label.csv, else "):
        assert CompressOptions().transfer_path() is None


def test_split_messages_count_in_english():
    """The carving messages wrote 'video(s)' and 'fold(s)', beside errors.plural, the package's one way to count
    ('1 video', '3 videos')."""
    from edge_msa.splits import carve_by_group, folds_by_group

    index, one_video = np.arange(4), np.zeros(4, dtype=int)
    assert one_line_error(lambda: carve_by_group(index, one_video, 0.5, 0)) == \
        "cannot carve a 50% split from 1 video; expected at least 2"
    assert one_line_error(lambda: folds_by_group(index, one_video, 1, 0)) == \
        "cannot make 1 cross-validation fold; expected at least 2"


def test_one_json_reader_reads_a_json_object_file(tmp_path):
    """errors.read_json_object parsed files with json alone, beside jsonio's reader of what edge-msa writes (+-inf
    as "Infinity" / "-Infinity"), so the manifest restored the infinities by hand after reading it: one reader now."""
    from edge_msa.errors import ArtifactError
    from edge_msa.jsonio import dumps, read_json_object

    path = tmp_path / "limits.json"
    path.write_text(dumps({"max_drop": math.inf, "corr": math.nan}))
    assert read_json_object(path, "limits") == {"max_drop": math.inf, "corr": None}
    path.write_text("[1, 2]")
    with pytest.raises(ArtifactError, match=r"limits.json holds a list; expected limits \(an object\)$"):
        read_json_object(path, "limits")


@pytest.mark.parametrize("shares, message", [
    ({"valid": "0.2"}, "valid = '0.2'; expected a number 0 <= valid < 1 (a fraction of the rows, with valid + test "
                       "< 1)"),
    ({"test": [0.1]}, "test = [0.1]; expected a number 0 <= test < 1 (a fraction of the rows, with valid + test < 1)")])
def test_feedback_export_shares_follow_the_one_range_rule(tmp_path, shares, message):
    """export_label_csv compared valid and test by hand: '0.2' from a Python caller was a bare TypeError."""
    from edge_msa.serve.feedback import FeedbackLog, export_label_csv

    FeedbackLog(tmp_path / "fb.sqlite").close()
    assert one_line_error(lambda: export_label_csv(tmp_path / "fb.sqlite", tmp_path / "x.csv", **shares)) == message
    assert not (tmp_path / "x.csv").exists()


def test_feedback_annotations_are_the_predictions_polarity_words(tmp_path):
    """The feedback export's MMSA annotation column had its own sign rule beside the runtime's polarity; one rule
    (labels.polarity), capitalised as MMSA writes it. A refactor: this holds before and after."""
    import csv

    from edge_msa.labels import polarity
    from edge_msa.serve.feedback import FeedbackLog, export_label_csv

    log = FeedbackLog(tmp_path / "fb.sqlite")
    for i, label in enumerate((1.5, -0.2, 0.0)):
        log.add(f"r{i}", f"d{i}", "some text", "{}", label)
    log.close()
    export_label_csv(tmp_path / "fb.sqlite", tmp_path / "x.csv")
    with open(tmp_path / "x.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["annotation"] for r in rows] == ["Positive", "Negative", "Neutral"]
    assert [polarity(s) for s in (1.5, -0.2, 0.0)] == ["positive", "negative", "neutral"]
