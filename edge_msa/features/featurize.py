"""Raw clips + a labels CSV -> one "edge-msa-features-v1" .npz (the featurized dataset format).

Keys (no pickle; written atomically):
  format "edge-msa-features-v1" · feature_spec (FeatureSpec JSON) · id (N,) str · label (N,) float32 ·
  split (N,) str in {train, valid, test} · transcript (N,) str · audio_feat (N, La, 56) float32 ·
  audio_len (N,) int64 · video_feat (N, Lv, 105) float32 · video_len (N,) int64.
Features are zero-padded after *_len steps; length 0 = that modality is missing for the utterance.
Text features are not stored: the data reader computes them from `transcript` ("minilm-l6-int8").

Per utterance id (the labels CSV's id/name column; a media extension on it is ignored) the clips directory is
searched recursively for files whose stem is the id, or, for an id with folders ('spk1/001', for names that repeat
across subfolders), whose stem is its last part and whose folder ends in its folders: a video (VIDEO_EXTS) and an
audio file (AUDIO_EXTS; when an id has several, the earlier extension in AUDIO_EXTS wins, and one that cannot be read
falls back to the next, with a warning; two files of one kind with the same stem and extension, e.g. in two
subfolders, are an error, since either may be the labelled one; an id with its folder tells them apart). An id with a
video but no audio file takes its audio from the video container's audio track (PyAV, `pip install
"edge-msa[media]"`); when both exist the separate audio file wins (usually the cleaner recording, and no PyAV
needed), and the video's track is its last fallback. Rows with no media at all are skipped with a warning; a modality
none of whose files a front end can read is missing, with a warning; so is the text of an utterance without a
transcript. An utterance left with no modality at all (no transcript, no readable file) is dropped, with a warning;
none left is an InputError, and nothing is written.

The ids of the side tables beside the labels CSV (transcript.csv, speaker.csv) match its ids by the same rule
(id_parts: a media extension is ignored, folders must agree).

Splits are by speaker (a `speaker` column, or a speaker.csv beside the labels CSV) when there are at
least 3 speakers, so no speaker is in two splits; otherwise by utterance (with a warning when speakers
were given). Seeded and deterministic (edge_msa.splits.split_three_by_group).
"""
from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping

import numpy as np

from ..atomic import atomic_path, check_file_out
from ..errors import (InputError, MissingDependencyError, checked_seeds, given, not_found, plural,
                      require, warn)
from ..featurized_format import FORMAT_TAG
from ..labels import check_label_range
from ..metrics import untrainable_splits
from ..spec import FeatureSpec
from ..splits import split_three_by_group
from . import audio as audio_fe
from . import MAX_MEDIA_SECONDS, MediaTooLong, check_max_media_seconds, front_end_for, refuse_long_media
from . import text as text_fe
from . import video as video_fe
from .audio import VIDEO_EXTS

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")  # preference order when an id has several audio files
ID_COLUMNS = ("id", "name", "utterance_id", "utterance", "file", "filename")
TEXT_COLUMNS = ("text", "transcript")
SPEAKER_COLUMNS = ("speaker", "speaker_id")
LABEL_COLUMN = "label"
MIN_SPEAKERS = 3  # fewer speakers cannot give speaker-disjoint train / valid / test

_CREMAD_EMOTIONS = {("happiness", "hap"): 1.0, ("neutral", "neu"): 0.0,
                    ("anger", "ang", "disgust", "dis", "fear", "fea", "sadness", "sad"): -1.0}
# CREMA-D has emotions, not sentiment scores: happy -> positive, neutral -> 0, the rest -> negative
# (the full names of its label.csv and the 3-letter codes of its file names).
LABEL_PRESETS: dict[str, dict[str, float]] = {
    "cremad": {name: score for names, score in _CREMAD_EMOTIONS.items() for name in names},
}


def parse_label_map(spec: str | Mapping[str, float]) -> dict[str, float]:
    """A preset name (LABEL_PRESETS) or "HAP=1,NEU=0,ANG=-1" -> {lower-cased category: score}."""
    if isinstance(spec, Mapping):
        return _finite_scores({str(k).strip().lower(): float(v) for k, v in spec.items()})
    if spec.strip().lower() in LABEL_PRESETS:
        return dict(LABEL_PRESETS[spec.strip().lower()])
    mapping = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, _, value = item.partition("=")
        try:
            if not key.strip():
                raise ValueError(item)
            mapping[key.strip().lower()] = float(value)
        except ValueError:
            raise InputError(f"bad label map entry '{item}'; expected CATEGORY=SCORE pairs like 'HAP=1,NEU=0,"
                             f"ANG=-1' or a preset ({', '.join(LABEL_PRESETS)})") from None
    if not mapping:
        raise InputError(f"empty label map '{spec}'; expected 'HAP=1,NEU=0,...' or a preset "
                         f"({', '.join(LABEL_PRESETS)})")
    return _finite_scores(mapping)


def _finite_scores(mapping: dict[str, float]) -> dict[str, float]:
    """float() reads 'nan' and 'inf', so 'POS=nan' wrote NaN labels into the dataset; a numeric label cell is
    held to the same rule (parse_label)."""
    bad = [f"{k}={v}" for k, v in mapping.items() if not np.isfinite(v)]
    if bad:
        raise InputError(f"label map score {', '.join(bad)} is not a finite number; expected scores like 'HAP=1'")
    return mapping


def featurize(clips_dir: str | os.PathLike, labels_csv: str | os.PathLike, out: str | os.PathLike,
              text: str | None = None, label_map: str | Mapping[str, float] | None = None,
              valid_frac: float = 0.15, test_frac: float = 0.15, seed: int = 0, progress: bool = True,
              audio_max_frames: int = audio_fe.DEFAULT_MAX_FRAMES, video_frames: int = video_fe.DEFAULT_NUM_FRAMES,
              timings: dict[str, list[dict[str, float]]] | None = None, max_media_seconds: float = MAX_MEDIA_SECONDS,
              too_long: set[Path] | None = None) -> Path:
    """Extract audio/video features for every labelled utterance with media and write the dataset npz.

    `text`: one transcript for every utterance (else a text/transcript column or a transcript.csv beside
    the labels CSV). `label_map`: categorical labels -> scores (preset name, "A=1,B=0" or a dict); without
    it the label column must be numeric. `timings`, if given, receives per-clip front-end stage seconds
    under "audio" and "video" (lists of the front ends' `timings` dicts). A media file longer than
    `max_media_seconds` (inf: no limit) is refused from its header before decoding, as predict and the REST service
    refuse it, and left out like an unreadable file (a 2-hour recording took minutes and GBs to decode, to be pooled
    into one row); `too_long`, if given, receives those files.
    """
    clips_dir, labels_csv, out = Path(clips_dir), Path(labels_csv), Path(out)
    if not clips_dir.is_dir():
        raise InputError(f"clips directory {'is a file' if clips_dir.exists() else 'not found'}: {clips_dir}; "
                         "expected a folder of media files")
    check_out(out)
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise InputError(f"{given('valid_frac', valid_frac)} and {given('test_frac', test_frac)}; expected each in "
                         "(0, 1) with a sum < 1")
    checked_seeds([seed], "seed")  # numpy refuses a negative seed in a traceback
    check_max_media_seconds(max_media_seconds)
    rows = read_labels(labels_csv)
    media = media_of(rows, clips_dir)  # id -> {modality: candidate paths}
    ids = list(media)
    mapping = None if label_map is None else parse_label_map(label_map)
    labels = np.array([parse_label(i, rows[i][LABEL_COLUMN], mapping) for i in ids], dtype=np.float32)
    check_label_range(labels, ids, str(labels_csv), fix="rescale them, or map each value to a score with "
                      "--label-map (e.g. '1=-3,2=-1.5,3=0,4=1.5,5=3' for 1-5 ratings)")
    transcripts = find_transcripts(ids, rows, labels_csv, text)
    split = assign_splits(ids, rows, labels_csv, valid_frac, test_frac, seed)

    spec = FeatureSpec(dims=(text_fe.DIM, audio_fe.DIM, video_fe.DIM),
                       max_lens=(text_fe.DEFAULT_MAX_LEN, audio_max_frames, video_frames),
                       front_ends=(text_fe.NAME, audio_fe.NAME, video_fe.NAME))
    from_video = audio_from_containers(media)
    if progress and from_video:
        sys.stderr.write(f"audio from video container for {plural(from_video, 'clip')} (no separate audio file)\n")
    too_long = set() if too_long is None else too_long
    arrays, lengths, stage_times = extract_all(ids, media, spec, progress, max_media_seconds, too_long)
    if timings is not None:
        timings.update(stage_times)
    if progress:
        sys.stderr.write(timing_summary(stage_times) + "\n")

    payload = {"format": np.array(FORMAT_TAG), "feature_spec": np.array(json.dumps(spec.to_dict())),
               "id": np.array(ids, dtype=str), "label": labels, "split": split,
               "transcript": np.array(transcripts, dtype=str),
               "audio_feat": arrays["audio"], "audio_len": lengths["audio"],
               "video_feat": arrays["video"], "video_len": lengths["video"]}
    keep = with_input(payload)
    warn_untrainable_splits(split[keep], labels[keep], out)
    _save_rows(out, payload, keep)
    return out


def _save_rows(out: Path, payload: Mapping[str, np.ndarray], keep: np.ndarray) -> None:
    """Write the `keep` rows of every per-row array (0-d ones whole) to `out`, whole or not at all (atomic_path)."""
    # Any: numpy's stub (>= 2.2) types savez's `allow_pickle: bool` beside **arrays, so mypy refuses a dict of arrays
    # unpacked into it; passing allow_pickle=False instead would save an array named "allow_pickle" on numpy < 2.2,
    # which setup.py allows (every array here is str, float or int: nothing is pickled either way)
    kept: dict[str, Any] = {k: v if v.ndim == 0 else v[keep] for k, v in payload.items()}
    with atomic_path(out, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **kept)


def with_input(payload: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N,) bool: the utterances left with any input. One whose every file failed to read and that has no transcript
    would train the model to score nothing and count in its test metrics, while the runtime refuses such an input
    ("no features given"); it is dropped with a warning, like a labelled id with no media file at all. None left is an
    InputError (media_of already refused fewer than 3 ids with media, so len(keep) >= 3)."""
    keep = (np.char.str_len(payload["transcript"]) > 0) | (payload["audio_len"] > 0) | (payload["video_len"] > 0)
    if not keep.any():  # a 0-row dataset, which train refuses: said now, and nothing is written
        raise InputError(f"none of the {len(keep)} utterances has any input (no transcript, and no clip could be "
                         "read); expected at least one readable clip or a transcript: see the warnings for why each "
                         "clip could not be read, or give transcripts (a text column, a transcript.csv or --text)")
    dropped = payload["id"][~keep].tolist()
    if dropped:
        warn(f"dropping {plural(len(dropped), 'utterance')} with no transcript whose media could not be read: "
             f"{first_few(dropped)}")
    return keep


def check_out(out: Path) -> None:
    """Checked before any clip is read: a folder as `out` failed in os.replace only after every clip was featurized,
    and a name without .npz wrote a dataset that no reader recognises (load_dataset tells formats by suffix)."""
    if out.suffix.lower() != ".npz":  # any case, as load_dataset (data.detect_format) reads it
        raise InputError(f"--out '{out}' does not end in .npz; expected the .npz file to write, e.g. data.npz")
    check_file_out(out)


def extract_all(ids: list[str], media: Mapping[str, Mapping[str, list[Path]]], spec: FeatureSpec, progress: bool,
                max_media_seconds: float, too_long: set[Path]
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, list[dict[str, float]]]]:
    """Run the audio/video front ends over every id: zero-padded (N, L, d) arrays, lengths (N,) and the
    per-clip stage timings; when no candidate file of a modality can be read (or each lasts longer than
    `max_media_seconds`: added to `too_long`), that modality is missing."""
    arrays = {m: np.zeros((len(ids), spec.max_len(m), spec.dim(m)), dtype=np.float32) for m in ("audio", "video")}
    lengths = {m: np.zeros(len(ids), dtype=np.int64) for m in ("audio", "video")}
    stage_times: dict[str, list[dict[str, float]]] = {"audio": [], "video": []}
    # built on first use, so audio-only data never needs OpenCV
    front_ends: dict[str, audio_fe.AudioFrontEnd | video_fe.VideoFrontEnd] = {}
    bar = ids
    if progress:
        tqdm = require("tqdm.auto", "progress bars", "pip install tqdm or pass --quiet").tqdm
        bar = tqdm(ids, desc="featurize", unit="clip")
    for n, utt in enumerate(bar):
        for m, paths in media[utt].items():
            if m not in front_ends:
                front_ends[m] = front_end_for(spec, m)
            fe = front_ends[m]
            x = first_readable(fe, utt, m, paths, max_media_seconds, too_long)  # (L, d_m)
            if x is None:
                continue
            arrays[m][n, :len(x)] = x
            lengths[m][n] = len(x)
            stage_times[m].append(dict(fe.timings))
    return arrays, lengths, stage_times


def first_readable(fe: Callable[[Path], np.ndarray], utt: str, modality: str, paths: list[Path],
                   max_media_seconds: float, too_long: set[Path]) -> np.ndarray | None:
    """The features of the first of `paths` (one id's files of one kind, preferred first) that the front end `fe`
    reads and that lasts at most `max_media_seconds` (the longer ones are added to `too_long`), else None; each
    failure is a warning. A corrupt x.wav beside x.mp3 left the audio out, while a missing x.wav fell back to x.mp3:
    the other file is the same utterance."""
    for k, path in enumerate(paths):
        try:
            refuse_long_media(modality, path, max_media_seconds)
            return fe(path)
        except InputError as exc:
            if isinstance(exc, MediaTooLong):
                too_long.add(path)
            later = paths[k + 1:]
            warn(f"{utt}: {exc}; trying {later[0].name} instead" if later else
                 f"{utt}: {modality} left out: {exc}")
    return None


def audio_from_containers(media: Mapping[str, dict[str, list[Path]]]) -> int:
    """Append each id's video file(s) to its audio candidates (read_audio decodes the container's audio track): the
    audio of an id with only a video, and the last fallback of one whose audio file cannot be read or is too long (its
    audio was left out, though the video holds the same utterance's sound). Returns how many ids have only a video.
    Without PyAV nothing is appended, with one warning for those ids (the others keep their audio files)."""
    with_video = [i for i, m in media.items() if "video" in m]
    only_video = [i for i in with_video if "audio" not in media[i]]
    if not with_video:
        return 0
    try:
        require("av", "reading audio from video containers", audio_fe.AV_FIX)
    except MissingDependencyError as exc:
        if only_video:
            warn(f"audio missing for {plural(len(only_video), 'clip')} with only a video file: {exc}")
        return 0
    for i in with_video:
        media[i]["audio"] = [*media[i].get("audio", []), *media[i]["video"]]
    return len(only_video)


def timing_summary(stage_times: Mapping[str, list[dict[str, float]]]) -> str:
    """One line: per modality, clips done and mean milliseconds per clip, total and per stage."""
    parts = []
    for m, clips in stage_times.items():
        if not clips:
            continue
        stages = {s: 1000 * float(np.mean([c.get(s, 0.0) for c in clips])) for s in clips[0]}
        detail = ", ".join(f"{s} {v:.1f}" for s, v in stages.items())
        parts.append(f"{m} {plural(len(clips), 'clip')}, {sum(stages.values()):.1f} ms/clip ({detail})")
    return "front-end time: " + ("; ".join(parts) if parts else "no clips")


def read_labels(path: Path) -> dict[str, dict[str, str]]:
    """The labels CSV as {id: row} (read_table, with a label column) holding a row: a header alone was refused as
    "only 0 of 0 labelled ids with media under clips", as if the clips were at fault."""
    rows = read_table(path, required=(LABEL_COLUMN,))
    if not rows:
        raise InputError(f"{path} has no row with an id; expected one row per labelled clip")
    return rows


def read_table(path: Path, required: tuple[str, ...] = ()) -> dict[str, dict[str, str]]:
    """CSV with a header -> {id: row}; the id column is the first of ID_COLUMNS present (case-insensitive)."""
    expected = f"a CSV with a header and an id column ({', '.join(ID_COLUMNS)})"
    if path.is_dir():  # read "CSV file not found", though it is there
        raise InputError(f"CSV file {path} is a folder; expected {expected}")
    if not path.is_file():
        raise not_found("CSV file", path, expected)
    header, records = csv_records(path, ID_COLUMNS + required)
    twice = sorted({h for h in header if h and header.count(h) > 1})
    if twice:  # the rows kept the last column's value without a word
        raise InputError(f"{path} has the column '{twice[0]}' twice (column names ignore case); expected each column "
                         "once")
    id_col = next((c for c in ID_COLUMNS if c in header), None)
    missing = [c for c in required if c not in header]
    if id_col is None or missing:
        need = [f"an id column ({'/'.join(ID_COLUMNS)})"] if id_col is None else []
        raise InputError(f"{path} has columns {header}; expected {', '.join(need + missing)}")
    table: dict[str, dict[str, str]] = {}
    for r in records:
        key = r.get(id_col, "")
        if not key:
            continue
        if key in table:
            raise InputError(f"{path}: id '{key}' appears twice; expected one row per utterance")
        table[key] = r
    return table


def csv_records(path: Path, required: tuple[str, ...] = ()) -> tuple[list[str], list[dict[str, str]]]:
    """The header (names stripped, lower-cased) and the rows ({name: stripped value}) of a UTF-8 CSV (a byte-order mark
    and CRLF line ends are fine). An unquoted comma in a value (a transcript) made a row one field longer, and the text
    after it was dropped without a word, or read as the next column: a row with more values than the header is an
    error. A row too short to hold a `required` column is one too (its label read "label of 'u1' is empty"), while
    one that leaves out only other columns at its end reads them as empty (spreadsheets drop trailing empty cells).
    An unclosed quote took the rest of the file into one value, so its rows vanished: strict parsing says so."""
    line = 0  # the last line read
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, strict=True)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            records, line = [], reader.line_num
            for r in reader:
                if any((v or "").strip() for v in r.get(None, [])):  # values past the header's last column
                    raise InputError(f"{path} line {reader.line_num}: {len(header) + len(r[None])} values; expected "
                                     f"{len(header)} ({','.join(header)}): put a value that holds a comma in quotes")
                refuse_short_row(path, reader.line_num, header, r, required)
                records.append({k.strip().lower(): (v or "").strip() for k, v in r.items() if k})
                line = reader.line_num
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read CSV {path}: {exc}; expected a UTF-8 CSV with a header row") from None
    except csv.Error as exc:
        raise InputError(f"cannot read CSV {path} from line {line + 1}: {exc}; expected comma-separated values, each "
                         "quote closed (\"a, b\")") from None
    return header, records


def refuse_short_row(path: Path, line: int, header: list[str], row: Mapping[str | None, str | None],
                     required: tuple[str, ...]) -> None:
    """InputError naming the CSV line when `row` has no value at all (csv fills None) for a `required` column."""
    given_values = [k for k, v in row.items() if k is not None and v is not None]
    lacking = [h for h, k in zip(header, row) if k is not None and row[k] is None and h in required]
    if lacking:
        raise InputError(f"{path} line {line}: {plural(len(given_values), 'value')}; expected {len(header)} "
                         f"({','.join(header)}): the row ends before its '{lacking[0]}' value")


def index_media(clips_dir: Path) -> dict[str, dict[str, list[Path]]]:
    """{file stem: {"audio": paths, "video": paths}} for every media file under clips_dir (recursive): per kind, the
    files in the order of preference of their extensions (AUDIO_EXTS / VIDEO_EXTS), the later ones fallbacks for a file
    that cannot be read (first_readable); two with one extension are ambiguous (media_of)."""
    found: dict[str, dict[str, list[Path]]] = {}
    for p in sorted(clips_dir.rglob("*")):
        ext = p.suffix.lower()
        kind = "audio" if ext in AUDIO_EXTS else "video" if ext in VIDEO_EXTS else None
        if kind and p.is_file():
            found.setdefault(p.stem, {}).setdefault(kind, []).append(p)
    order = {"audio": AUDIO_EXTS, "video": VIDEO_EXTS}
    return {stem: {k: sorted(paths, key=lambda q: order[k].index(q.suffix.lower())) for k, paths in kinds.items()}
            for stem, kinds in found.items()}


def media_of(rows: Mapping[str, object], clips_dir: Path) -> dict[str, dict[str, list[Path]]]:
    """{id: {modality: candidate paths, preferred first}} for the labelled ids with media, in the labels CSV's order;
    the rest are skipped with a warning, and fewer than 3 left is an error naming what the folder holds (ids must equal
    the file stems, or name their folders too: files_of).

    Two files of one kind with the id's stem and extension (e.g. clips/train/x.mp4 and clips/dev/x.mp4, as datasets
    that reuse names per split have) are refused before any clip is read: which one the label belongs to cannot be
    told, and picking one silently paired the label with another utterance's clip."""
    stems = index_media(clips_dir)
    media: dict[str, dict[str, list[Path]]] = {}
    clashes: dict[str, list[Path]] = {}  # id -> the files it matches of one kind
    for i in rows:
        kinds = files_of(i, stems, clips_dir)
        clashes.update({i: twins for paths in kinds.values() if (twins := same_extension(paths))})
        if kinds:
            media[i] = dict(kinds)
    if clashes:
        utt, twins = next(iter(clashes.items()))
        names = [p.relative_to(clips_dir) for p in twins]
        raise InputError(f"two or more files of one kind under {clips_dir} match "
                         f"{plural(len(clashes), 'labelled id')}, e.g. '{utt}': {' and '.join(map(str, names))}; "
                         "expected at most one audio and one video file per id: write the id with its folder (e.g. "
                         f"'{names[0].with_suffix('').as_posix()}'), pass the subfolder with this labels CSV's clips, "
                         "or rename or remove the copies")
    refuse_shared_files(media, clips_dir)
    no_media = [i for i in rows if i not in media]
    if no_media:
        warn(f"skipping {plural(len(no_media), 'labelled id')} with no audio/video file under {clips_dir}: "
             f"{first_few(no_media)}")
    unlabelled = unmatched(stems, media, clips_dir)  # e.g. a labels CSV of one split, or typos in ids
    if unlabelled:
        warn(f"leaving out {plural(len(unlabelled), 'media file name')} under {clips_dir} with no row in the "
             f"labels CSV: {first_few(unlabelled)}")
    if len(media) < 3:
        held = (f" (it holds no {'/'.join(AUDIO_EXTS + VIDEO_EXTS)} files)" if not stems else
                f" (media file names, e.g. '{next(iter(stems))}', must equal the ids, e.g. '{no_media[0]}')" if no_media
                else "")
        raise InputError(f"only {len(media)} of {plural(len(rows), 'labelled id')} with media under {clips_dir}{held}; "
                         "expected at least 3 (one each for train / valid / test)")
    return media


def refuse_shared_files(media: Mapping[str, dict[str, list[Path]]], clips_dir: Path) -> None:
    """InputError when two ids match one file ('u1' and 'u1.wav', or 'a/u1' and 'u1'): read_table refuses an id
    written twice, but these two were told apart, so one clip was featurized twice, with two labels, in two splits
    (a test row the model trained on)."""
    owner: dict[Path, str] = {}
    for utt, kinds in media.items():
        for path in (p for paths in kinds.values() for p in paths):
            first = owner.setdefault(path, utt)
            if first != utt:
                raise InputError(f"ids '{first}' and '{utt}' both match {path.relative_to(clips_dir)} under "
                                 f"{clips_dir}; expected one row per clip (remove one of them)")


def unmatched(stems: Mapping[str, dict[str, list[Path]]], media: Mapping[str, dict[str, list[Path]]],
              clips_dir: Path) -> list[str]:
    """The names of the media files no id matched, sorted: the file stem, or the path under clips_dir without the
    extension ('b/001') where an id matched another file of that stem (ids with folders), so the name is that file's."""
    matched = {p for kinds in media.values() for paths in kinds.values() for p in paths}
    taken = {p.stem for p in matched}
    return sorted({p.relative_to(clips_dir).with_suffix("").as_posix() if p.stem in taken else p.stem
                   for kinds in stems.values() for paths in kinds.values() for p in paths if p not in matched})


def same_extension(paths: list[Path]) -> list[Path]:
    """The files of `paths` (one stem) whose extension another of them has too: two x.mp4 in two subfolders."""
    exts = [q.suffix.lower() for q in paths]
    return [q for q, ext in zip(paths, exts) if exts.count(ext) > 1]


def first_few(names: list[str], shown: int = 5) -> str:
    """'a, b, c, d, e ...': a warning about many ids names a few, so it stays one line."""
    return ", ".join(names[:shown]) + (" ..." if len(names) > shown else "")


def files_of(utt: str, stems: Mapping[str, dict[str, list[Path]]], clips_dir: Path) -> dict[str, list[Path]]:
    """{kind: paths} of the media files of id `utt`: those whose stem is the id's file name and, when the id names
    folders ('spk1/001', '/' or '\\'), whose folder under clips_dir ends in them. Datasets split by speaker or session
    reuse file names in each folder (a/001.wav, b/001.wav); an id 'a/001.wav' was matched by its stem alone, so it
    took b/001.wav when a/001.wav was missing, and an id 'a/001' matched no file at all."""
    *folders, stem = id_parts(utt)
    kinds = stems.get(stem, {})
    if not folders:
        return kinds
    inside = {k: [p for p in paths if p.relative_to(clips_dir).parent.parts[-len(folders):] == tuple(folders)]
              for k, paths in kinds.items()}
    return {k: paths for k, paths in inside.items() if paths}


def id_parts(utt: str) -> tuple[str, ...]:
    """An id as (*folders, media file stem): 'a/u0.wav' -> ('a', 'u0'). The one rule by which an id names its files
    (files_of) and by which the side tables' ids match the labels CSV's (side_table)."""
    *folders, name = PurePosixPath(utt.replace("\\", "/")).parts or ("",)
    return (*folders, stem_of(name))


def stem_of(utt: str) -> str:
    """The media file stem an id refers to: the id itself, or without a media extension ('a.wav' -> 'a')."""
    path = Path(utt)
    return path.stem if path.suffix.lower() in AUDIO_EXTS + VIDEO_EXTS else utt


def parse_label(utt: str, value: str, mapping: Mapping[str, float] | None) -> float:
    """A label cell -> score: the mapped category (case-insensitive) if a map is given, else a number. An empty cell
    is named as such: it was told to pass --label-map (e.g. '=1,...'), or to add '' to the map."""
    if not value:
        either = " or a category of the label map" if mapping is not None else ""
        raise InputError(f"label of '{utt}' is empty; expected a sentiment score{either} (or remove the row to leave "
                         "the clip out)")
    if mapping is not None and value.lower() in mapping:
        return mapping[value.lower()]
    try:
        score = float(value)
    except ValueError:
        fix = (f"add '{value}' to the label map (it maps {', '.join(sorted(mapping))})" if mapping is not None
               else f"pass --label-map (e.g. '{value.upper()}=1,...' or a preset: {', '.join(LABEL_PRESETS)})")
        raise InputError(f"label '{value}' of '{utt}' is not a number; {fix}") from None
    if not np.isfinite(score):
        raise InputError(f"label of '{utt}' is {value}; expected a finite sentiment score")
    return score


def side_table(labels_csv: Path, name: str, columns: tuple[str, ...]
               ) -> tuple[dict[tuple[str, ...], dict[str, str]], str | None]:
    """(`name` CSV beside the labels CSV as {id_parts(id): row}, its value column) or ({}, None) when absent. Its ids
    match the labels CSV's by the rule that matches files (id_parts): 'u0.wav' there and 'u0' in the labels CSV lost
    the transcript (or the speaker, and the splits were by utterance) without a word."""
    path = labels_csv.parent / name
    if not path.is_file():
        return {}, None
    table: dict[tuple[str, ...], dict[str, str]] = {}
    named: dict[tuple[str, ...], str] = {}
    for utt, row in read_table(path).items():
        first = named.setdefault(id_parts(utt), utt)
        if first != utt:
            raise InputError(f"{path}: ids '{first}' and '{utt}' name one utterance; expected one row per utterance")
        table[id_parts(utt)] = row
    header = next(iter(table.values()), {})
    column = next((c for c in columns if c in header), None)
    return (table, column) if column else ({}, None)


def find_transcripts(ids: list[str], rows: dict[str, dict[str, str]], labels_csv: Path,
                     text: str | None) -> list[str]:
    """Constant `text`, else the labels CSV's text column, else transcript.csv; '' (text missing) otherwise."""
    if text is not None:
        if not text.strip():
            raise InputError("--text is empty; expected the transcript to use for every utterance")
        return [text] * len(ids)
    column = next((c for c in TEXT_COLUMNS if c in next(iter(rows.values()))), None)
    table, side_col = side_table(labels_csv, "transcript.csv", TEXT_COLUMNS)
    found = []
    for i in ids:
        value = rows[i].get(column, "") if column else ""
        found.append(value or table.get(id_parts(i), {}).get(side_col or "", ""))
    missing = [i for i, t in zip(ids, found) if not t]
    if missing:
        warn(f"no transcript for {len(missing)} of {plural(len(ids), 'utterance')} (e.g. '{missing[0]}'): "
             f"their text is missing (length 0); add a text/transcript column to {labels_csv.name}, a "
             "transcript.csv beside it, or pass --text")
    return found


def warn_untrainable_splits(split: np.ndarray, labels: np.ndarray, out: Path) -> None:
    """Warn of splits of the rows written that train and compress will refuse (DatasetSplits.require_rows: a 3-clip
    dataset holds one utterance per split), so the user hears it now, not from train. Told from the final rows, once:
    warned before extraction, a split that the rows dropped for having no input left short went unwarned (and the
    CLI holds warnings back until the end anyway)."""
    by_split = {name: labels[split == name] for name in ("train", "valid", "test")}
    for line in untrainable_splits(by_split, str(out), "add clips, or raise --valid-frac / --test-frac"):
        warn(line)


def assign_splits(ids: list[str], rows: dict[str, dict[str, str]], labels_csv: Path,
                  valid_frac: float, test_frac: float, seed: int) -> np.ndarray:
    """(N,) 'train'/'valid'/'test': speaker-disjoint when >= MIN_SPEAKERS speakers are known, else per utterance."""
    column = next((c for c in SPEAKER_COLUMNS if c in next(iter(rows.values()))), None)
    table, side_col = side_table(labels_csv, "speaker.csv", SPEAKER_COLUMNS)
    speakers = [rows[i].get(column, "") if column else "" for i in ids]
    speakers = [s or table.get(id_parts(i), {}).get(side_col or "", "") for s, i in zip(speakers, ids)]
    groups = np.array(ids)
    if all(speakers):
        if len(set(speakers)) >= MIN_SPEAKERS:
            groups = np.array(speakers)
        else:
            warn(f"only {plural(len(set(speakers)), 'speaker')}; splitting by utterance, so a speaker "
                 f"appears in more than one split (need >= {MIN_SPEAKERS} speakers for speaker-disjoint "
                 "splits)")
    index = split_three_by_group(groups, seed, valid=valid_frac, test=test_frac)
    split = np.empty(len(ids), dtype="<U5")
    for name, rows_idx in index.items():
        split[rows_idx] = name
    return split
