"""Request payloads -> predictor inputs, with the service's limits; every violation is a RequestError (4xx).

Checks run here, before a request joins a batch, so one bad request can never fail the others in its
batch, and the client learns what was wrong in one line (`{"error": "..."}`).
Media (base64 in JSON, or multipart files) is written to a per-request folder and handed to the predictor
as a path, the way `edge-msa predict --audio x.wav` does; the bundle's own front end decodes it.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from ..features import media_seconds, too_long
from ..features.audio import SAMPLE_RATE, VIDEO_EXTS, no_audio_track, open_container, packets_end, too_short
from ..features.text import EMPTY_TEXT, is_empty_text
from ..errors import EdgeMSAError, InputError, MissingDependencyError, warn
from ..runtime.predictor import as_float32, beyond_float32, check_unicode, takes_audio_from
from ..spec import MODALITIES, FeatureSpec
from .config import Limits

# Leading bytes -> file suffix the front ends recognise. Sniffed, never taken from a client's filename.
VIDEO_MAGIC = ((b"FLV", 0, b"", ".flv"), (b"\x1a\x45\xdf\xa3", 0, b"", ".mkv"), (b"RIFF", 8, b"AVI ", ".avi"),
               (b"", 4, b"ftyp", ".mp4"))
# MP3: an ID3 tag or an MPEG-1/2 layer III frame header; audio in a container (a phone's .m4a, a browser's
# audio/webm) is read from its audio track, as `edge-msa predict --audio clip.m4a` does
AUDIO_MAGIC = ((b"RIFF", 8, b"WAVE", ".wav"), (b"fLaC", 0, b"", ".flac"), (b"OggS", 0, b"", ".ogg"),
               (b"ID3", 0, b"", ".mp3"), *((head, 0, b"", ".mp3") for head in (b"\xff\xfb", b"\xff\xfa", b"\xff\xf3",
                                                                              b"\xff\xf2")), *VIDEO_MAGIC)


class RequestError(Exception):
    """A request the service refuses: HTTP status + one line for `{"error": ...}` (+ extra headers)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


def not_utf8(what: str, exc: UnicodeDecodeError) -> RequestError:
    """The one answer to text that does not decode, whether a JSON body or a form's text field: a tokenizer given
    text decoded some other way scores garbled words."""
    return RequestError(400, f"{what} is not valid {exc.encoding.upper()} ({exc.reason} at byte {exc.start}); "
                             "expected UTF-8 text")


@contextmanager
def scratch_writes() -> Iterator[None]:
    """Writing uploads to the server's temp folder (the request's scratch folder, its media files, the multipart
    parser's spool): an OSError there (a device's small /tmp full, a read-only one, TMPDIR gone) was a 500 "internal
    error (OSError)" with a traceback. It is a 503 with Retry-After now, saying why without the folder (the server's
    layout, see without_scratch); the server log names the folder and the fix."""
    try:
        yield
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else type(exc).__name__  # gettempdir's strerror lists folders
        warn(f"a media upload was refused: the temp folder {tempfile.tempdir or '(none usable)'} refused the write "
             f"({exc}); free space there or point TMPDIR at a writable folder")
        raise RequestError(503, f"the server cannot store media uploads now ({why} in its temp folder); expected a "
                                "retry once it can (the Retry-After header), or the request without media",
                           {"Retry-After": "1"}) from None


@dataclass
class Parsed:
    """One validated input: what predict_batch takes, a digest of the raw input, and the text if any."""

    item: dict[str, Any]
    digest: str
    text: str | None


Workdir = Callable[[], Path]  # gives the request's scratch folder (made on first use)


def parse_item(obj: Any, spec: FeatureSpec, limits: Limits, workdir: Workdir, where: str = "") -> Parsed:
    """An input {"text", "audio", "video"} -> Parsed; media values are base64 strings (JSON) or bytes
    (multipart uploads), written to workdir() (`where` tells a batch's files apart; parse_items names the input)."""
    if not isinstance(obj, dict):
        raise RequestError(400, f"input is {type(obj).__name__}; expected an object with text, audio, video")
    unknown = sorted(set(obj) - set(MODALITIES))
    if unknown:
        raise RequestError(400, f"input has unknown fields {unknown}; expected text, audio, video")
    fields = {m: obj[m] for m in MODALITIES if obj.get(m) is not None}
    if not fields:
        raise RequestError(400, "input has none of text, audio, video; expected at least one")
    digest = hashlib.sha256()
    item: dict[str, Any] = {}
    for m, value in fields.items():
        if m == "text" and isinstance(value, str):
            item[m] = check_text(value, spec, limits)
            data = value.encode("utf-8")
        elif isinstance(value, list):
            item[m] = check_array(m, value, spec, limits)
            data = item[m].tobytes()
        elif isinstance(value, (str, bytes)) and m != "text":
            data = value if isinstance(value, bytes) else decode_base64(m, value)
            item[m] = save_media(m, data, spec, limits, workdir, where)
        else:
            kinds = "a string or an (L, d) array" if m == "text" else "an (L, d) array or a base64 media file"
            raise RequestError(400, f"{m} is {type(value).__name__}; expected {kinds}")
        digest.update(f"{m}:{len(data)}:".encode() + data)
    video = item.get("video")
    if isinstance(video, Path) and takes_audio_from(video, item.get("audio"), spec):
        short = short_track(video)
        if short:  # as an audio upload's (save_media), not by the front end inside the batch
            raise RequestError(400, f"the video's {short}")
    text = fields["text"] if isinstance(fields.get("text"), str) else None
    return Parsed(item, digest.hexdigest(), text)


def parse_items(objs: list, spec: FeatureSpec, limits: Limits, workdir: Workdir, many: bool) -> list[Parsed]:
    """parse_item for each input of a request; in a batch a refusal names its input ("input #1: empty text; ..."), as
    the runtime's do, so a client can tell which of its inputs was wrong."""
    if not many:
        return [parse_item(obj, spec, limits, workdir) for obj in objs]
    parsed = []
    for i, obj in enumerate(objs):
        try:
            parsed.append(parse_item(obj, spec, limits, workdir, f" #{i}"))
        except RequestError as exc:
            raise RequestError(exc.status, f"input #{i}: {exc.message}", exc.headers) from None
    return parsed


def check_text(text: str, spec: FeatureSpec, limits: Limits) -> str:
    if not spec.computes("text"):
        raise RequestError(400, f"this bundle takes text as {spec.front_end('text')} features; expected an "
                                f"(L, {spec.dim('text')}) array, not a string")
    if is_empty_text(text):
        raise RequestError(400, EMPTY_TEXT)
    try:
        check_unicode(text)  # a lone surrogate ("\ud800" in JSON): no tokenizer or database takes it
    except InputError as exc:
        raise RequestError(400, str(exc)) from None
    if len(text) > limits.max_text_chars:
        raise RequestError(413, f"text has {len(text)} characters; expected at most {limits.max_text_chars}")
    return text


def check_array(m: str, value: list, spec: FeatureSpec, limits: Limits) -> np.ndarray:
    """A JSON list -> a finite float32 (L, d) array with d the bundle's dim and 1 <= L <= max_steps (NaN, inf and
    values past float32 refused by the runtime's as_float32, in its words). JSON true/false and strings are refused,
    not cast: numpy reads true as 1.0 and "1" as 1.0, so a client's wrong types would be scored as features."""
    try:
        array = np.asarray(value)
        if array.dtype.kind in "iuO":  # JSON integers; those past int64 arrive as Python ints (object)
            array = array.astype(np.float64)
    except OverflowError:  # an integer past float64 (JSON numbers have no digit limit)
        raise RequestError(400, beyond_float32(m)) from None
    except (ValueError, TypeError):
        raise RequestError(400, f"{m} is not a rectangular array of numbers; expected (L, {spec.dim(m)})") from None
    if array.dtype.kind != "f":
        got = {"b": "true/false", "U": "strings"}.get(array.dtype.kind, str(array.dtype))
        raise RequestError(400, f"{m} features hold {got}, not only numbers; expected an (L, {spec.dim(m)}) array "
                                "of numbers")
    if array.ndim != 2 or array.shape[1] != spec.dim(m) or not 1 <= array.shape[0] <= limits.max_steps:
        raise RequestError(400, f"{m} features have shape {array.shape}; expected (L, {spec.dim(m)}) with "
                                f"1 <= L <= {limits.max_steps}")
    try:  # the runtime's check, so a NaN is told as `predict` tells it: how many, and where the first is
        return as_float32(m, array, spec)
    except InputError as exc:
        raise RequestError(400, str(exc)) from None


def decode_base64(m: str, value: str) -> bytes:
    """Base64 (optionally a data: URL) -> bytes."""
    payload = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"{m} is a string but not base64; expected a base64 media file or an "
                                "(L, d) array") from None


def save_media(m: str, data: bytes, spec: FeatureSpec, limits: Limits, workdir: Workdir, where: str = "") -> Path:
    """Media bytes -> a file in workdir the bundle's front end can read, after the format and duration checks."""
    if not spec.computes(m):
        raise RequestError(400, f"this bundle takes {m} as {spec.front_end(m)} features; expected an "
                                f"(L, {spec.dim(m)}) array, not a media file")
    if not data:  # sniffing would answer 415 "not a supported media file" for what is no file at all
        raise RequestError(400, f"{m} is an empty file (0 bytes); expected a media file with some {m} in it")
    suffix = sniff(m, data)
    with scratch_writes():
        path = workdir() / f"{m}{where.strip(' #')}{suffix}"
        path.write_bytes(data)
    seconds = upload_seconds(m, path, limits.max_media_seconds)
    if seconds <= 0:
        raise RequestError(400, f"{m} holds no {'samples' if m == 'audio' else 'frames'}; expected a media file with "
                                f"some {m} in it")
    short = too_short(math.ceil(seconds * SAMPLE_RATE)) if m == "audio" else None  # resample's output length
    if short:  # refused here, not by the front end inside the batch, where its batch-mates would run again
        raise RequestError(400, short)
    if seconds > limits.max_media_seconds:
        raise RequestError(413, too_long(m, seconds, limits.max_media_seconds))
    return path


def short_track(video: Path) -> str | None:
    """`too_short` of the audio track the runtime takes from a video upload, decoded only until it gives one frame:
    the video's length says nothing of its track's (a clip of seconds may carry a few ms of audio), which the front
    end refused inside the batch, whose other inputs then ran again. A video without a track, or one PyAV cannot
    read (or no PyAV) is None: the runtime skips its audio then, as before."""
    samples, rate = 0, 1
    try:
        with open_container(video) as (_, container):
            if not container.streams.audio:
                return None
            for frame in container.decode(container.streams.audio[0]):
                samples, rate = samples + frame.samples, frame.sample_rate
                if not too_short(math.ceil(samples * SAMPLE_RATE / rate)):  # resample's output length
                    return None
    except EdgeMSAError:
        return None
    return too_short(math.ceil(samples * SAMPLE_RATE / rate))


def sniff(m: str, data: bytes) -> str:
    for head, offset, tag, suffix in AUDIO_MAGIC if m == "audio" else VIDEO_MAGIC:
        if data.startswith(head) and data[offset:offset + len(tag)] == tag:
            return suffix
    kinds = ("WAV, FLAC, OGG, MP3, or MP4/M4A, FLV, MKV/WebM or AVI with an audio track" if m == "audio" else
             "MP4/MOV, FLV, MKV/WebM or AVI")
    raise RequestError(415, f"{m} is not a supported media file; expected {kinds}")


def upload_seconds(m: str, path: Path, limit: float) -> float:
    """`media_seconds` of an upload (`track_seconds` of audio in a container; either measured up to just past
    `limit`), its failures as RequestErrors: soundfile /
    OpenCV / PyAV come with the [media] extra, so a server installed without it answers 503 naming the fix, not a
    500; an unreadable file, audio without an audio track or a video of one frame answers 400."""
    try:
        in_container = m == "audio" and path.suffix in VIDEO_EXTS
        return track_seconds(path, limit) if in_container else media_seconds(m, path, limit, f"{m} uploads")
    except MissingDependencyError as exc:
        raise RequestError(503, str(exc)) from None
    except EdgeMSAError as exc:  # our one line ("cannot read audio PATH: why; expected ...")
        raise RequestError(400, without_scratch(str(exc), {m: path})) from None


def track_seconds(path: Path, limit: float) -> float:
    """Seconds of the audio track of a container sent as audio (an MP4, a WebM), from its packets' timestamps up to
    just past `limit`: the front end decodes that track alone, while media_seconds measures the container (its longest
    stream; featurize keeps that measure), so a 40 s video with 2 s of audio was refused "audio lasts 40.0 s" (413),
    and 10 ms of audio in a clip of seconds passed, to be refused by the front end inside the batch."""
    with open_container(path) as (_, container):
        if not container.streams.audio:
            raise no_audio_track(path)
        return packets_end(container.demux(container.streams.audio[0]), limit)


def without_scratch(message: str, item: Mapping[str, Any]) -> str:
    """The runtime's line about an upload less the server's scratch path ("cannot read audio PATH: why", "PATH: audio
    is 0.1 ms long; ..."), and a skipped reason naming the upload for its file ("video0.mp4 has no audio track" -> "the
    video upload has no audio track"): the client sent bytes, not a file, and the path only tells it the server's
    layout."""
    for m, value in item.items():
        if isinstance(value, Path):
            message = message.replace(f" {value}", "").replace(f"{value}: ", "").replace(value.name, f"the {m} upload")
    return message
