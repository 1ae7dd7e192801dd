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
