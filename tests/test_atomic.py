"""atomic writes: two writers to one --out never delete each other's files (issue 10, item 8), and an --out that
cannot be written is refused in one line, before any work where a command checks it first."""
from __future__ import annotations

from pathlib import Path

import pytest

from edge_msa.atomic import atomic_dir, atomic_path, check_parent, check_replaceable, write_text
from edge_msa.checkpoint import require_writable_pt
from edge_msa.errors import InputError


def _write(out, text: str) -> None:
    with atomic_dir(out, "manifest.json", "bundle") as tmp:
        (tmp / "manifest.json").write_text(text)


def test_replacing_an_output_leaves_another_writers_rename_aside_alone(tmp_path):
    out = tmp_path / "bundle"
    _write(out, "first")
    other = tmp_path / ".bundle.old"  # the fixed name the old code used: another writer's set-aside copy
    other.mkdir()
    (other / "manifest.json").write_text("theirs")
    _write(out, "second")
    assert (out / "manifest.json").read_text() == "second"
    assert (other / "manifest.json").read_text() == "theirs"


def test_repeated_replacement_leaves_only_the_output(tmp_path):
    out = tmp_path / "bundle"
    for text in ("a", "b", "c"):
        _write(out, text)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert (out / "manifest.json").read_text() == "c"


def test_an_out_under_a_file_is_refused_before_any_work(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(InputError, match=r"cannot write '.*notes.txt/x/b': .*notes.txt is a file"):
        check_replaceable(notes / "x" / "b", "manifest.json", "bundle")
    with pytest.raises(InputError, match="notes.txt is a file"):
        require_writable_pt(notes / "teacher.pt", "teacher")
    check_parent(tmp_path / "new" / "deeper" / "teacher.pt")  # folders still to be made are fine
    with pytest.raises(InputError, match="/proc does not take new files"):
        check_parent("/proc/x/report.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # the check makes nothing


def test_a_refused_write_is_one_line_not_an_oserror(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(InputError, match=r"cannot write '.*notes.txt/m.json': .*notes.txt is a file; expected a path"):
        write_text(notes / "m.json", "{}")
    with pytest.raises(InputError, match="is a file"):
        with atomic_path(notes / "data.npz"):
            pass
    assert notes.read_text() == "mine"



@pytest.mark.parametrize("interruption", [RuntimeError("export failed"), KeyboardInterrupt()])
def test_a_failed_write_removes_the_folders_it_made_above_out(tmp_path, interruption):
    """`export --out x/y/z/bundle` that failed or was interrupted left empty x/y/z behind."""
    (tmp_path / "x").mkdir()  # was there before: stays
    with pytest.raises(type(interruption)):
        with atomic_dir(tmp_path / "x" / "y" / "z" / "bundle", "manifest.json", "bundle") as tmp:
            (tmp / "model.onnx").write_bytes(b"half")
            raise interruption
    with pytest.raises(type(interruption)):
        with atomic_path(tmp_path / "x" / "p" / "q" / "s.pt") as tmp:
            tmp.write_bytes(b"half")
            raise interruption
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*")] == [Path("x")]
    write_text(tmp_path / "x" / "y" / "z" / "done.txt", "kept")  # a write that succeeds keeps its folders
    assert (tmp_path / "x" / "y" / "z" / "done.txt").read_text() == "kept"


SIGTERM_EXPORT = """
import os, signal, sys, time
from pathlib import Path
import edge_msa.cli.export as export_cli
from edge_msa.atomic import atomic_dir
from edge_msa.cli import main

def export_until_terminated(args):
    with atomic_dir(Path(args.out), "manifest.json", "bundle") as tmp:
        (tmp / "model.onnx").write_bytes(b"half a graph")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises before this returns
    return 0

export_cli.run = export_until_terminated
code = main(["export", "t.pt", "--out", sys.argv[1]])
assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler before main() is back
sys.exit(code)
"""


def test_sigterm_cleans_up_like_ctrl_c_and_exits_143(tmp_path):
    """SIGTERM (a timeout, docker stop) during `edge-msa export` left a 93 MB hidden temp bundle `.bundle.XXXX/`."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SIGTERM_EXPORT, str(tmp_path / "x" / "bundle")], capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stderr) == (143, "error: interrupted; nothing half-written was kept\n")
    assert list(tmp_path.iterdir()) == []
