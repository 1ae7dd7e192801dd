"""Write files and directories so that readers never see a half-written result."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

from .errors import InputError, one_line


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_parent(final: str | os.PathLike) -> None:
    """Checked before any work: the folder `final` goes in exists or can be made, and takes new files (its nearest
    existing ancestor is a folder that accepts an unnamed probe file: permissions, read-only mounts and /proc
    included), so a long run never ends in a refused write (e.g. `--out notes.txt/x`)."""
    final = Path(final)
    ancestor = final.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot write '{final}': {ancestor} is a file; expected a path inside a writable folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as exc:
        raise InputError(f"cannot write '{final}': {ancestor} does not take new files "
                         f"({exc.strerror or type(exc).__name__}); expected a path inside a writable folder") from None


def check_file_out(final: str | os.PathLike) -> None:
    """Checked before any work: `final` is a file that can be written (not a folder; its folder takes files)."""
    check_parent(final)
    if Path(final).is_dir() or str(final).endswith(("/", os.sep)):  # 'x/' names a folder even before it exists
        raise InputError(f"--out '{final}' is a folder; expected the path of the file to write")


@contextlib.contextmanager
def _refused_write(final: Path) -> Iterator[None]:
    """The system's refusal to make `final`'s folder or temp file as one line (what check_parent cannot foresee,
    e.g. a read-only mount when running as root)."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot write '{final}': {exc.strerror or exc}; expected a path inside a writable "
                         "folder") from None


@contextlib.contextmanager
def _parent_folders(final: Path) -> Iterator[None]:
    """Make the folders missing above `final`, and remove them again if the write fails or is interrupted, so a
    failed `--out x/y/z/bundle` leaves no empty x/y/z behind (folders that existed before are never touched)."""
    made, folder = [], final.absolute().parent
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    with _refused_write(final):
        final.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in made:  # deepest first; one that holds something else by now stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    with _refused_write(final):  # each folder made is an entry of the one above: synced, as the rename's folder is,
        for folder in made:  # or a power cut could lose `final` with the folder that holds it
            _fsync_folder(folder.parent)


# what fsync of a folder raises where the OS or filesystem cannot sync one (vfat, some FUSE and network mounts)
_NO_FOLDER_SYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EACCES}


def _fsync_file(path: Path) -> None:
    """Flush `path`'s data to the device (fsync reaches the file's pages whichever handle wrote them). Why: a rename
    is journaled before the data it names, so after a power cut (routine on Jetsons and kiosks) ext4/f2fs can show the
    final name with empty or partial content."""
    fd = os.open(path, os.O_RDONLY if os.name == "posix" else os.O_RDWR)  # Windows' fsync (_commit) needs write
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Flush `folder`'s entries (the rename into it) to the device, so the new name survives a power cut; skipped
    where folders cannot be synced: Windows cannot open one, and some filesystems refuse (_NO_FOLDER_SYNC)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno not in _NO_FOLDER_SYNC:
            raise


def _fsync_tree(root: Path) -> None:
    """Each file and folder of a folder written as a whole (a bundle) synced once, `root` itself last. A symbolic
    link is not opened: its entry is its folder's (synced there), and what it points to is not ours to sync (it may be
    gone, or a FIFO that blocks the open)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                _fsync_file(Path(folder, name))
        _fsync_folder(Path(folder))


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `final`; rename it onto `final` only if the block succeeds."""
    final = Path(final)
    check_file_out(final)
    with _parent_folders(final):
        with _refused_write(final):
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix or ".tmp", dir=final.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
            with _refused_write(final):  # a full disk or an I/O error may only show here: one line, no file
                _fsync_file(tmp_path)
                os.replace(tmp_path, final)
                _fsync_folder(final.parent)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()


def check_replaceable(final: str | os.PathLike, marker: str, what: str) -> None:
    """An existing `final` may be replaced only if it is empty or an earlier output of the same kind (it
    holds `marker`), so `--out .` or `--out runs` cannot wipe a user's folder."""
    final = Path(final)
    check_parent(final)
    if final.exists() and (not final.is_dir() or (any(final.iterdir()) and not (final / marker).is_file())):
        raise InputError(f"--out '{final}' exists and is not an earlier {what} (no {marker}); expected a new "
                         f"or empty folder, or an earlier {what} to replace")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, marker: str, what: str) -> Iterator[Path]:
    """Yield a temp directory beside `final`; it replaces `final` only if the block succeeds, and an existing
    `final` only if `check_replaceable(final, marker, what)` allows it (checked before the block runs)."""
    final = Path(final)
    check_replaceable(final, marker, what)
    with _parent_folders(final):
        with _refused_write(final):
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            yield tmp
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
            with _refused_write(final):  # as in atomic_path: synced before the rename, its folder after
                _fsync_tree(tmp)
                _replace_dir(tmp, final)
                _fsync_folder(final.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename folder `tmp` onto `final`, an existing `final` set aside under a unique name (so another writer's
    set-aside copy is never ours to delete) and removed once the new one is in place. If the new one cannot be put
    in place, the old one goes back to `final` (a failed write keeps the earlier output), or, where even that fails,
    the one line says where it is: a hidden name the user would never find."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException as exc:
        try:
            os.replace(old, final)
        except OSError:
            raise InputError(f"cannot write '{final}': {getattr(exc, 'strerror', None) or one_line(exc)}; the "
                             f"earlier one is at '{old}'; expected a path inside a writable folder") from None
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
