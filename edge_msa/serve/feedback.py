"""Feedback log: users' labels for served predictions, in SQLite, and its export as an MMSA label.csv.

SQLite in WAL mode with synchronous=FULL: a row is committed (and fsynced) before the service answers
200, so a crash, kill -9 or power cut never loses an acknowledged record. The file is marked with
PRAGMA application_id so `feedback export` refuses some other SQLite database with a clear error.
Only the text (needed to fine-tune; MMSA label.csv is text + label) and a SHA-256 digest of the whole
input are kept; audio and video are never stored.
"""
from __future__ import annotations

import csv
import hashlib
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from ..errors import ArtifactError, InputError, check_range, given, one_line
from ..jsonio import dumps
from ..labels import polarity

APPLICATION_ID = 0x45445346  # "EDSF": edge-msa feedback log
SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    time REAL NOT NULL,
    input_digest TEXT NOT NULL,
    text TEXT,
    prediction TEXT NOT NULL,
    label REAL NOT NULL)"""
LABEL_CSV_COLUMNS = ("video_id", "clip_id", "text", "label", "label_T", "label_A", "label_V", "annotation", "mode")


class FeedbackLog:
    """Append-only feedback rows; `add` returns only after the row is durable. Thread-safe."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:  # a folder, a missing parent that cannot be made, a read-only file: one line, not sqlite's traceback
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            check_marked(self._db, self.path, allow_new=True)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._db.execute(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise InputError(f"cannot open the feedback log '{self.path}' ({exc}); expected a writable file path "
                             "(--feedback)") from None

    def add(self, request_id: str, digest: str, text: str | None, prediction: str, label: float) -> int:
        """Append one row (prediction is the served JSON) and return its id once committed."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO feedback (request_id, time, input_digest, text, prediction, label) VALUES (?,?,?,?,?,?)",
                (request_id, time.time(), digest, text, prediction, float(label)))
            assert cursor.lastrowid is not None  # an INSERT sets it (typeshed: None before any)
            return cursor.lastrowid

    def close(self) -> None:
        with self._lock:
            self._db.close()


def check_marked(db: sqlite3.Connection, path: Path, allow_new: bool = False) -> None:
    """Refuse a database that is not an edge-msa feedback log (an empty new file is fine when allow_new)."""
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.OperationalError:  # locked or unreadable: a log still, which the caller words
        raise
    except sqlite3.DatabaseError as exc:
        raise ArtifactError(f"{path} is not a SQLite database ({exc}); expected an edge-msa feedback log") from None
    if app_id != APPLICATION_ID and not (allow_new and app_id == 0 and tables == 0):
        raise ArtifactError(f"{path} is not an edge-msa feedback log (application_id {app_id}); expected a file "
                            "written by `edge-msa serve --feedback`")


class RecentPredictions:
    """The last `size` served predictions by request id, so feedback can name a request by id alone.

    Bounded (oldest dropped first), so a long-running service holds a fixed amount of memory."""

    def __init__(self, size: int = 10000) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[str, str | None, str]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, request_id: str, digest: str, text: str | None, prediction: dict[str, Any]) -> None:
        with self._lock:
            self._items[request_id] = (digest, text, dumps(prediction, separators=(",", ":")))
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, request_id: str) -> tuple[str, str | None, str] | None:
        """(input digest, text, prediction JSON), or None if unknown or already dropped."""
        with self._lock:
            return self._items.get(request_id)


def export_label_csv(log: str | os.PathLike, out: str | os.PathLike, valid: float = 0.1, test: float = 0.1) -> dict:
    """Write the log as an MMSA label.csv (latest label per request; rows without text, or with only whitespace, are
    left out: a blank text would train on an empty transcript); returns the counts and each split's labels.

    `mode` comes from a hash of the input digest, so repeats of one input share a split (no leakage)."""
    path = Path(log)
    if not path.is_file():
        raise InputError(f"feedback log '{path}' does not exist; expected the SQLite file that "
                         "`edge-msa serve --feedback FILE` writes")
    # each a number (a string was a bare TypeError) in [0, 1), told with its top (it said only ">= 0")
    check_range({"valid": valid, "test": test}, 0, strict=False, top=1, exclusive_top=True,
                why="a fraction of the rows, with valid + test < 1")
    if valid + test >= 1:
        raise InputError(f"{given('valid', valid)} and {given('test', test)}; expected each >= 0 with a sum below 1")
    rows = _latest_rows(path)
    kept = [r for r in rows if r[2] and r[2].strip()]
    splits: dict[str, list[float]] = {"train": [], "valid": [], "test": []}
    with atomic_path(out, suffix=".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(LABEL_CSV_COLUMNS)
        for request_id, digest, text, label in kept:
            mode = split_of(digest, valid, test)
            splits[mode].append(label)
            writer.writerow(["feedback", request_id, text, repr(label), "", "", "", polarity(label).capitalize(), mode])
    return {"rows": len(kept), "without_text": len(rows) - len(kept), "splits": splits}


def _latest_rows(path: Path) -> list[tuple[str, str, str | None, float]]:
    """(request_id, input_digest, text, label) of each request's latest row. sqlite3's errors (a log another
    process holds locked, a feedback table without these columns) are one line here: they escaped as tracebacks,
    and a locked log was called "not a SQLite database"."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            check_marked(db, path)
            return db.execute("SELECT request_id, input_digest, text, label FROM feedback WHERE id IN "
                              "(SELECT max(id) FROM feedback GROUP BY request_id) ORDER BY id").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ArtifactError(f"cannot read the feedback rows of {path} ({one_line(exc)}); expected a log written by "
                            "`edge-msa serve --feedback` that no other process holds locked") from None


def split_of(digest: str, valid: float, test: float) -> str:
    u = int(hashlib.sha256(digest.encode()).hexdigest()[:8], 16) / 2**32  # uniform in [0, 1)
    return "test" if u < test else "valid" if u < test + valid else "train"
