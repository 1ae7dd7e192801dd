"""`edge-msa pipeline --resume`: which stages its record lets it skip (real files and hashes; no models)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_msa.cli import main
from edge_msa.cli.pipeline import STATE_FILE, StageLog
from edge_msa.errors import InputError


def _stage(log: StageLog, name: str, inputs: dict, out: Path, text: str, calls: list[str]) -> None:
    def work() -> None:
        calls.append(name)
        out.write_text(text)

    log.run(name, f"-> {out.name}", inputs, [out], work)


def _two_stages(run_dir: Path, resume: bool, setting: int = 1, text: str = "a") -> list[str]:
    """Stage A writes a.txt; stage B reads it (its input) and writes b.txt. Returns the stages that ran."""
    calls: list[str] = []
    log = StageLog(run_dir, resume=resume)
    a, b = run_dir / "a.txt", run_dir / "b.txt"
    _stage(log, "A", {"setting": setting}, a, text, calls)
    _stage(log, "B", {"from": a}, b, "b", calls)
    return calls


def test_resume_skips_finished_stages_and_reruns_from_the_first_change(tmp_path):
    assert _two_stages(tmp_path, resume=False) == ["A", "B"]
    assert _two_stages(tmp_path, resume=True) == []
    assert _two_stages(tmp_path, resume=True, setting=2, text="a") == ["A"]  # same output bytes: B still valid
    assert _two_stages(tmp_path, resume=True, setting=3, text="changed") == ["A", "B"]  # B's input changed
    (tmp_path / "b.txt").write_text("edited by hand")
    assert _two_stages(tmp_path, resume=True, setting=3, text="changed") == ["B"]
    (tmp_path / "b.txt").unlink()
    assert _two_stages(tmp_path, resume=True, setting=3, text="changed") == ["B"]
    assert _two_stages(tmp_path, resume=False, setting=3, text="changed") == ["A", "B"]  # no --resume: all run
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["format"] == "edge-msa-pipeline-v1" and len(state["stages"]) == 2


def test_a_failed_stage_is_not_recorded(tmp_path):
    log = StageLog(tmp_path, resume=True)

    def fail() -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        log.run("A", "-> a.txt", {}, [tmp_path / "a.txt"], fail)
    assert not (tmp_path / STATE_FILE).exists()


@pytest.mark.parametrize("content", ["{not json", '{"format": "something-else", "stages": {}}', "[1, 2]",
                                     '{"format": "edge-msa-pipeline-v1", "stages": {"1/4 train: x": 1}}',  # TypeError
                                     '{"format": "edge-msa-pipeline-v1", "stages": {"A": {"inputs": {}}}}'])  # KeyError
def test_resume_refuses_a_record_it_did_not_write(tmp_path, capsys, content):
    (tmp_path / STATE_FILE).write_text(content)
    with pytest.raises(InputError, match="is not an edge-msa pipeline record"):
        StageLog(tmp_path, resume=True)
    data = tmp_path / "data.npz"
    data.write_bytes(b"")
    assert main(["pipeline", "--data", str(data), "--out", str(tmp_path), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and STATE_FILE in err[0]
    assert (tmp_path / STATE_FILE).read_text() == content  # left as it was


def test_pipeline_names_a_missing_dataset_before_any_stage(tmp_path, capsys):
    assert main(["pipeline", "--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "run")]) == 2
    assert "dataset not found" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _fake_stages(monkeypatch) -> list[str]:
    """`edge-msa pipeline`'s four stages replaced by writers of small files; returns the list of stages that ran."""
    import edge_msa.benchmarks
    import edge_msa.cli.pipeline
    import edge_msa.compress
    import edge_msa.export

    ran: list[str] = []

    def write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def train(args, data, out, progress):
        ran.append("train")
        write(out, "teacher")
        write(out.with_name("teacher.metrics.json"), "{}")

    def compress(teacher, data, out, progress, **settings):
        ran.append("compress")
        for name in ("student.pt", "student.report.json", "student.report.md"):
            write(out.with_name(name), name)

    def export(ckpt, format, out, data):
        ran.append(f"export {out.name}")
        write(out / "manifest.json", f"{ckpt.name} {format}")

    def run_bench(targets, data, out, min_time, progress):
        ran.append("bench")
        write(out / "report.md", "| bundle |")

    monkeypatch.setattr(edge_msa.cli.pipeline, "_train", train)
    monkeypatch.setattr(edge_msa.compress, "compress", compress)
    monkeypatch.setattr(edge_msa.export, "export", export)
    monkeypatch.setattr(edge_msa.benchmarks, "run_bench", run_bench)
    return ran


def test_resume_does_not_depend_on_how_out_is_spelled_or_where_the_run_folder_moved(tmp_path, monkeypatch, capsys):
    """Stages were keyed on the literal --out: `--out /abs/runs/mosi` after `--out runs/mosi` retrained everything."""
    ran = _fake_stages(monkeypatch)
    data = tmp_path / "data.npz"
    data.write_bytes(b"data")
    monkeypatch.chdir(tmp_path)
    pipeline = ["pipeline", "--data", str(data), "--quiet"]
    assert main([*pipeline, "--out", "runs/mosi"]) == 0 and len(ran) == 6
    ran.clear()
    assert main([*pipeline, "--out", str(tmp_path / "runs" / "mosi"), "--resume"]) == 0
    (tmp_path / "runs" / "mosi").rename(tmp_path / "moved")
    assert main([*pipeline, "--out", "moved/", "--resume"]) == 0
    assert ran == []
    assert capsys.readouterr().out.count("(resumed: finished earlier with the same inputs)") == 12


def test_a_record_keyed_by_the_out_typed_then_still_resumes(tmp_path, monkeypatch):
    """pipeline.json files from before relative keys ("1/4 train: ... -> runs/mosi/teacher.pt") stay resumable."""
    ran = _fake_stages(monkeypatch)
    data = tmp_path / "data.npz"
    data.write_bytes(b"data")
    run = ["pipeline", "--data", str(data), "--quiet", "--out", str(tmp_path / "run")]
    assert main(run) == 0
    state_file = tmp_path / "run" / STATE_FILE
    state = json.loads(state_file.read_text())
    legacy = {key.replace(" -> ", " -> runs/mosi/"): record for key, record in state["stages"].items()}
    assert "1/4 train: fd_cmdie teacher -> runs/mosi/teacher.pt" in legacy
    assert "3/4 export: student.pt as onnx-int8 -> runs/mosi/bundles/student-int8" in legacy
    state_file.write_text(json.dumps({**state, "stages": legacy}))
    ran.clear()
    assert main([*run, "--resume", "--min-time", "3"]) == 0
    assert ran == ["bench"]  # its min_time changed; every other stage resumed
    assert set(json.loads(state_file.read_text())["stages"]) == set(state["stages"])  # rewritten relative


@pytest.mark.parametrize("flags, says", [(["--min-time", "-1"], "--min-time -1; expected >= 0\n"),  # check_range's
                                         (["--min-time", "nan"], "--min-time nan; expected a finite number >= 0\n"),
                                         (["--epochs", "0"], "--epochs 0; expected >= 1\n"),  # train's words
                                         (["--seeds", "0", "-2"], "--seeds -2; expected 0 <= seeds <= "),
                                         # train's words for its --model-param, which it passes on
                                         (["--model-param", "hiden=3"], "model fd_cmdie has no option 'hiden' (did "
                                                                        "you mean 'hidden'?); expected one of hidden, "),
                                         (["--model-param", "hidden=63.5"], "--model-param hidden=63.5; expected a "
                                                                            "whole number >= 2\n"),
                                         (["--model", "gtf", "--model-param", "hidden=15"], "--model-param hidden=15 "
                                                                                            "is odd; expected an even "),
                                         # no --text-model in pipeline: the line names none (nor text_model)
                                         (["--model-param", "text_bert=1"], "--model-param text_bert=1 is set by "
                                          "train_teacher from the text encoder it fine-tunes; expected no text_bert "
                                          "among the model options\n"),
                                         (["--model", "gtf", "--model-param", "score_scale=0.9"], "--model-param "
                                          "score_scale=0.9 is fitted on validation by train_teacher; expected no "
                                          "score_scale among the model options\n")])
def test_bad_flags_are_refused_before_any_stage(flags, says, tmp_path, monkeypatch, capsys):
    """--min-time was checked at stage 4 (after ~20 min of training), by a message naming bench's flags; a bad
    --model-param when stage 1 began (train_teacher's check), after its header."""
    ran = _fake_stages(monkeypatch)
    data = tmp_path / "data.npz"
    data.write_bytes(b"data")
    assert main(["pipeline", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet", *flags]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"error: {says}") and len(err.splitlines()) == 1 and "==" not in out
    assert ran == [] and not (tmp_path / "run").exists()


def test_model_params_reach_the_teacher_and_only_a_change_retrains_it(tmp_path, monkeypatch):
    """`pipeline --model-param` passes through to train_teacher (as `train --model-param` does) and is part of the
    train stage's record: the same options resume, others retrain; without the flag the record is as before it."""
    import edge_msa.cli.pipeline
    import edge_msa.teacher

    train = edge_msa.cli.pipeline._train
    ran = _fake_stages(monkeypatch)
    monkeypatch.setattr(edge_msa.cli.pipeline, "_train", train)  # the real stage, around a fake train_teacher
    given: list[dict] = []

    def train_teacher(model, data, out, seeds, epochs, progress, text_encoder, **model_params):
        given.append(model_params)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("teacher")
        out.with_name("teacher.metrics.json").write_text("{}")

    monkeypatch.setattr(edge_msa.teacher, "train_teacher", train_teacher)
    data = tmp_path / "data.npz"
    data.write_bytes(b"data")
    run = ["pipeline", "--data", str(data), "--quiet", "--out", str(tmp_path / "run"), "--resume"]
    for flags in ([], ["--model-param", "hidden=32"], ["--model-param", "hidden=32"], ["--model-param", "hidden=16"]):
        assert main([*run, *flags]) == 0
    assert given == [{}, {"hidden": 32}, {"hidden": 16}]  # the third run resumed the second's teacher
    records = json.loads((tmp_path / "run" / STATE_FILE).read_text())["stages"]
    assert records["1/4 train: fd_cmdie teacher -> teacher.pt"]["inputs"]["model_params"] == {"hidden": 16}
    assert main(run) == 0 and len(given) == 4
    assert "model_params" not in json.loads((tmp_path / "run" / STATE_FILE).read_text())["stages"][
        "1/4 train: fd_cmdie teacher -> teacher.pt"]["inputs"]
    assert "train" not in ran  # the stage ran through _train, not the fake of the others' tests
