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


@pytest.fixture
def synced(monkeypatch):
    """os.fsync and os.replace recorded in order: ("fsync", inode) and ("replace", destination). Inodes, since a
    rename keeps a file's, so what was synced under its temp name is found under its final one."""
    import os

    events: list[tuple] = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_ino)), fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append(("replace", Path(dst))), replace(src, dst))[1])
    return events


def test_a_file_is_synced_before_its_rename_and_its_folder_after(tmp_path, synced):
    """A rename is journaled before the data it names: after a power cut (routine on Jetsons and kiosks) ext4 could
    show m.json empty or partial. Nothing was synced. A folder made for it (new/) is an entry of the folder above,
    synced last: it was not, so a power cut could lose new/ and m.json with it."""
    final = tmp_path / "new" / "m.json"
    write_text(final, "{}")
    assert synced == [("fsync", final.stat().st_ino), ("replace", final), ("fsync", final.parent.stat().st_ino),
                      ("fsync", tmp_path.stat().st_ino)]


def test_a_bundle_syncs_each_file_and_folder_once_before_its_rename_and_its_folder_after(tmp_path, synced):
    out = tmp_path / "bundle"
    _write(out, "first")  # the second write replaces it
    synced.clear()
    with atomic_dir(out, "manifest.json", "bundle") as tmp:
        (tmp / "manifest.json").write_text("second")
        (tmp / "graphs").mkdir()
        (tmp / "graphs" / "model.onnx").write_bytes(b"graph")
    inodes = [p.stat().st_ino for p in (out / "manifest.json", out / "graphs" / "model.onnx", out / "graphs", out)]
    before, after = synced[:4], synced[4:]
    assert sorted(before) == sorted(("fsync", inode) for inode in inodes) and before[-1] == ("fsync", inodes[-1])
    assert [kind for kind, _ in after] == ["replace", "replace", "fsync"] and after[1] == ("replace", out)
    assert after[-1] == ("fsync", tmp_path.stat().st_ino)


def test_a_folder_that_cannot_be_synced_is_skipped_and_a_failed_sync_is_one_line(tmp_path, monkeypatch):
    """Some filesystems refuse fsync of a folder (EINVAL): the write still succeeds. A file whose sync fails (an I/O
    error, a full network disk) is refused in one line and leaves neither its temp file nor a renamed one."""
    import errno
    import os
    import stat

    def fsync(fd, refused=errno.EINVAL):
        if stat.S_ISDIR(os.fstat(fd).st_mode) or refused != errno.EINVAL:
            raise OSError(refused, os.strerror(refused))

    monkeypatch.setattr(os, "fsync", fsync)
    write_text(tmp_path / "m.json", "{}")
    _write(tmp_path / "bundle", "kept")
    assert (tmp_path / "m.json").read_text() == "{}" and (tmp_path / "bundle" / "manifest.json").is_file()
    monkeypatch.setattr(os, "fsync", lambda fd: fsync(fd, errno.EIO))
    with pytest.raises(InputError, match=r"^cannot write '.*n\.json': Input/output error; expected a path inside"):
        write_text(tmp_path / "n.json", "{}")
    with pytest.raises(InputError, match=r"^cannot write '.*other': Input/output error; expected"):
        _write(tmp_path / "other", "lost")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "m.json"]


def _failing_replace(monkeypatch, fails):
    """os.replace raising EIO for the renames `fails(src, dst)` picks (the others go through)."""
    import errno
    import os

    replace = os.replace

    def refused(src, dst):
        if fails(Path(src), Path(dst)):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", refused)


def test_a_failed_second_rename_puts_the_earlier_bundle_back(tmp_path, monkeypatch):
    """The new bundle's rename onto --out failed after the old one was set aside: --out was gone and the old bundle
    lay under a hidden `.bundle.old-<uuid>`. Where even putting it back fails, the line says where it is."""
    out = tmp_path / "bundle"
    _write(out, "first")
    _failing_replace(monkeypatch, lambda src, dst: dst == out and ".old-" not in src.name)
    with pytest.raises(InputError, match=r"^cannot write '.*bundle': Input/output error; expected a path inside"):
        _write(out, "second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert (out / "manifest.json").read_text() == "first"
    _failing_replace(monkeypatch, lambda src, dst: dst == out)
    with pytest.raises(InputError, match=r"Input/output error; the earlier one is at '.*/\.bundle\.old-\w+'; expect"):
        _write(out, "third")
    [old] = tmp_path.iterdir()
    assert old.name.startswith(".bundle.old-") and (old / "manifest.json").read_text() == "first"


def test_a_bundle_sync_does_not_open_what_a_link_points_to(tmp_path, synced):
    """_fsync_tree opened each link's target: a dangling link failed the write ('No such file or directory'), and a
    link to a file outside the bundle synced that file (a link to a FIFO would block for ever)."""
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"not ours")
    with atomic_dir(tmp_path / "bundle", "manifest.json", "bundle") as tmp:
        (tmp / "manifest.json").write_text("x")
        (tmp / "shared.bin").symlink_to(outside)
        (tmp / "dangling").symlink_to(tmp_path / "gone")
    assert (tmp_path / "bundle" / "dangling").is_symlink()
    assert ("fsync", outside.stat().st_ino) not in synced
