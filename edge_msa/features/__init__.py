"""Raw-media front ends: turn text / audio files / video files into feature arrays that match a FeatureSpec.

Each front end has `.name`, `.dim` and `__call__(source) -> (L, dim) float32`; heavy imports are lazy.
A model can only consume the front end its FeatureSpec names (manifest `front_ends`).
"""
from __future__ import annotations

import importlib
import math
import os
from pathlib import Path
from typing import Any

from ..errors import MEDIA_FIX, InputError, check_range, not_found, require
from ..paths import utf8_path
from ..spec import FeatureSpec, suggest

# name -> ("module:Class", the constructor argument that sets its sequence length); the modules import
# onnxruntime / soundfile / OpenCV only when used.
FRONT_ENDS = {
    "minilm-l6-int8": ("edge_msa.features.text:MiniLMFrontEnd", "max_len"),
    "logmel-v1": ("edge_msa.features.audio:AudioFrontEnd", "max_frames"),
    "face-v1": ("edge_msa.features.video:VideoFrontEnd", "num_frames"),
}
MAX_MEDIA_SECONDS = 30.0  # default longest audio / video input (REST's Limits, predict, load): a kiosk utterance
# lasts seconds; an hour-long recording would take minutes and GBs to decode before the front end pools it away
# the limit's keyword and flag (predict, featurize, serve: cli.add_media_limit_flag), named_as_flags' spelled
MEDIA_FLAG = {"max_media_seconds": "--max-media-s"}
UNKNOWN_FRAMES = 2**62  # libsndfile's frame count for a stream of unknown length (SF_COUNT_MAX ~ 9.2e18)
STILL_IMAGE = ("is a still image (1 frame); expected a video clip of the utterance (the face is read across its "
               "frames); leave the video out to predict without it")


def front_end(name: str, **kwargs: Any) -> Any:
    """Instantiate the front end called `name` (see FRONT_ENDS)."""
    if name not in FRONT_ENDS:
        raise InputError(f"unknown front end '{name}'{suggest(name, sorted(FRONT_ENDS))}")
    module, cls = FRONT_ENDS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


def front_end_for(spec: FeatureSpec, modality: str, **kwargs: Any) -> Any:
    """The front end `spec` names for `modality`, producing at most the spec's sequence length (what the
    model was trained on), so featurize and the runtime build it the same way."""
    name = spec.front_end(modality)
    length = {FRONT_ENDS[name][1]: spec.max_len(modality)} if name in FRONT_ENDS else {}  # unknown: front_end says so
    return front_end(name, **{**length, **kwargs})


def media_file(path: str | os.PathLike, what: str, expected: str) -> Path:
    """`path` when it is a file with bytes in it, else one line saying which of folder / missing / empty it is: the
    decoders' own errors for those read "[Errno 1094995529] Invalid data found" (FFmpeg, a 0-byte audio file)."""
    p = utf8_path(Path(path), what)
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder; expected {expected}")
    if not p.is_file():
        raise not_found(what, p, expected)
    if p.stat().st_size == 0:
        raise InputError(f"{what} {p} is empty (0 bytes); expected {expected}")
    return p


def media_seconds(modality: str, path: Path, stop_after: float = math.inf, purpose: str = "measuring media") -> float:
    """Seconds an audio / video file lasts, measured without decoding it, so a file past a duration limit is refused
    before a front end spends minutes decoding it: the header where it states the length (soundfile for audio files,
    OpenCV's frame count / fps for video), else PyAV's packet timestamps (browser-recorded WebM, a FLAC written as a
    stream, audio in a video container, whose audio track must exist), read up to just past `stop_after`.
    A video of one frame (a photo: FFmpeg opens a .jpg / .png as a 1-frame video) is an InputError, found on the same
    open as its header, so a caller that measures before the gate refuses it whatever the gate would decide.
    Unreadable -> InputError; soundfile / OpenCV / PyAV missing -> MissingDependencyError naming the fix."""
    from .audio import VIDEO_EXTS, media_duration

    reader = require("soundfile" if modality == "audio" else "cv2", purpose, MEDIA_FIX)
    in_container = modality == "audio" and path.suffix.lower() in VIDEO_EXTS  # read_audio takes these to PyAV too
    seconds = None if in_container else header_seconds(reader, modality, path)
    return media_duration(path, stop_after, need_audio=modality == "audio") if seconds is None else seconds


class MediaTooLong(InputError):
    """A media file longer than the duration limit (refuse_long_media): featurize counts these apart from unreadable
    files, which it leaves out the same way."""


def check_max_media_seconds(limit: float) -> None:
    """A positive number of seconds (inf: no limit); NaN or <= 0 would refuse every media file, or none. Named as
    given (check_range, which also refuses "10" and True as not a number): the keyword to load() / featurize()
    callers, --max-media-s from predict and featurize."""
    check_range({"max_media_seconds": limit}, 0, strict=True, no_limit=True)


def refuse_long_media(modality: str, path: Path, limit: float) -> None:
    """MediaTooLong when `path` lasts longer than `limit` seconds, measured from its header before a front end decodes
    it (predict and featurize share the limit, MAX_MEDIA_SECONDS by default, with the REST service). With no limit
    (inf) the file is still opened, stopping at its first packet: its being unreadable, a still image or a container
    without the audio track asked for is found here too, not only when a front end decodes it."""
    seconds = media_seconds(modality, path, limit if math.isfinite(limit) else 0.0, f"{modality} files")
    if seconds > limit:
        (knob, flag), = MEDIA_FLAG.items()
        raise MediaTooLong(f"{too_long(f'{modality} {path}', seconds, limit)} (raise the limit with {flag} or "
                           f"{knob}=; inf: none)")


def too_long(what: str, seconds: float, limit: float) -> str:
    """"<what> lasts S s; expected at most LIMIT s", the one wording of the duration limit (featurize, predict, the
    REST service's 413). S gets as many decimals as it takes to read above LIMIT: at one decimal 2.33 s against a
    2.3 s limit read "lasts 2.3 s; expected at most 2.3 s"."""
    decimals = next((d for d in range(1, 10) if float(f"{seconds:.{d}f}") > limit), 9)
    return f"{what} lasts {seconds:.{decimals}f} s; expected at most {seconds_text(limit)} s"


def seconds_text(limit: float) -> str:
    """A duration limit as it was given: Python's shortest repr, less a trailing '.0' ('30', '2.5', '30.0000001',
    'inf'). The ':g' format kept 6 significant digits, so --max-media-s 30.0000001 read "lasts 30.004 s; expected at
    most 30 s" and "1 clip over 30 s left out"."""
    return repr(float(limit)).removesuffix(".0")


def header_seconds(reader: Any, modality: str, path: Path) -> float | None:
    """Seconds the header of an audio file (soundfile) or a video (OpenCV) states, None where it states none or
    soundfile cannot read the file (.m4a, .opus: read_audio decodes those with PyAV as well; without PyAV such a file
    is unreadable: an InputError, audio.unreadable_without_av). A video that holds one frame -> InputError: two frame
    grabs tell, as the header cannot (OpenCV reports a .png's count as -9.2e18)."""
    if modality == "audio":
        from .audio import unreadable_without_av

        try:
            info = reader.info(str(path))
        except (RuntimeError, TypeError) as exc:  # soundfile's LibsndfileError is a RuntimeError
            unreadable_without_av(path, exc)
            return None
        return float(info.duration) if info.frames < UNKNOWN_FRAMES else None
    capture = reader.VideoCapture(str(path))  # OpenCV
    try:
        frames, fps = capture.get(reader.CAP_PROP_FRAME_COUNT), capture.get(reader.CAP_PROP_FPS)
        if sum(capture.grab() for _ in range(2)) == 1:
            raise InputError(f"video {path} {STILL_IMAGE}")
    finally:
        capture.release()
    return frames / fps if frames > 0 and fps > 0 and math.isfinite(frames / fps) else None
